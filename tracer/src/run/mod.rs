//! One tracing session, start to end: [`prepare`] (the target and its binary, the plan),
//! [`attach`] (host checks, load, probes, start the command), [`trace`] (stream and
//! correlate until something ends it), [`finish`] (detach, stop a command goprobe
//! started, summarise).

use std::{io, num::NonZeroU32, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use tracer_common::{EventKind, names::programs};

mod discover;
mod end;
mod stream;

pub use stream::Finished;
use stream::{Signals, finish, trace};

use crate::{
    cli::Cli,
    container::ContainerInfo,
    gobin::{
        GoBinary,
        offsets::{self, Layout},
    },
    host::KernelFacts,
    loader::{LoadedTracer, RingSizes},
    output::Outputs,
    pidns::PidNamespace,
    preflight,
    probes::{self, PlannedProbe, ReleaseFacts},
    ringbuf::monotonic_ns,
    run::discover::{Discovery, Known, Verdict},
    summary::ProbeLine,
    target::{self, ExecWatch, ExitWatch, Target},
};

/// Oldest Go release goprobe knows the runtime of.
const OLDEST_GO_MINOR: u32 = 21;
/// How long a command goprobe started gets to exit after goprobe stops it, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The bulk ring is this many times the chain's: it takes up to millions of records a
/// second. When no records go there (no `--yields`, `--slices`) it is one page.
const BULK_RING_FACTOR: u32 = 4;
const EMPTY_RING_BYTES: u32 = 4096;

/// What is known before anything is loaded: each binary to probe, and the processes
/// already running (none for a command goprobe starts).
struct Plan {
    binaries: Vec<Prepared>,
    /// Each existing process, with the index of its binary in `binaries`.
    existing: Vec<(Target, usize)>,
}

/// One binary: its analysis and probe plan. Uprobes belong to its inode, so every
/// process running it shares one set.
struct Prepared {
    /// What is opened and probed (`/proc/PID/exe` for a running process).
    binary_path: PathBuf,
    /// What is shown: the executable's real path.
    shown_path: PathBuf,
    /// Device and inode, to recognise other processes of the same binary.
    identity: Option<(u64, u64)>,
    binary: Arc<GoBinary>,
    version: String,
    facts: ReleaseFacts,
    plan: Vec<PlannedProbe>,
    layout: Layout,
}

/// Runs goprobe; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    Ok(session(cli).await?.code)
}

/// One whole session, as [`run`], also returning what it observed.
pub async fn session(cli: Cli) -> anyhow::Result<Finished> {
    let mut pids = cli.pid.clone();
    pids.sort_unstable();
    pids.dedup();
    if pids.len() > 1 || cli.all {
        for (flag, given) in [("--perfetto", cli.perfetto.is_some())] {
            if given {
                bail!("{flag} traces one process for now: give it a single --pid (not --all)");
            }
        }
    }
    let kernel = if cli.list_probes {
        None
    } else {
        preflight::check_privileges()?;
        preflight::check_uprobes()?;
        if preflight::ensure_tracefs()? {
            crate::diag!("goprobe: mounted tracefs at {}", preflight::TRACEFS);
        }
        let mut facts = KernelFacts::read(preflight::TRACEFS.as_ref(), cli.wants_yields())
            .context("reading tracepoint formats")?;
        // Raw hooks without BTF fall back to both syscall events, as the plan does.
        facts.settings.tgkill_at_generate = u32::from(cli.syscall_hooks.tgkill_at_generate());
        Some(facts)
    };
    let plan = prepare(&cli, kernel.as_ref())?;
    let Some(kernel) = kernel else {
        let printed = plan
            .binaries
            .iter()
            .try_for_each(|prepared| {
                probes::print_plan(
                    &prepared.shown_path,
                    &prepared.version,
                    &prepared.layout.source,
                    &prepared.plan,
                )
            })
            .and_then(|()| {
                use std::io::Write as _;
                writeln!(io::stdout().lock(), "{}", kernel_features(&cli))
            });
        return match printed {
            // `goprobe --list-probes | head` closing the pipe is not an error.
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
            _ => Ok(Finished {
                code: 0,
                summaries: Vec::new(),
            }),
        };
    };
    for prepared in &plan.binaries {
        for warning in probes::plan_warnings(&prepared.plan) {
            crate::diag!("goprobe: warning: {warning}");
        }
        for warning in &prepared.layout.warnings {
            crate::diag!("goprobe: warning: {warning}");
        }
    }
    // Every output, and the metrics port, before a command is started: a bad path or a
    // busy port must not leave a command running untraced.
    let outputs = Outputs::open(&cli).await?;
    let signals = Signals::catch().context("catching SIGINT and SIGTERM")?;
    let mut session = attach(&cli, plan, &kernel)?;
    let (end, tracing) = trace(&cli, &mut session, outputs, signals).await?;
    finish(&cli, session, end, tracing).await
}

