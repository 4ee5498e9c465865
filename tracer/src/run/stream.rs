//! The session's middle and end: [`trace`] streams records through the pipeline until
//! something ends it, [`finish`] detaches, drains, stops a started command and
//! summarises.

use std::{io, sync::Arc, time::Duration};

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

/// Streams records through the pipeline until the target exits, `--duration` passes, a
/// signal comes or an output fails.
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
    let mut pipeline = Pipeline::new(
        session.target.pid.get(),
        Arc::clone(&session.prepared.binary),
        session.bias,
        list,
        session.start_ns,
        session.namespace.take(),
    );
    let binary_text = session.prepared.shown_path.display().to_string();
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    // An exec is noticed within this time; signal events of the new program that arrive
    // meanwhile are still correlated.
    let mut exec_check = tokio::time::interval(Duration::from_millis(200));
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
                    let yields = cli
                        .wants_yields()
                        .then(|| session.tracer.yields(session.target.pid.get()));
                    let run = RunInfo {
                        pid: session.target.pid.get(),
                        binary: binary_text.clone(),
                        go_version: session.prepared.version.clone(),
                        duration_ns: monotonic_ns().saturating_sub(session.start_ns),
                        voluntary_yields: yields,
                        container: session.container.clone(),
                        ..RunInfo::default()
                    };
                    metrics.update(&pipeline.aggregator.snapshot(run, session.tracer.counters()?));
                }
            }
            _ = signals.interrupt.recv() => break EndReason::Interrupt,
            _ = signals.terminate.recv() => break EndReason::Terminate,
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

/// Detaches, drains what the kernel still holds, stops a command goprobe started that is
/// still running, and summarises.
pub async fn finish(
    cli: &Cli,
    session: Session,
    end: EndReason,
    tracing: Tracing,
) -> anyhow::Result<Finished> {
    let Session {
        tracer,
        target,
        prepared,
        probes,
        exit_watch,
        kernel_log,
        start_ns,
        container,
        ..
    } = session;
    let Tracing {
        mut rx,
        stop,
        reader,
        mut pipeline,
        metrics,
    } = tracing;
    // Before the command is stopped: what /proc says of it, for `goprobe verify`.
    let process = crate::target::ProcessFacts::read(target.pid.get());
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
        process,
        container,
        untranslated_ids: pipeline
            .namespace()
            .map_or(0, |namespace| namespace.untranslated),
    };
    let summary = match pipeline.finish(run, kernel) {
        Ok(summary) => Some(summary),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => None,
        Err(err) => return Err(err.into()),
    };
    if let Some(summary) = &summary
        && summary.lost_total() > 0
    {
        crate::diag!(
            "goprobe: warning: {}",
            output::loss_advice(summary, cli.ringbuf_kib)
        );
    }
    Ok(Finished {
        code: match status {
            Some(status) if target.is_child => status.as_exit_code(),
            _ => 0,
        },
        summary,
    })
}

/// How a session ended.
pub struct Finished {
    /// goprobe's exit code: 0, or the status of the command it started.
    pub code: i32,
    /// The summary, unless the output closed before it was written.
    pub summary: Option<Summary>,
}
