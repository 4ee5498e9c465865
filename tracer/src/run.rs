//! One tracing session, start to end: analyse the binary, plan and attach the probes,
//! stream and correlate events, detach, summarise.

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracer_common::ProbeConfig;

use crate::{
    cli::{Cli, Format},
    correlate::{Caller, Correlator, Finding, Hints},
    events::{Event, EventData},
    gobin::{
        GoBinary,
        offsets::{self, OffsetsSource},
    },
    loader::LoadedTracer,
    output::{
        AttemptView, EventView, Output,
        json::JsonOutput,
        perfetto::PerfettoOutput,
        prometheus,
        text::{Live, TextOutput},
    },
    preflight,
    probes::{self, PlanStatus, PlannedProbe, ProbeTarget, ReleaseFacts},
    ringbuf::{self, Record},
    summary::{Aggregator, ProbeLine, RunInfo, Summary},
    symbolize::Symbolizer,
    target::{self, ExitStatus, ExitWatch, Target},
};

/// Oldest Go release goprobe knows the runtime of.
const OLDEST_GO_MINOR: u32 = 21;

/// Why tracing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndReason {
    TargetExited(ExitStatus),
    Duration,
    Interrupt,
    Terminate,
}

impl EndReason {
    fn describe(self) -> String {
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
        }
    }
}