/// The targets, their binaries and the plans; checks everything that needs no privilege.
fn prepare(cli: &Cli, kernel: Option<&KernelFacts>) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        binaries: Vec::new(),
        existing: Vec::new(),
    };
    if cli.all {
        if cli.list_probes {
            bail!("--list-probes shows one binary's plan: give it --pid or a command, not --all");
        }
        return Ok(plan);
    }
    if cli.pid.is_empty() {
        let command = cli.command.first().expect("clap requires a target");
        let path = target::resolve_command(command)?;
        plan.binaries
            .push(prepare_binary(cli, kernel, path.clone(), path)?);
        return Ok(plan);
    }
    for &pid in &cli.pid {
        if plan.existing.iter().any(|(target, _)| target.pid == pid) {
            continue;
        }
        let target = Target::existing(pid)?;
        let identity = target::file_identity(&target.attach_path);
        let known = plan
            .binaries
            .iter()
            .position(|prepared| identity.is_some() && prepared.identity == identity);
        let index = match known {
            Some(index) => index,
            None => {
                let prepared =
                    prepare_binary(cli, kernel, target.attach_path.clone(), target.exe.clone())
                        .with_context(|| format!("pid {pid}"))?;
                plan.binaries.push(prepared);
                plan.binaries.len() - 1
            }
        };
        plan.existing.push((target, index));
    }
    Ok(plan)
}

/// One binary's analysis and probe plan.
fn prepare_binary(
    cli: &Cli,
    kernel: Option<&KernelFacts>,
    binary_path: PathBuf,
    shown_path: PathBuf,
) -> anyhow::Result<Prepared> {
    let binary = GoBinary::open(&binary_path)
        .with_context(|| format!("analysing {}", shown_path.display()))?;
    prepare_opened(cli, kernel, binary, binary_path, shown_path)
}

/// [`prepare_binary`] for a binary already opened.
fn prepare_opened(
    cli: &Cli,
    kernel: Option<&KernelFacts>,
    binary: GoBinary,
    binary_path: PathBuf,
    shown_path: PathBuf,
) -> anyhow::Result<Prepared> {
    crate::gobin::check_platform(&binary, &shown_path)?;
    let version = binary.go_version().cloned().context(
        "cannot tell which Go release built this binary (no build info or version string)",
    )?;
    if (version.major, version.minor) < (1, OLDEST_GO_MINOR) {
        bail!(
            "{} was built by {version}; goprobe supports Go 1.{OLDEST_GO_MINOR} and newer \
             (rebuild with a newer Go)",
            shown_path.display()
        );
    }
    let facts = ReleaseFacts {
        slices: cli.wants_slices(),
        yields: cli.yields,
        at_entry: cli.entry_probes,
        raw_tracepoints: !cli.classic_tracepoints
            && kernel.is_none_or(KernelFacts::raw_tracepoints),
        syscall_hooks: cli.syscall_hooks,
        ..ReleaseFacts::for_version(&version)
    };
    let plan = probes::plan(&binary, facts)
        .with_context(|| format!("planning probes for {}", shown_path.display()))?;
    let layout = offsets::layout_for(&binary, &version.raw, cli.go_layout.as_deref())?;
    Ok(Prepared {
        identity: target::file_identity(&binary_path),
        binary_path,
        shown_path,
        binary: Arc::new(binary),
        version: version.raw,
        facts,
        plan,
        layout,
    })
}

