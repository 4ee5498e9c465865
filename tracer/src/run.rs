//! One tracing session, start to end: [`prepare`] (the target and its binary, the plan),
//! [`attach`] (host checks, load, probes, start the command), [`trace`] (stream and
//! correlate until something ends it), [`finish`] (detach, stop a command goprobe
//! started, summarise).

use std::{io, num::NonZeroU32, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracer_common::names;

use crate::{
    cli::Cli,
    gobin::{
        GoBinary,
        offsets::{self, Layout},
    },
    host::KernelFacts,
    loader::{LoadedTracer, RingSizes},
    output::{self, Outputs},
    pipeline::Pipeline,
    preflight,
    probes::{self, PlannedProbe, ReleaseFacts},
    ringbuf::{self, Record, monotonic_ns},
    summary::{ProbeLine, RunInfo},
    target::{self, ExecWatch, ExitStatus, ExitWatch, Target},
};

/// Oldest Go release goprobe knows the runtime of.
const OLDEST_GO_MINOR: u32 = 21;
/// How long a command goprobe started gets to exit after goprobe stops it, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The bulk ring is this many times the chain's: it takes up to millions of records a
/// second. When no records go there (no `--yields`, `--slices`) it is one page.
const BULK_RING_FACTOR: u32 = 4;
const EMPTY_RING_BYTES: u32 = 4096;

/// Why tracing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum EndReason {
    TargetExited(ExitStatus),
    Duration,
    Interrupt,
    Terminate,
    /// stdout is a closed pipe (`| head`): end quietly, as Unix tools do.
    OutputClosed,
    OutputFailed(String),
    /// The target exec'd another program, which the probes do not cover.
    TargetExec(PathBuf),
}

impl EndReason {
    fn describe(&self) -> String {
        match self {
            EndReason::TargetExited(ExitStatus::Code(code)) => {
                format!("target exit (status {code})")
            }
            EndReason::TargetExited(ExitStatus::Signal(sig)) => {
                format!("target exit (signal {sig})")
            }
            EndReason::TargetExited(ExitStatus::Unknown) => "target exit".into(),
            EndReason::Duration => "--duration".into(),
            EndReason::Interrupt => "SIGINT".into(),
            EndReason::Terminate => "SIGTERM".into(),
            EndReason::OutputClosed => "output closed".into(),
            EndReason::OutputFailed(err) => format!("output error: {err}"),
            EndReason::TargetExec(path) => format!("target exec ({})", path.display()),
        }
    }

    /// The signal a command goprobe started gets when tracing ends first: the one goprobe
    /// got, else SIGTERM (as `timeout(1)` sends).
    fn stop_signal(&self) -> i32 {
        match self {
            EndReason::Interrupt => libc::SIGINT,
            _ => libc::SIGTERM,
        }
    }
}

/// What is known before anything is loaded.
struct Prepared {
    /// What is opened and probed (`/proc/PID/exe` for a running process).
    binary_path: PathBuf,
    /// What is shown: the executable's real path.
    shown_path: PathBuf,
    existing: Option<Target>,
    binary: Arc<GoBinary>,
    version: String,
    facts: ReleaseFacts,
    plan: Vec<PlannedProbe>,
    layout: Layout,
}

/// Runs goprobe; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let kernel = if cli.list_probes {
        None
    } else {
        preflight::check_privileges()?;
        preflight::check_uprobes()?;
        if preflight::ensure_tracefs()? {
            crate::diag!("goprobe: mounted tracefs at {}", preflight::TRACEFS);
        }
        Some(
            KernelFacts::read(preflight::TRACEFS.as_ref(), cli.wants_yields())
                .context("reading tracepoint formats")?,
        )
    };
    let prepared = prepare(&cli, kernel.as_ref())?;
    let Some(kernel) = kernel else {
        return match probes::print_plan(
            &prepared.shown_path,
            &prepared.version,
            &prepared.layout.source,
            &prepared.plan,
        ) {
            // `goprobe --list-probes | head` closing the pipe is not an error.
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
            _ => Ok(0),
        };
    };
    for warning in probes::plan_warnings(&prepared.plan) {
        crate::diag!("goprobe: warning: {warning}");
    }
    for warning in &prepared.layout.warnings {
        crate::diag!("goprobe: warning: {warning}");
    }
    // Every output, and the metrics port, before a command is started: a bad path or a
    // busy port must not leave a command running untraced.
    let outputs = Outputs::open(&cli).await?;
    let session = attach(&cli, prepared, &kernel)?;
    let mut session = session;
    let (end, tracing) = trace(&cli, &mut session, outputs).await?;
    finish(&cli, session, end, tracing).await
}

