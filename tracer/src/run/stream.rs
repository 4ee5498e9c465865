//! The session's middle and end: [`trace`] streams records through the pipeline until
//! something ends it, [`finish`] detaches, drains, stops a started command and
//! summarises.

use std::{
    collections::HashMap, future::Future, io, pin::Pin, sync::Arc, task::Poll, time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, watch},
};
use tracer_common::names;

use super::{
    STOP_GRACE, Session,
    end::{EndReason, output_end},
};
use crate::{
    cli::Cli,
    output::{self, Outputs},
    pipeline::Pipeline,
    ringbuf::{self, Record, monotonic_ns},
    summary::{RunInfo, Summary},
    target::ExitStatus,
};

/// The reader and the pipeline while records stream.
/// SIGINT and SIGTERM, caught from before the probes are attached: one that arrives
/// while attaching (or right after the "attached" line) ends tracing cleanly instead of
/// killing goprobe with the default action or being lost.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn catch() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

pub struct Tracing {
    rx: mpsc::Receiver<Vec<Record>>,
    stop: watch::Sender<bool>,
    reader: tokio::task::JoinHandle<io::Result<()>>,
    pipeline: Pipeline,
    metrics: Option<output::Metrics>,
}

/// Streams records through the pipeline until every target has exited (or exec'd),
/// `--duration` passes, a signal comes or an output fails.
pub async fn trace(
    cli: &Cli,
    session: &mut Session,
    outputs: Outputs,
    mut signals: Signals,
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
    let multi = cli.all || session.processes.len() > 1;
    let mut pipeline = Pipeline::new(list, session.start_ns, multi);
    for index in 0..session.processes.len() {
        start_pipeline(session, &mut pipeline, index);
    }
    if session.discovery.is_some() {
        // Execs are watched already: a program started from here on is also seen.
        for pid in super::discover::running_pids() {
            if let Some(index) = session.adopt(cli, pid) {
                start_pipeline(session, &mut pipeline, index);
            }
        }
        crate::diag!(
            "goprobe: tracing {} Go processes, and those that start; Ctrl-C to stop",
            session.processes.len()
        );
    }
    // After loading, and after the binaries found at start were analysed.
    release_freed_memory();
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    let mut report = tokio::time::interval(cli.interval.unwrap_or(Duration::from_secs(3600)));
    // The first tick is immediate: the first report comes one interval in.
    report.tick().await;
    // An exec is noticed within this time; signal events of the new program that arrive
    // meanwhile are still correlated.
    let mut exec_check = tokio::time::interval(Duration::from_millis(200));
    let deadline = cli.duration.unwrap_or(Duration::MAX / 2);
    let sleep = tokio::time::sleep(deadline);
    tokio::pin!(sleep);
    let single = !multi;
    let end = loop {
        // What happened to one process; acted on after the select, which borrows them.
        let ended: Option<(usize, EndReason)> = tokio::select! {
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
                adopt_execs(cli, session, &mut pipeline)?;
                finish_due(cli, session, &mut pipeline)?;
                None
            }
            (index, status) = next_exit(&session.processes) => {
                Some((index, EndReason::TargetExited(status?)))
            }
            _ = &mut sleep => break EndReason::Duration,
            _ = exec_check.tick() => {
                finish_due(cli, session, &mut pipeline)?;
                exec_seen(session, single)
            }
            _ = report.tick(), if cli.interval.is_some() => {
                if let Err(err) = report_interval(session, &mut pipeline) {
                    break output_end(err);
                }
                None
            }
            _ = refresh.tick(), if metrics.is_some() => {
                if let Some(metrics) = &metrics {
                    update_metrics(cli, session, &pipeline, metrics)?;
                }
                None
            }
            _ = signals.interrupt.recv() => break EndReason::Interrupt,
            _ = signals.terminate.recv() => break EndReason::Terminate,
        };
        if let Some((index, reason)) = ended {
            if single {
                break reason;
            }
            match reason {
                // Its last records may still be on the way: summarised once read.
                EndReason::TargetExited(_) => retire(session, index, reason)?,
                reason => end_process(cli, session, &mut pipeline, index, reason)?,
            }
            if session.discovery.is_none()
                && session
                    .processes
                    .iter()
                    .all(|process| process.ended.is_some())
            {
                break EndReason::AllExited;
            }
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

/// A traced process that exec'd another program, seen by polling its exe (`--all` learns
/// of execs from the kernel instead, and traces the new program).
fn exec_seen(session: &Session, single: bool) -> Option<(usize, EndReason)> {
    if session.discovery.is_some() {
        return None;
    }
    session
        .processes
        .iter()
        .enumerate()
        .find_map(|(index, process)| {
            let path = process
                .ended
                .is_none()
                .then(|| process.exec_watch.exec_seen())??;
            let pid = process.target.pid;
            crate::diag!(
                "goprobe: pid {pid} exec'd {}: the probes cover only the program it ran \
                 before, so {} (trace the new program with --pid {pid})",
                path.display(),
                if single {
                    "tracing stops"
                } else {
                    "its tracing stops"
                },
            );
            Some((index, EndReason::TargetExec(path)))
        })
}

/// `--all`: the processes that exec'd may now run a Go program (or another one).
fn adopt_execs(cli: &Cli, session: &mut Session, pipeline: &mut Pipeline) -> anyhow::Result<()> {
    for (pid, exec_ns) in pipeline.take_execs() {
        // Everything the old program (or an exited process whose pid this is) recorded
        // came before this exec in the ring: it can end now.
        let traced = session
            .processes
            .iter()
            .position(|p| p.target.pid.get() == pid);
        if let Some(index) = traced {
            let process = &session.processes[index];
            let reason = match &process.ended {
                Some(reason) => Some(reason.clone()),
                None => process.exec_watch.exec_seen().map(EndReason::TargetExec),
            };
            if let Some(reason) = reason {
                end_process(cli, session, pipeline, index, reason)?;
            }
        }
        let binaries = session.binaries.len();
        if let Some(index) = session.adopt(cli, pid) {
            if session.binaries.len() > binaries {
                release_freed_memory();
            }
            crate::diag!(
                "goprobe: pid {pid} traced {:.1} ms after its exec",
                monotonic_ns().saturating_sub(exec_ns) as f64 / 1e6
            );
            start_pipeline(session, pipeline, index);
        }
    }
    Ok(())
}

/// `--interval`: a report of what each live process did since the previous one.
fn report_interval(session: &Session, pipeline: &mut Pipeline) -> io::Result<()> {
    let duration_ns = monotonic_ns().saturating_sub(session.start_ns);
    let infos: HashMap<u32, RunInfo> = session
        .processes
        .iter()
        .map(|process| {
            let info = RunInfo {
                duration_ns,
                ..run_info(session, process, pipeline.is_multi())
            };
            (process.target.pid.get(), info)
        })
        .collect();
    pipeline.report_interval(monotonic_ns(), |pid| {
        infos.get(&pid).cloned().unwrap_or_default()
    })
}

/// Renders the live processes' snapshots for the metrics endpoint.
fn update_metrics(
    cli: &Cli,
    session: &Session,
    pipeline: &Pipeline,
    metrics: &output::Metrics,
) -> anyhow::Result<()> {
    let duration_ns = monotonic_ns().saturating_sub(session.start_ns);
    let live: Vec<_> = session
        .processes
        .iter()
        .filter(|process| process.ended.is_none())
        .filter_map(|process| {
            let pid = process.target.pid.get();
            Some((process, pipeline.process_of(pid)?))
        })
        .collect();
    let snapshots: Vec<Summary> = live
        .iter()
        .take(output::prometheus::MAX_EXPORTED_PROCESSES)
        .map(|(process, traced)| {
            let pid = process.target.pid.get();
            let run = RunInfo {
                duration_ns,
                voluntary_yields: cli.wants_yields().then(|| session.tracer.yields(pid)),
                ..run_info(session, process, pipeline.is_multi())
            };
            traced
                .aggregator
                .snapshot(run, crate::events::KernelCounters::default())
        })
        .collect();
    let kernel = session.tracer.counters()?;
    metrics.update(&output::prometheus::MetricsView {
        processes: &snapshots,
        kernel: &kernel,
        unexported: live.len().saturating_sub(snapshots.len()),
    });
    Ok(())
}

/// Gives the memory freed after loading (the kernel's BTF, parsed to load the object and
/// find `task_struct.pid`; a binary's DWARF, read for its struct layout) back to the
/// system: glibc keeps freed heap in its arenas otherwise, and a daemon's RSS would stay
/// at that peak for good.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Hands process `index` of the session to the pipeline.
fn start_pipeline(session: &mut Session, pipeline: &mut Pipeline, index: usize) {
    let process = &mut session.processes[index];
    pipeline.add_process(
        process.target.pid.get(),
        Arc::clone(&session.binaries[process.binary].binary),
        process.bias,
        process.namespace.take(),
    );
}

/// Records written before an exit are read within this time when the reader keeps up: it
/// polls the rings at least every 100 ms (`ringbuf::POLL_MAX`), and holds records 1 ms
/// for those still being committed; the rest is margin for a slow or loaded CPU (in a
/// 2-vCPU qemu guest without KVM, 250 ms left 31 records of an exited process unrouted).
const EXIT_GRACE_NS: u64 = 1_000_000_000;

/// One of several processes exited: it leaves the kernel's map now (its pid may be reused
/// by an unrelated process), and is summarised by [`finish_due`] once its last records
/// have been read.
fn retire(session: &mut Session, index: usize, reason: EndReason) -> anyhow::Result<()> {
    let process = &mut session.processes[index];
    let pid = process.target.pid.get();
    let yields = session.tracer.yields(pid);
    session.tracer.untrace_process(pid)?;
    process.ended = Some(reason);
    process.exited = Some((monotonic_ns(), yields));
    Ok(())
}

/// Summarises the retired processes whose records have all been read: the pipeline is
/// past the moment their exit was seen, or the grace has passed.
fn finish_due(cli: &Cli, session: &mut Session, pipeline: &mut Pipeline) -> anyhow::Result<()> {
    let now = monotonic_ns();
    while let Some(index) = session.processes.iter().position(|process| {
        process
            .exited
            .is_some_and(|(at, _)| pipeline.latest_ns() >= at || now >= at + EXIT_GRACE_NS)
    }) {
        let reason = session.processes[index]
            .ended
            .clone()
            .expect("a retired process has ended");
        end_process(cli, session, pipeline, index, reason)?;
    }
    Ok(())
}

/// Ends the tracing of one of several processes: it leaves the kernel's map (its pid may
/// be reused by an unrelated process), its summary is written now and its state freed.
fn end_process(
    cli: &Cli,
    session: &mut Session,
    pipeline: &mut Pipeline,
    index: usize,
    reason: EndReason,
) -> anyhow::Result<()> {
    let mut process = session.processes.remove(index);
    let pid = process.target.pid.get();
    let yields = process
        .exited
        .map_or_else(|| session.tracer.yields(pid), |(_, n)| n);
    let yields = cli.wants_yields().then_some(yields);
    session.tracer.untrace_process(pid)?;
    process.ended = Some(reason);
    let untranslated = pipeline
        .process_of(pid)
        .map_or(0, |traced| traced.untranslated_ids());
    let info = RunInfo {
        untranslated_ids: untranslated,
        voluntary_yields: yields,
        duration_ns: monotonic_ns().saturating_sub(session.start_ns),
        ..run_info(session, &process, true)
    };
    pipeline.finish_process(pid, info)?;
    Ok(())
}

/// What a process's summary says of the run, but for what only the end knows (the
/// duration; the end reason when the process did not end before the run).
fn run_info(session: &Session, process: &super::TracedProcess, shares_run: bool) -> RunInfo {
    let prepared = &session.binaries[process.binary];
    RunInfo {
        pid: process.target.pid.get(),
        binary: prepared.shown_path.display().to_string(),
        go_version: prepared.version.clone(),
        probes: session.probes[process.binary].clone(),
        end_reason: process
            .ended
            .as_ref()
            .map(EndReason::describe)
            .unwrap_or_default(),
        container: process.container.clone(),
        shares_run,
        ..RunInfo::default()
    }
}

/// The first of the still-traced processes to exit: its index and how it ended. Pending
/// forever when none is left.
async fn next_exit(processes: &[super::TracedProcess]) -> (usize, io::Result<ExitStatus>) {
    type Exit<'a> = Pin<Box<dyn Future<Output = (usize, io::Result<ExitStatus>)> + Send + 'a>>;
    let mut exits: Vec<Exit<'_>> = processes
        .iter()
        .enumerate()
        .filter(|(_, process)| process.ended.is_none())
        .map(|(index, process)| -> Exit<'_> {
            Box::pin(async move { (index, process.exit_watch.exited().await) })
        })
        .collect();
    std::future::poll_fn(|cx| {
        exits
            .iter_mut()
            .find_map(|exit| match exit.as_mut().poll(cx) {
                Poll::Ready(done) => Some(done),
                Poll::Pending => None,
            })
            .map_or(Poll::Pending, Poll::Ready)
    })
    .await
}

/// Detaches, drains what the kernel still holds, stops a command goprobe started that is
/// still running, and summarises each process.
pub async fn finish(
    cli: &Cli,
    session: Session,
    end: EndReason,
    tracing: Tracing,
) -> anyhow::Result<Finished> {
    let Tracing {
        mut rx,
        stop,
        reader,
        mut pipeline,
        metrics,
    } = tracing;
    // Before a command is stopped, and before detach (which frees the yield counters):
    // what /proc says of each process, for `goprobe verify`.
    let mut infos: HashMap<u32, RunInfo> = session
        .processes
        .iter()
        .map(|process| {
            let pid = process.target.pid.get();
            let info = RunInfo {
                voluntary_yields: cli.wants_yields().then(|| {
                    process
                        .exited
                        .map_or_else(|| session.tracer.yields(pid), |(_, n)| n)
                }),
                process: crate::target::ProcessFacts::read(pid),
                ..run_info(&session, process, pipeline.is_multi())
            };
            (pid, info)
        })
        .collect();
    let Session {
        tracer,
        processes,
        kernel_log,
        start_ns,
        ..
    } = session;
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
    let child = processes.iter().find(|process| process.target.is_child);
    let status = match (&end, child) {
        (EndReason::TargetExited(status), _) => Some(*status),
        (_, Some(child)) => Some(
            child
                .exit_watch
                .stop_child(end.stop_signal(), STOP_GRACE)
                .await
                .context("stopping the traced command")?,
        ),
        _ => None,
    };
    if let EndReason::OutputFailed(err) = &end {
        bail!("{err}");
    }
    let summaries = pipeline.finish(
        |pid, traced| {
            let info = infos.remove(&pid).unwrap_or_default();
            RunInfo {
                untranslated_ids: traced.untranslated_ids(),
                duration_ns: traced_ns,
                end_reason: if info.end_reason.is_empty() {
                    end.describe()
                } else {
                    info.end_reason.clone()
                },
                ..info
            }
        },
        kernel.clone(),
    );
    let summaries = match summaries {
        Ok(summaries) => summaries,
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Vec::new(),
        Err(err) => return Err(err.into()),
    };
    if kernel.lost.total() > 0 {
        crate::diag!(
            "goprobe: warning: {}",
            output::loss_advice(&kernel.lost, cli.ringbuf_kib)
        );
    }
    if let Some(advice) = output::skip_advice(&kernel) {
        crate::diag!("goprobe: warning: {advice}");
    }
    Ok(Finished {
        code: match (status, child) {
            (Some(status), Some(_)) => status.as_exit_code(),
            _ => 0,
        },
        summaries,
    })
}

/// How a session ended.
pub struct Finished {
    /// goprobe's exit code: 0, or the status of the command it started.
    pub code: i32,
    /// Each process's summary, in pid order; none when the output closed before they
    /// were written.
    pub summaries: Vec<Summary>,
}