/// Runs goprobe; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let (binary_path, existing) = match (cli.pid, cli.command.first()) {
        (Some(pid), _) => {
            let target = Target::existing(pid)?;
            (target.attach_path.clone(), Some(target))
        }
        (None, Some(command)) => (target::resolve_command(command)?, None),
        (None, None) => bail!("nothing to trace: give --pid PID or -- CMD [ARGS...]"),
    };
    let binary = Arc::new(analyse(&binary_path)?);
    check_platform(&binary, &binary_path)?;
    let version = binary.go_version().cloned().context(
        "cannot tell which Go release built this binary (no build info or version string)",
    )?;
    if (version.major, version.minor) < (1, OLDEST_GO_MINOR) {
        bail!(
            "{} was built by {version}; goprobe supports Go 1.{OLDEST_GO_MINOR} and newer \
             (rebuild with a newer Go)",
            binary_path.display()
        );
    }
    let facts = ReleaseFacts {
        slices: cli.slices || cli.perfetto.is_some(),
        at_entry: cli.entry_probes,
        ..ReleaseFacts::for_version(&version)
    };
    let plan = probes::plan(&binary, facts)
        .with_context(|| format!("planning probes for {}", binary_path.display()))?;
    let (config, offsets_source) =
        probe_config(&binary, &version.raw, facts, cli.go_layout.as_deref())?;

    if cli.list_probes {
        return match print_plan(&binary_path, &version.raw, &offsets_source, &plan) {
            // `goprobe --list-probes | head` closing the pipe is not an error.
            Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
            _ => Ok(0),
        };
    }

    for planned in &plan {
        if let (
            PlanStatus::Absent {
                note,
                unexpected: true,
            },
            ProbeTarget::Uprobe { function, .. },
        ) = (&planned.status, planned.spec.target)
        {
            crate::diag!("goprobe: warning: {function} {note}");
        }
    }

    preflight::check_privileges()?;
    preflight::check_uprobes()?;
    if preflight::ensure_tracefs()? {
        crate::diag!("goprobe: mounted tracefs at /sys/kernel/tracing");
    }

    // -v: kernel-side warnings; -vv: debug (failed reads of Go memory, ...).
    let log_level = match cli.verbose {
        0 => 0,
        1 => 2,
        _ => 4,
    };
    let mut tracer = LoadedTracer::load(&config, cli.ringbuf_kib * 1024, log_level)
        .map_err(|err| verifier_detail(err, cli.verbose))?;
    let kernel_log = if cli.verbose > 0 {
        let log = tracer
            .kernel_log()
            .context("reading the kernel side's log")?;
        Some(tokio::spawn(drain_kernel_log(log)))
    } else {
        None
    };
    let (target, paused) = match existing {
        Some(target) => (target, None),
        None => {
            let (target, paused) = target::spawn_paused(&binary_path, &cli.command)?;
            (target, Some(paused))
        }
    };
    let attached = attach(&mut tracer, &plan, &target);
    let outcomes = match attached {
        Ok(outcomes) => outcomes,
        Err(err) => {
            if let Some(paused) = paused {
                paused.abort();
            }
            return Err(err);
        }
    };
    warn_async_preemption_off(&target);
    let exit_watch = ExitWatch::new(&target).context("watching the target process")?;
    // Time zero of the relative timestamps: probes are live from here on.
    let start_ns = monotonic_ns();
    if let Some(paused) = paused {
        paused.release()?;
    }
    let attached_count = outcomes.iter().filter(|line| line.attached).count();
    crate::diag!(
        "goprobe: attached {attached_count} probes to pid {} ({}, {version}); tracing{}",
        target.pid,
        binary_path.display(),
        if cli.command.is_empty() {
            "; Ctrl-C to stop"
        } else {
            ""
        }
    );

    let bias = if binary.is_pie() {
        target::load_bias(target.pid, &binary_path, &binary.load_segments()).unwrap_or_else(|| {
            crate::diag!(
                "goprobe: warning: cannot find the PIE load address; locations unavailable"
            );
            u64::MAX
        })
    } else {
        0
    };

    let ring = tracer.take_events()?;
    // 64 batches of up to 1024 records: the kernel buffer, not this channel, absorbs
    // bursts; a full channel stops the reader and the kernel counts what it drops.
    let (tx, mut rx) = mpsc::channel::<Vec<Record>>(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let reader = tokio::spawn(ringbuf::drain(ring, tx, stop_rx));

    let mut pipeline = Pipeline {
        correlator: Correlator::new(),
        aggregator: Aggregator::new(),
        symbolizer: Symbolizer::new(Arc::clone(&binary), bias),
        outputs: open_outputs(&cli)?,
        start_ns,
    };
    // --metrics: a snapshot rendered once a second, served by its own task.
    let metrics = match cli.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
            let snapshot = prometheus::Snapshot::default();
            let server = tokio::spawn(prometheus::serve(listener, Arc::clone(&snapshot)));
            diag!("goprobe: serving Prometheus metrics at http://{addr}/metrics");
            Some((snapshot, server))
        }
        None => None,
    };
    let binary_text = binary_path.display().to_string();
    let target_info = prometheus::TargetInfo {
        pid: target.pid.get(),
        binary: &binary_text,
        go_version: &version.raw,
    };
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
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
                for record in batch {
                    pipeline.process(record)?;
                }
                if rx.is_empty() {
                    pipeline.flush_outputs()?;
                }
            }
            status = exit_watch.exited() => break EndReason::TargetExited(status?),
            _ = &mut sleep => break EndReason::Duration,
            _ = refresh.tick(), if metrics.is_some() => {
                if let Some((snapshot, _)) = &metrics {
                    let kernel = tracer.counters()?;
                    let text = prometheus::render(&pipeline.aggregator, &kernel, &target_info);
                    if let Ok(mut latest) = snapshot.lock() {
                        *latest = text;
                    }
                }
            }
            _ = sigint.recv() => break EndReason::Interrupt,
            _ = sigterm.recv() => break EndReason::Terminate,
        }
    };

    // Detach first, then read the kernel's counters: every record they count as
    // submitted is then already in the ring buffer, which we drain last.
    let kernel = tracer
        .detach()
        .context("reading the kernel-side counters")?;
    let _ = stop_tx.send(true);
    while let Some(batch) = rx.recv().await {
        for record in batch {
            pipeline.process(record)?;
        }
    }
    reader.await.context("ring buffer reader")??;
    if let Some(kernel_log) = kernel_log {
        kernel_log.abort();
    }
    if let Some((_, server)) = metrics {
        server.abort();
    }
    let duration_ns = monotonic_ns().saturating_sub(pipeline.start_ns);

    let run = RunInfo {
        pid: target.pid.get(),
        binary: binary_path.display().to_string(),
        go_version: version.raw.clone(),
        duration_ns,
        probes: outcomes,
        end_reason: end.describe(),
    };
    let summary = pipeline.finish(run, kernel)?;
    if summary.lost_total() > 0 {
        crate::diag!(
            "goprobe: warning: {} events were lost because the ring buffer was full; \
             retry with a larger --ringbuf-kib (now {})",
            summary.lost_total(),
            cli.ringbuf_kib
        );
    }

    Ok(match end {
        EndReason::TargetExited(status) if target.is_child => status.as_exit_code(),
        EndReason::Interrupt if target.is_child => 130,
        EndReason::Terminate if target.is_child => 143,
        _ => 0,
    })
}