/// The target, its binary and the plan; checks everything that needs no privilege.
fn prepare(cli: &Cli, kernel: Option<&KernelFacts>) -> anyhow::Result<Prepared> {
    let (binary_path, shown_path, existing) = match (cli.pid, cli.command.first()) {
        (Some(pid), _) => {
            let target = Target::existing(pid)?;
            (target.attach_path.clone(), target.exe.clone(), Some(target))
        }
        (None, Some(command)) => {
            let path = target::resolve_command(command)?;
            (path.clone(), path, None)
        }
        (None, None) => unreachable!("clap requires a target"),
    };
    let binary = GoBinary::open(&binary_path)
        .with_context(|| format!("analysing {}", shown_path.display()))?;
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
        raw_tracepoints: kernel.is_none_or(KernelFacts::raw_tracepoints),
        ..ReleaseFacts::for_version(&version)
    };
    let plan = probes::plan(&binary, facts)
        .with_context(|| format!("planning probes for {}", shown_path.display()))?;
    let layout = offsets::layout_for(&binary, &version.raw, cli.go_layout.as_deref())?;
    Ok(Prepared {
        binary_path,
        shown_path,
        existing,
        binary: Arc::new(binary),
        version: version.raw,
        facts,
        plan,
        layout,
    })
}

/// A traced process with everything attached.
struct Session {
    tracer: LoadedTracer,
    target: Target,
    prepared: Prepared,
    probes: Vec<ProbeLine>,
    exit_watch: ExitWatch,
    exec_watch: ExecWatch,
    kernel_log: Option<tokio::task::JoinHandle<io::Result<()>>>,
    bias: u64,
    /// Time zero of the relative timestamps: when the probes went live.
    start_ns: u64,
}

/// Loads the kernel side, attaches the plan to the target (starting the command paused
/// first), and lets a started command run.
fn attach(cli: &Cli, prepared: Prepared, kernel: &KernelFacts) -> anyhow::Result<Session> {
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
    let mut tracer = LoadedTracer::load(&kernel.settings, rings, log_level)
        .map_err(|err| verifier_detail(err, cli.verbose))?;
    let kernel_log = match cli.verbose {
        0 => None,
        _ => Some(tokio::spawn(output::drain_kernel_log(
            tracer
                .kernel_log()
                .context("reading the kernel side's log")?,
        ))),
    };
    let (target, paused) = match &prepared.existing {
        Some(target) => (target.clone(), None),
        None => {
            let (target, paused) = target::spawn_paused(&prepared.binary_path, &cli.command)?;
            (target, Some(paused))
        }
    };
    let attached = attach_target(&mut tracer, &prepared, &target, kernel);
    let probes = match attached {
        Ok(probes) => probes,
        Err(err) => {
            if let Some(paused) = paused {
                paused.abort();
            } else if !target.is_alive() {
                bail!("process {} exited while goprobe was attaching", target.pid);
            }
            return Err(err);
        }
    };
    warn_async_preemption_off(&target);
    let exit_watch = ExitWatch::new(&target).context("watching the target process")?;
    let exec_watch = ExecWatch::new(&target).context("watching the target process")?;
    let start_ns = monotonic_ns();
    if let Some(paused) = paused {
        paused.release()?;
    }
    let attached = probes.iter().filter(|line| line.attached).count();
    crate::diag!(
        "goprobe: attached {attached} probes to pid {} ({}, {}; {}); tracing{}",
        target.pid,
        prepared.shown_path.display(),
        prepared.version,
        tracer.uprobe_mode().describe(),
        if cli.command.is_empty() {
            "; Ctrl-C to stop"
        } else {
            ""
        }
    );
    let bias = if prepared.binary.is_pie() {
        target::load_bias(
            target.pid,
            &target.attach_path,
            &prepared.binary.load_segments(),
        )
        .unwrap_or_else(|| {
            crate::diag!(
                "goprobe: warning: cannot find the PIE load address; locations unavailable"
            );
            u64::MAX
        })
    } else {
        0
    };
    Ok(Session {
        tracer,
        target,
        prepared,
        probes,
        exit_watch,
        exec_watch,
        kernel_log,
        bias,
        start_ns,
    })
}

