//! The session's middle and end: [`trace`] streams records through the pipeline until
//! something ends it, [`finish`] detaches, drains, stops a started command and
//! summarises.

use std::{future::Future, io, pin::Pin, sync::Arc, task::Poll, time::Duration};

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
    let mut pipeline = Pipeline::new(list, session.start_ns);
    for process in &mut session.processes {
        pipeline.add_process(
            process.target.pid.get(),
            Arc::clone(&session.binaries[process.binary].binary),
            process.bias,
            process.namespace.take(),
        );
    }
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    // An exec is noticed within this time; signal events of the new program that arrive
    // meanwhile are still correlated.
    let mut exec_check = tokio::time::interval(Duration::from_millis(200));
    let deadline = cli.duration.unwrap_or(Duration::MAX / 2);
    let sleep = tokio::time::sleep(deadline);
    tokio::pin!(sleep);
    let single = session.processes.len() == 1;
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
                None
            }
            (index, status) = next_exit(&session.processes) => {
                Some((index, EndReason::TargetExited(status?)))
            }
            _ = &mut sleep => break EndReason::Duration,
            _ = exec_check.tick() => session.processes.iter().enumerate().find_map(|(index, process)| {
                let path = process.ended.is_none().then(|| process.exec_watch.exec_seen())??;
                let pid = process.target.pid;
                crate::diag!(
                    "goprobe: pid {pid} exec'd {}: the probes cover only the program it ran \
                     before, so {} (trace the new program with --pid {pid})",
                    path.display(),
                    if single { "tracing stops" } else { "its tracing stops" },
                );
                Some((index, EndReason::TargetExec(path)))
            }),
            _ = refresh.tick(), if metrics.is_some() => {
                if let (Some(metrics), [process]) = (&metrics, &session.processes[..]) {
                    let pid = process.target.pid.get();
                    let prepared = &session.binaries[process.binary];
                    let yields = cli.wants_yields().then(|| session.tracer.yields(pid));
                    let run = RunInfo {
                        pid,
                        binary: prepared.shown_path.display().to_string(),
                        go_version: prepared.version.clone(),
                        duration_ns: monotonic_ns().saturating_sub(session.start_ns),
                        voluntary_yields: yields,
                        container: process.container.clone(),
                        processes: 1,
                        ..RunInfo::default()
                    };
                    if let Some(traced) = pipeline.process_of(pid) {
                        metrics.update(&traced.aggregator.snapshot(run, session.tracer.counters()?));
                    }
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
            let process = &mut session.processes[index];
            // Its pid may be reused by an unrelated process: stop matching it.
            session.tracer.untrace_process(process.target.pid.get())?;
            process.ended = Some(reason);
            if session
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
    let Session {
        tracer,
        binaries,
        probes,
        processes,
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
    // Before a command is stopped: what /proc says of each, for `goprobe verify`.
    let facts: Vec<_> = processes
        .iter()
        .map(|process| crate::target::ProcessFacts::read(process.target.pid.get()))
        .collect();
    // Detach first, then read the kernel's counters: every record they count as
    // submitted is then already in a ring, which the reader drains last.
    let yields: Vec<Option<u64>> = processes
        .iter()
        .map(|process| {
            cli.wants_yields()
                .then(|| tracer.yields(process.target.pid.get()))
        })
        .collect();
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
    let count = processes.len();
    let mut facts = facts.into_iter();
    let mut yields = yields.into_iter();
    let mut infos: std::collections::HashMap<u32, RunInfo> = processes
        .iter()
        .map(|process| {
            let prepared = &binaries[process.binary];
            let pid = process.target.pid.get();
            let info = RunInfo {
                pid,
                binary: prepared.shown_path.display().to_string(),
                go_version: prepared.version.clone(),
                duration_ns: traced_ns,
                probes: probes[process.binary].clone(),
                end_reason: process.ended.as_ref().unwrap_or(&end).describe(),
                voluntary_yields: yields.next().flatten(),
                process: facts.next().flatten(),
                container: process.container.clone(),
                untranslated_ids: 0,
                processes: count,
            };
            (pid, info)
        })
        .collect();
    let summaries = pipeline.finish(
        |pid, traced| RunInfo {
            untranslated_ids: traced.untranslated_ids(),
            ..infos.remove(&pid).unwrap_or_default()
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