/// Prints the kernel side's log records as they come (only with -v).
async fn drain_kernel_log(log: crate::loader::KernelLog) -> io::Result<()> {
    // SAFETY: the logger owns its map fd for as long as the AsyncFd owns the logger.
    let mut fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(log, tokio::io::Interest::READABLE)
    }
    .map_err(|err| err.into_parts().1)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Everything an event goes through after decoding, in order.
struct Pipeline {
    correlator: Correlator,
    aggregator: Aggregator,
    symbolizer: Symbolizer,
    outputs: Vec<Box<dyn Output>>,
    start_ns: u64,
}

impl Pipeline {
    fn process(&mut self, record: Record) -> io::Result<()> {
        match record {
            Record::Event(event) => {
                let (location, caller) = locations(&mut self.symbolizer, &event);
                let hints = Hints {
                    // The physical function: `preemptM` is inlined into its callers, so
                    // the innermost frame at signalM's return address is not who asked.
                    caller: caller.as_ref().map(|caller| {
                        Caller::from_function(
                            caller.inlined_into.as_deref().unwrap_or(&caller.function),
                        )
                    }),
                    // A signal interrupting the call an earlier handler injected.
                    in_async_preempt: matches!(
                        event.kind,
                        tracer_common::EventKind::DoSigPreempt
                            | tracer_common::EventKind::SignalDeliver
                    ) && location
                        .as_ref()
                        .is_some_and(|loc| loc.function == "runtime.asyncPreempt"),
                };
                let meaning = self.correlator.observe(&event, hints);
                self.aggregator.add(&event, &meaning);
                let view = EventView {
                    event: &event,
                    meaning: &meaning,
                    location,
                    caller,
                    rel_ns: event.ts_ns as i64 - self.start_ns as i64,
                };
                for output in &mut self.outputs {
                    output.event(&view)?;
                }
                self.flush_findings()
            }
            Record::Malformed(err) => {
                self.aggregator.add_malformed();
                crate::diag!("goprobe: warning: malformed record: {err}");
                Ok(())
            }
        }
    }

    /// Hands what correlation found to aggregation and output.
    fn flush_findings(&mut self) -> io::Result<()> {
        let Pipeline {
            correlator,
            aggregator,
            symbolizer,
            outputs,
            start_ns,
        } = self;
        for finding in correlator.drain_findings() {
            aggregator.add_finding(&finding);
            if let Finding::Attempt(attempt) = &finding {
                let view = AttemptView {
                    attempt,
                    location: attempt.interrupted_pc.and_then(|pc| symbolizer.locate(pc)),
                    rel_ns: attempt.start_ns() as i64 - *start_ns as i64,
                };
                for output in outputs.iter_mut() {
                    output.attempt(&view)?;
                }
            }
        }
        Ok(())
    }

    fn flush_outputs(&mut self) -> io::Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|output| output.flush())
    }

    /// Closes what is still open and returns the summary.
    /// Closes what is still open, renders the summary to every output and returns it.
    fn finish(
        mut self,
        run: RunInfo,
        kernel: crate::loader::KernelCounters,
    ) -> io::Result<Summary> {
        self.correlator.finish();
        self.flush_findings()?;
        let Pipeline {
            aggregator,
            mut symbolizer,
            mut outputs,
            ..
        } = self;
        let summary = aggregator.finish(run, kernel, &mut symbolizer);
        for output in &mut outputs {
            output.summary(&summary)?;
            output.flush()?;
        }
        Ok(summary)
    }
}

/// ELF machine number of x86-64.
const EM_X86_64: u16 = 62;