/// Puts the target's binary and process in the kernel side's maps and attaches every
/// planned probe; returns the attach report.
fn attach_target(
    tracer: &mut LoadedTracer,
    prepared: &Prepared,
    target: &Target,
    kernel: &KernelFacts,
) -> anyhow::Result<Vec<ProbeLine>> {
    const SLOT: u32 = 0;
    let config = offsets::binary_config(
        prepared.layout.offsets.as_ref(),
        prepared.facts.gosched_has_preempted_arg,
    );
    tracer.set_binary(SLOT, &config)?;
    tracer.trace_process(target.pid.get(), SLOT)?;
    let points: Vec<(u64, u64)> = prepared
        .plan
        .iter()
        .flat_map(PlannedProbe::uprobe_points)
        .collect();
    // One traced process of this binary: the kernel filters the others out before the
    // program even runs.
    let pid: Option<NonZeroU32> = Some(target.pid);
    let uprobe_results = tracer.attach_uprobes(&target.attach_path, &points, pid)?;
    let mut tracepoint_results = Vec::new();
    for planned in prepared.plan.iter().filter(|p| p.will_attach()) {
        let result = match planned.spec.target {
            probes::ProbeTarget::Tracepoint { category, name } => {
                tracer.attach_tracepoint(planned.spec.program, category, name)?
            }
            probes::ProbeTarget::RawTracepoint { name } => {
                tracer.attach_raw_tracepoint(planned.spec.program, name)?
            }
            _ => continue,
        };
        tracepoint_results.push((planned.spec.program, planned.spec.kind, result));
    }
    let _ = kernel;
    probes::attach_report(&prepared.plan, &uprobe_results, &tracepoint_results)
}

/// The reader and the pipeline while records stream.
struct Tracing {
    rx: mpsc::Receiver<Vec<Record>>,
    stop: watch::Sender<bool>,
    reader: tokio::task::JoinHandle<io::Result<()>>,
    pipeline: Pipeline,
    metrics: Option<output::Metrics>,
}

/// Streams records through the pipeline until the target exits, `--duration` passes, a
/// signal comes or an output fails.
async fn trace(
    cli: &Cli,
    session: &mut Session,
    outputs: Outputs,
) -> anyhow::Result<(EndReason, Tracing)> {
    let rings = vec![
        session.tracer.take_ring(names::EVENTS)?,
        session.tracer.take_ring(names::BULK)?,
    ];
    // 16 batches of up to 1024 records: the kernel's rings, not this channel, absorb
    // bursts; a full channel stops the reader and the kernel counts what it drops.
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(16);
    let (stop, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(ringbuf::drain(rings, tx, stop_rx));
    let Outputs { list, metrics } = outputs;
    let mut pipeline = Pipeline::new(
        session.target.pid.get(),
        Arc::clone(&session.prepared.binary),
        session.bias,
        list,
        session.start_ns,
    );
    let binary_text = session.prepared.shown_path.display().to_string();
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    // An exec is noticed within this time; signal events of the new program that arrive
    // meanwhile are still correlated.
    let mut exec_check = tokio::time::interval(Duration::from_millis(200));
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = cli.duration.unwrap_or(Duration::MAX / 2);
    let sleep = tokio::time::sleep(deadline);
    tokio::pin!(sleep);
    let end = loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else {
                    bail!("the ring buffer reader stopped unexpectedly");
                };
                let mut failed = None;
                for record in batch {
                    if let Err(err) = pipeline.process(record) {
                        failed = Some(err);
                        break;
                    }
                }
                if failed.is_none() && rx.is_empty() {
                    failed = pipeline.flush_outputs().err();
                }
                if let Some(err) = failed {
                    break output_end(err);
                }
            }
            status = session.exit_watch.exited() => break EndReason::TargetExited(status?),
            _ = &mut sleep => break EndReason::Duration,
            _ = exec_check.tick() => {
                if let Some(path) = session.exec_watch.exec_seen() {
                    crate::diag!(
                        "goprobe: pid {} exec'd {}: the probes cover only the program it ran \
                         before, so tracing stops (trace the new program with --pid {})",
                        session.target.pid,
                        path.display(),
                        session.target.pid
                    );
                    break EndReason::TargetExec(path);
                }
            }
            _ = refresh.tick(), if metrics.is_some() => {
                if let Some(metrics) = &metrics {
                    let kernel = session.tracer.counters()?;
                    metrics.update(&pipeline.aggregator, &kernel, &output::TargetInfo {
                        pid: session.target.pid.get(),
                        binary: &binary_text,
                        go_version: &session.prepared.version,
                        voluntary_yields: cli
                            .wants_yields()
                            .then(|| session.tracer.yields(session.target.pid.get())),
                    });
                }
            }
            _ = sigint.recv() => break EndReason::Interrupt,
            _ = sigterm.recv() => break EndReason::Terminate,
        }
    };
    Ok((
        end,
        Tracing {
            rx,
            stop,
            reader,
            pipeline,
            metrics,
        },
    ))
}