/// A tracepoint's attach result, for the attach report.
type TracepointResult = (&'static str, EventKind, Result<(), String>);

/// Every traced process with everything attached.
struct Session {
    tracer: LoadedTracer,
    kernel: KernelFacts,
    binaries: Vec<Prepared>,
    /// The attach report of each binary, by index.
    probes: Vec<Vec<ProbeLine>>,
    /// The signal tracepoints, attached with the first binary.
    tracepoints: Option<Vec<TracepointResult>>,
    processes: Vec<TracedProcess>,
    /// `--all`: what decides which processes to trace, and what it has seen.
    discovery: Option<Discovery>,
    kernel_log: Option<tokio::task::JoinHandle<io::Result<()>>>,
    /// Time zero of the relative timestamps: when the probes went live.
    start_ns: u64,
}

/// One traced process.
struct TracedProcess {
    target: Target,
    /// Index of its binary in [`Session::binaries`].
    binary: usize,
    exit_watch: ExitWatch,
    exec_watch: ExecWatch,
    bias: u64,
    /// Its pid namespace when not goprobe's (taken by the pipeline).
    namespace: Option<PidNamespace>,
    container: ContainerInfo,
    /// Why its tracing ended, when it ended before the run did (exit, exec).
    ended: Option<end::EndReason>,
    /// When its exit was seen (CLOCK_MONOTONIC ns), and its yield count then: the
    /// summary waits until the ring has been read past that moment.
    exited: Option<(u64, u64)>,
}

impl TracedProcess {
    /// Everything known of a process whose probes are in place (its exe, namespace,
    /// container); `bias` is found later, once a started command runs its program.
    fn new(target: Target, binary: usize) -> anyhow::Result<TracedProcess> {
        warn_async_preemption_off(&target);
        let pid = target.pid;
        let namespace = PidNamespace::of(pid.get())
            .with_context(|| format!("reading the pid namespace of process {pid}"))?;
        let container = ContainerInfo::read(
            pid.get(),
            namespace.as_ref().map(|namespace| namespace.ns_pid),
        );
        let exit_watch = ExitWatch::new(&target).context("watching the target process")?;
        let exec_watch = ExecWatch::new(&target).context("watching the target process")?;
        Ok(TracedProcess {
            target,
            binary,
            exit_watch,
            exec_watch,
            bias: 0,
            namespace,
            container,
            ended: None,
            exited: None,
        })
    }

    /// Reads the load bias (PIE) and says that the process is traced.
    fn announce(&mut self, prepared: &Prepared, probes: &[ProbeLine], mode: &str, ctrl_c: bool) {
        let target = &self.target;
        let attached = probes.iter().filter(|line| line.attached).count();
        crate::diag!(
            "goprobe: attached {attached} probes to pid {} ({}, {}; {mode}); {}tracing{}",
            target.pid,
            prepared.shown_path.display(),
            prepared.version,
            if self.container.is_host() {
                String::new()
            } else {
                format!("{}; ", self.container.describe())
            },
            if ctrl_c { "; Ctrl-C to stop" } else { "" }
        );
        self.bias = if prepared.binary.is_pie() {
            target::load_bias(
                target.pid,
                &target.attach_path,
                &prepared.binary.load_segments(),
            )
            .unwrap_or_else(|| {
                crate::diag!(
                    "goprobe: warning: cannot find the PIE load address of pid {}; \
                     locations unavailable",
                    target.pid
                );
                u64::MAX
            })
        } else {
            0
        };
    }
}

/// Loads the kernel side, attaches every binary's plan once and the processes to them
/// (starting the command paused first), and lets a started command run. With `--all`
/// no process is attached yet: [`Session::adopt`] does, from the start of tracing.
fn attach(cli: &Cli, plan: Plan, kernel: &KernelFacts) -> anyhow::Result<Session> {
    // -v: kernel-side warnings; -vv: debug (failed reads of Go memory, ...).
    let log_level = match cli.verbose {
        0 => 0,
        1 => 2,
        _ => 4,
    };
    let rings = RingSizes {
        chain: cli.ringbuf_kib * 1024,
        bulk: if cli.wants_yields() {
            BULK_RING_FACTOR * cli.ringbuf_kib * 1024
        } else {
            EMPTY_RING_BYTES
        },
    };
    let tracer = LoadedTracer::load(&kernel.settings, rings, log_level)
        .map_err(|err| verifier_detail(err, cli.verbose))?;
    let mut session = Session {
        tracer,
        kernel: kernel.clone(),
        binaries: Vec::new(),
        probes: Vec::new(),
        tracepoints: None,
        processes: Vec::new(),
        discovery: None,
        kernel_log: None,
        start_ns: 0,
    };
    if cli.verbose > 0 {
        session.kernel_log = Some(tokio::spawn(crate::loader::drain_kernel_log(
            session
                .tracer
                .kernel_log()
                .context("reading the kernel side's log")?,
        )));
    }
    if cli.all {
        // Execs first: a program started while the running ones are looked at is then
        // still seen.
        session
            .tracer
            .attach_tracepoint(
                programs::TP_SCHED_PROCESS_EXEC,
                "sched",
                "sched_process_exec",
            )
            .map_err(|err| verifier_detail(err, cli.verbose))?
            .map_err(|err| anyhow::anyhow!("attaching sched/sched_process_exec: {err}"))?;
        session.discovery = Some(Discovery::new(cli));
        session.start_ns = monotonic_ns();
        return Ok(session);
    }
    let Plan { binaries, existing } = plan;
    let (targets, paused) = if existing.is_empty() {
        let (target, paused) = target::spawn_paused(&binaries[0].binary_path, &cli.command)?;
        (vec![(target, 0)], Some(paused))
    } else {
        (existing, None)
    };
    let attached = attach_targets(&mut session, binaries, &targets, cli.verbose);
    if let Err(err) = attached {
        if let Some(paused) = paused {
            paused.abort();
        } else if let Some((target, _)) = targets.iter().find(|(t, _)| !t.is_alive()) {
            bail!("process {} exited while goprobe was attaching", target.pid);
        }
        return Err(err);
    }
    for (target, binary) in targets {
        session.processes.push(TracedProcess::new(target, binary)?);
    }
    session.start_ns = monotonic_ns();
    if let Some(paused) = paused {
        paused.release()?;
    }
    let mode = session.tracer.uprobe_mode().describe();
    for process in &mut session.processes {
        process.announce(
            &session.binaries[process.binary],
            &session.probes[process.binary],
            mode,
            cli.command.is_empty(),
        );
    }
    Ok(session)
}

/// Puts each binary and process in the kernel side's maps and attaches every binary's
/// planned uprobes once, and the tracepoints once.
fn attach_targets(
    session: &mut Session,
    binaries: Vec<Prepared>,
    targets: &[(Target, usize)],
    verbose: u8,
) -> anyhow::Result<()> {
    for (slot, prepared) in binaries.into_iter().enumerate() {
        // With one traced process of a binary the kernel filters the others out before
        // the program even runs; with several, the program's map lookup does.
        let mut users = targets.iter().filter(|(_, s)| *s == slot);
        let (pid, attach_path) = match (users.next(), users.next()) {
            (Some((target, _)), None) => (Some(target.pid), target.attach_path.clone()),
            (Some((target, _)), Some(_)) => (None, target.attach_path.clone()),
            _ => (None, prepared.binary_path.clone()),
        };
        session.attach_binary(prepared, &attach_path, pid, verbose)?;
    }
    for (target, slot) in targets {
        session
            .tracer
            .trace_process(target.pid.get(), *slot as u32)?;
    }
    Ok(())
}

impl Session {
    /// Gives `prepared` the next BINARIES slot and attaches its uprobes (and, with the
    /// first binary, the tracepoints); returns its slot.
    fn attach_binary(
        &mut self,
        prepared: Prepared,
        attach_path: &std::path::Path,
        pid: Option<NonZeroU32>,
        verbose: u8,
    ) -> anyhow::Result<usize> {
        // Programs load lazily, on their first attach: a verifier rejection surfaces here.
        let detail = |err| verifier_detail(err, verbose);
        let slot = self.binaries.len();
        let config = offsets::binary_config(
            prepared.layout.offsets.as_ref(),
            prepared.facts.gosched_has_preempted_arg,
        );
        self.tracer.set_binary(slot as u32, &config)?;
        let points: Vec<(u64, u64)> = prepared
            .plan
            .iter()
            .flat_map(PlannedProbe::uprobe_points)
            .collect();
        let uprobe_results = self
            .tracer
            .attach_uprobes(attach_path, &points, pid)
            .map_err(detail)?;
        if self.tracepoints.is_none() {
            let mut results: Vec<TracepointResult> = Vec::new();
            for planned in prepared.plan.iter().filter(|p| p.will_attach()) {
                // A program observing two kinds (signal_generate records the tgkill that
                // causes it) is attached once.
                if let Some((_, _, done)) = results
                    .iter()
                    .find(|(program, _, _)| *program == planned.spec.program)
                {
                    let done = done.clone();
                    results.push((planned.spec.program, planned.spec.kind, done));
                    continue;
                }
                let result = match planned.spec.target {
                    probes::ProbeTarget::Tracepoint { category, name } => self
                        .tracer
                        .attach_tracepoint(planned.spec.program, category, name)
                        .map_err(detail)?,
                    probes::ProbeTarget::RawTracepoint { name } => self
                        .tracer
                        .attach_raw_tracepoint(planned.spec.program, name)
                        .map_err(detail)?,
                    _ => continue,
                };
                results.push((planned.spec.program, planned.spec.kind, result));
            }
            self.tracepoints = Some(results);
        }
        let report = probes::attach_report(
            &prepared.plan,
            &uprobe_results,
            self.tracepoints.as_deref().unwrap_or_default(),
        )?;
        self.probes.push(report);
        self.binaries.push(prepared);
        Ok(slot)
    }

    /// `--all`: traces process `pid` if it runs a Go program (Go 1.21+) the filters let
    /// through, attaching its binary's probes if they are not there yet. Returns the
    /// process's index, or `None` for a process that is skipped (quietly: not Go,
    /// filtered out, already gone; once per binary: too old, unreadable).
    fn adopt(&mut self, cli: &Cli, pid: u32) -> Option<usize> {
        let discovery = self.discovery.as_mut()?;
        let pid = NonZeroU32::new(pid)?;
        if self
            .processes
            .iter()
            .any(|p| p.target.pid == pid && p.ended.is_none())
            || !discovery.admits(pid.get())
        {
            return None;
        }
        let target = Target::existing(pid).ok()?;
        let identity = target::file_identity(&target.attach_path)?;
        let slot = match discovery.seen(identity) {
            Some(Known::Traced(slot)) => slot,
            Some(Known::Skipped) => return None,
            None => {
                let verdict = discover::classify(&target.attach_path, &target.exe);
                let opened = match verdict {
                    Verdict::Go(binary) => binary,
                    Verdict::NotGo => {
                        discovery.skip(identity);
                        return None;
                    }
                };
                let prepared = match prepare_opened(
                    cli,
                    Some(&self.kernel),
                    *opened,
                    target.attach_path.clone(),
                    target.exe.clone(),
                ) {
                    Ok(prepared) => prepared,
                    Err(err) => {
                        crate::diag!("goprobe: skipping pid {pid}: {err:#}");
                        discovery.skip(identity);
                        return None;
                    }
                };
                for warning in probes::plan_warnings(&prepared.plan)
                    .chain(prepared.layout.warnings.iter().cloned())
                {
                    crate::diag!(
                        "goprobe: warning: {}: {warning}",
                        prepared.shown_path.display()
                    );
                }
                // Processes of it may come and go: never filter by one pid.
                let path = target.attach_path.clone();
                match self.attach_binary(prepared, &path, None, cli.verbose) {
                    Ok(slot) => {
                        self.discovery.as_mut()?.trace(identity, slot);
                        slot
                    }
                    Err(err) => {
                        crate::diag!("goprobe: skipping pid {pid}: {err:#}");
                        self.discovery.as_mut()?.skip(identity);
                        return None;
                    }
                }
            }
        };
        self.tracer.trace_process(pid.get(), slot as u32).ok()?;
        let mut process = match TracedProcess::new(target, slot) {
            Ok(process) => process,
            Err(_) => {
                // Gone already.
                let _ = self.tracer.untrace_process(pid.get());
                return None;
            }
        };
        process.announce(
            &self.binaries[slot],
            &self.probes[slot],
            self.tracer.uprobe_mode().describe(),
            false,
        );
        self.processes.push(process);
        Some(self.processes.len() - 1)
    }
}

/// The kernel facts that decide how goprobe attaches, for `--list-probes`. The uprobe mode
/// takes loading the object, so it is only probed with the privileges for that.
fn kernel_features(cli: &Cli) -> String {
    let release = crate::host::kernel_release();
    let btf = std::path::Path::new(crate::host::VMLINUX_BTF).exists();
    // Without the facts (they need tracefs), from whether the kernel has BTF at all.
    let mut raw_tracepoints = btf && !cli.classic_tracepoints;
    let readable_tracefs =
        std::fs::metadata(std::path::Path::new(preflight::TRACEFS).join("events")).is_ok();
    let uprobes = if preflight::check_privileges().is_ok() && readable_tracefs {
        match KernelFacts::read(preflight::TRACEFS.as_ref(), false) {
            Ok(facts) => {
                raw_tracepoints = facts.raw_tracepoints() && !cli.classic_tracepoints;
                crate::loader::probe_uprobe_mode(&facts.settings)
                    .unwrap_or_else(|err| format!("the object does not load: {err}"))
            }
            Err(err) => format!("unknown (tracepoint formats: {err})"),
        }
    } else {
        "not probed (needs root, or CAP_BPF, CAP_PERFMON and a readable tracefs)".to_string()
    };
    let since = if raw_tracepoints {
        crate::loader::RAW_SKIPS_COUNTED_SINCE
    } else {
        crate::loader::CLASSIC_SKIPS_COUNTED_SINCE
    };
    let skips = if crate::host::kernel_version(&release) >= since {
        "counted"
    } else {
        "not counted by this kernel"
    };
    format!(
        "kernel: Linux {}; BTF {}; signal tracepoints {}; runs the kernel skips {skips}; \
         uprobes: {uprobes}",
        release,
        if btf { "present" } else { "absent" },
        if raw_tracepoints {
            "raw (BTF)"
        } else {
            "classic (fields from their tracefs formats)"
        },
    )
}

fn warn_async_preemption_off(target: &Target) {
    if target.async_preemption_off() {
        crate::diag!(
            "goprobe: note: the target runs with GODEBUG=asyncpreemptoff=1: sysmon still \
             requests preemption, but no SIGURG, signal delivery or asyncPreempt2 will follow"
        );
    }
}

fn verifier_detail(err: crate::loader::LoadError, verbose: u8) -> anyhow::Error {
    if let crate::loader::LoadError::Verifier { log, .. } = &err
        && verbose > 0
    {
        crate::diag!("{log}");
    }
    err.into()
}