/// goprobe knows linux/amd64 only: its probe placement decodes x86 and its offsets and
/// hooked functions are those of the Linux runtime.
fn check_platform(binary: &GoBinary, path: &Path) -> anyhow::Result<()> {
    if binary.machine() != EM_X86_64 {
        bail!(
            "{} is not an x86-64 program (ELF machine {}): goprobe traces linux/amd64 Go \
             programs only",
            path.display(),
            binary.machine()
        );
    }
    if let Some(goos) = binary.build_info().and_then(|info| info.setting("GOOS"))
        && goos != "linux"
    {
        bail!(
            "{} was built for GOOS={goos}: goprobe traces linux/amd64 Go programs only",
            path.display()
        );
    }
    Ok(())
}

fn analyse(path: &Path) -> anyhow::Result<GoBinary> {
    GoBinary::open(path).with_context(|| format!("analysing {}", path.display()))
}

/// The kernel side's view of the binary: struct offsets and release facts. Offsets come
/// from the binary's DWARF, else the per-release table; failing both, the kernel side
/// reads no Go memory and events carry registers only (goroutine ids unknown).
fn probe_config(
    binary: &GoBinary,
    version: &str,
    facts: ReleaseFacts,
    layout: Option<&str>,
) -> anyhow::Result<(ProbeConfig, String)> {
    let resolved = match layout {
        Some(release) => {
            let (major, minor) = offsets::parse_go_version(release)?;
            match offsets::from_table(major, minor) {
                Some((offsets, true)) => Ok((
                    offsets,
                    OffsetsSource::Table {
                        release: (major, minor),
                        exact: true,
                    },
                )),
                _ => bail!(
                    "--go-layout {release}: goprobe knows the layouts of Go 1.21 to {}",
                    crate::gobin::offsets_table::TABLE
                        .last()
                        .map_or(String::from("?"), |((major, minor), _, _)| format!(
                            "{major}.{minor}"
                        ))
                ),
            }
        }
        None => offsets::resolve_binary(binary, version),
    };
    let (offsets, source) = match resolved {
        Ok((offsets, source)) => {
            if let OffsetsSource::Table { exact: false, .. } = source {
                crate::diag!(
                    "goprobe: warning: {version} is newer than every release goprobe knows; \
                     assuming the {source}: check that goroutine ids look right, or choose \
                     another layout with --go-layout"
                );
            }
            (Some(offsets), source.to_string())
        }
        Err(err) => {
            crate::diag!(
                "goprobe: warning: no struct offsets for this binary ({err}); goroutine ids, \
                 P and M details will be missing"
            );
            (None, "none".to_string())
        }
    };
    let mut config = ProbeConfig {
        gosched_has_preempted_arg: u32::from(facts.gosched_has_preempted_arg),
        ..ProbeConfig::UNKNOWN
    };
    if let Some(o) = offsets {
        config.g_goid = o.g_goid;
        config.g_atomicstatus = o.g_atomicstatus;
        config.g_preempt = o.g_preempt;
        config.g_preempt_stop = o.g_preempt_stop;
        config.m_procid = o.m_procid;
        config.m_id = o.m_id;
        config.m_curg = o.m_curg;
        config.m_p = o.m_p;
        config.p_id = o.p_id;
        config.p_m = o.p_m;
        config.p_schedtick = o.p_schedtick;
        config.p_sysmontick_schedwhen = o.p_sysmontick_schedwhen;
        config.g_sched_pc = o.g_sched_pc;
    }
    Ok((config, source))
}