/// How a failed write ends tracing: quietly for a closed pipe, else with the error.
fn output_end(err: io::Error) -> EndReason {
    if err.kind() == io::ErrorKind::BrokenPipe {
        EndReason::OutputClosed
    } else {
        EndReason::OutputFailed(err.to_string())
    }
}

/// Detaches, drains what the kernel still holds, stops a command goprobe started that is
/// still running, and summarises.
async fn finish(
    cli: &Cli,
    session: Session,
    end: EndReason,
    tracing: Tracing,
) -> anyhow::Result<i32> {
    let Session {
        tracer,
        target,
        prepared,
        probes,
        exit_watch,
        kernel_log,
        start_ns,
        ..
    } = session;
    let Tracing {
        mut rx,
        stop,
        reader,
        mut pipeline,
        metrics,
    } = tracing;
    // Detach first, then read the kernel's counters: every record they count as
    // submitted is then already in a ring, which the reader drains last.
    let yields = cli.wants_yields().then(|| tracer.yields(target.pid.get()));
    let kernel = tracer
        .detach()
        .context("reading the kernel-side counters")?;
    let traced_ns = monotonic_ns().saturating_sub(start_ns);
    let _ = stop.send(true);
    let mut end = end;
    while let Some(batch) = rx.recv().await {
        for record in batch {
            if let Err(err) = pipeline.process(record)
                && !matches!(end, EndReason::OutputClosed | EndReason::OutputFailed(_))
            {
                end = output_end(err);
            }
        }
    }
    reader.await.context("ring buffer reader")??;
    if let Some(kernel_log) = kernel_log {
        kernel_log.abort();
    }
    if let Some(metrics) = metrics {
        metrics.server.abort();
    }
    // A command goprobe started does not outlive the trace.
    let status = match &end {
        EndReason::TargetExited(status) => Some(*status),
        _ if target.is_child => Some(
            exit_watch
                .stop_child(end.stop_signal(), STOP_GRACE)
                .await
                .context("stopping the traced command")?,
        ),
        _ => None,
    };
    if let EndReason::OutputFailed(err) = &end {
        bail!("{err}");
    }
    let run = RunInfo {
        pid: target.pid.get(),
        binary: prepared.shown_path.display().to_string(),
        go_version: prepared.version.clone(),
        duration_ns: traced_ns,
        probes,
        end_reason: end.describe(),
        voluntary_yields: yields,
    };
    let summary = match pipeline.finish(run, kernel) {
        Ok(summary) => Some(summary),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => None,
        Err(err) => return Err(err.into()),
    };
    if let Some(summary) = summary
        && summary.lost_total() > 0
    {
        crate::diag!(
            "goprobe: warning: {}",
            output::loss_advice(&summary, cli.ringbuf_kib)
        );
    }
    Ok(match status {
        Some(status) if target.is_child => status.as_exit_code(),
        _ => 0,
    })
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