fn attach(
    tracer: &mut LoadedTracer,
    plan: &[PlannedProbe],
    target: &Target,
) -> anyhow::Result<Vec<ProbeLine>> {
    tracer.trace_tgid(target.pid.get())?;
    let outcomes = tracer.attach(plan, &target.attach_path, target.pid)?;
    let mut lines = Vec::new();
    for planned in plan {
        let target_text = planned.spec.target.to_string();
        let outcome = outcomes.iter().find(|o| o.program == planned.spec.program);
        let (status, attached) = match (&planned.status, outcome) {
            (_, Some(outcome)) => match &outcome.result {
                Ok(()) => (attached_text(&planned.status), true),
                Err(err) => {
                    if matches!(planned.spec.requirement, probes::Requirement::Required) {
                        bail!(
                            "attaching {} ({}) failed: {err}; the {} link cannot be observed",
                            planned.spec.program,
                            target_text,
                            planned.spec.link.name()
                        );
                    }
                    crate::diag!(
                        "goprobe: warning: {} not attached ({err}); the {} link is not observed",
                        planned.spec.program,
                        planned.spec.link.name()
                    );
                    (format!("failed: {err}"), false)
                }
            },
            (PlanStatus::Absent { note, .. }, None) => (format!("absent: {note}"), false),
            (PlanStatus::NotApplicable { reason }, None) => (format!("not used: {reason}"), false),
            (_, None) => ("not attached".into(), false),
        };
        lines.push(ProbeLine {
            link: planned.spec.link.name(),
            program: planned.spec.program,
            target: target_text,
            status,
            attached,
        });
    }
    Ok(lines)
}

fn attached_text(status: &PlanStatus) -> String {
    match status {
        PlanStatus::Uprobe { placement, .. } if !placement.instruction.is_empty() => format!(
            "attached at +{:#x} {}",
            placement.offset_in_function, placement.instruction
        ),
        PlanStatus::Uprobe { .. } => "attached at entry".into(),
        _ => "attached".into(),
    }
}

fn print_plan(
    path: &Path,
    version: &str,
    offsets_source: &str,
    plan: &[PlannedProbe],
) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} ({version}; struct offsets from {offsets_source})",
        path.display()
    )?;
    writeln!(
        out,
        "{:<19} {:<26} {:<22} status",
        "link", "hooked", "program"
    )?;
    for planned in plan {
        writeln!(out, "{planned}")?;
    }
    out.flush()
}

fn warn_async_preemption_off(target: &Target) {
    let off = target.godebug.as_deref().is_some_and(|godebug| {
        godebug
            .split(',')
            .any(|kv| kv.trim() == "asyncpreemptoff=1")
    });
    if off {
        crate::diag!(
            "goprobe: note: the target runs with GODEBUG=asyncpreemptoff=1: sysmon still \
             requests preemption, but no SIGURG, signal delivery or asyncPreempt2 will follow"
        );
    }
}

fn locations(
    symbolizer: &mut Symbolizer,
    event: &Event,
) -> (
    Option<std::rc::Rc<crate::symbolize::Location>>,
    Option<std::rc::Rc<crate::symbolize::Location>>,
) {
    match &event.data {
        EventData::SignalDeliver { user_pc, .. } => (symbolizer.locate(*user_pc), None),
        EventData::Goroutine { pc: Some(pc), .. } => (symbolizer.locate(*pc), None),
        EventData::PreemptRequest { caller_pc, .. } | EventData::SignalM { caller_pc, .. } => {
            (None, symbolizer.locate_caller(*caller_pc))
        }
        _ => (None, None),
    }
}

/// The main output (text or JSON, to stdout or --output), plus the Perfetto file.
fn open_outputs(cli: &Cli) -> anyhow::Result<Vec<Box<dyn Output>>> {
    let mut outputs = vec![open_output(cli)?];
    if let Some(path) = &cli.perfetto {
        outputs.push(Box::new(
            PerfettoOutput::create(path).with_context(|| format!("creating {}", path.display()))?,
        ));
    }
    Ok(outputs)
}

fn open_output(cli: &Cli) -> anyhow::Result<Box<dyn Output>> {
    let writer: Box<dyn Write> = match &cli.output {
        Some(path) => Box::new(BufWriter::with_capacity(
            1 << 18,
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let live = match (cli.quiet, cli.raw) {
        (true, _) => Live::Quiet,
        (false, true) => Live::Events,
        (false, false) => Live::Attempts,
    };
    Ok(match cli.format() {
        Format::Text => Box::new(TextOutput::new(writer, live)),
        Format::Json => Box::new(JsonOutput::new(writer, !cli.quiet)),
    })
}

fn verifier_detail(err: crate::loader::LoadError, verbose: u8) -> anyhow::Error {
    if let crate::loader::LoadError::Verifier { log, .. } = &err
        && verbose > 0
    {
        crate::diag!("{log}");
    }
    err.into()
}

/// CLOCK_MONOTONIC now, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
