//! Prometheus metrics (`--metrics ADDR`): the live aggregates in the text exposition
//! format, served at `/metrics`. The pipeline renders a snapshot once a second; the server
//! only hands out the latest one, so the event path takes no lock.

use std::{
    convert::Infallible,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tracer_common::EventKind;

use crate::{
    correlate::{Hop, PreemptAction, PreemptPath},
    events::kind_name,
    histogram::Distribution,
    summary::Summary,
};

/// The latest rendered exposition.
pub type Snapshot = Arc<Mutex<String>>;

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Histogram buckets: log2 bounds from 2^10 ns (~1 µs) to 2^36 ns (~69 s), fixed so that
/// every scrape shows the same `le` series.
const FIRST_BUCKET: usize = 10;
const LAST_BUCKET: usize = 36;

/// A nanosecond distribution as a Prometheus histogram in seconds, on fixed log2 buckets.
fn histogram(out: &mut String, name: &str, labels: &str, d: &Distribution) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (high_ns, count) in d.cumulative_between(FIRST_BUCKET, LAST_BUCKET) {
        let le = (high_ns as f64 + 1.0) / 1e9;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le:e}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        d.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", d.sum() as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{braces} {}", d.count());
}

/// At most this many processes get series of their own: each has ~400 (16 event kinds,
/// 4 preemption kinds, up to 40 requester × outcome pairs, 12 histograms of 29 buckets).
/// The others are counted in `goprobe_processes_unexported`.
pub const MAX_EXPORTED_PROCESSES: usize = 64;

/// What one scrape shows: the live processes' snapshots
/// ([`crate::summary::Aggregator::snapshot`]) and the run's kernel counters.
pub struct MetricsView<'a> {
    pub processes: &'a [Summary],
    pub kernel: &'a crate::events::KernelCounters,
    /// Live processes beyond [`MAX_EXPORTED_PROCESSES`].
    pub unexported: usize,
}

/// The labels that name a process on every per-process series: `pid`, `exe` (the
/// binary's file name) and `container` (12-digit id, or empty).
fn process_labels(s: &Summary) -> String {
    let exe = std::path::Path::new(&s.run.binary)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let container = s
        .run
        .container
        .container
        .as_ref()
        .map(|c| c.short().to_string())
        .unwrap_or_default();
    format!(
        "pid=\"{}\",exe=\"{}\",container=\"{}\"",
        s.run.pid,
        escape(&exe),
        escape(&container)
    )
}

/// Renders every metric. Series of a process that has exited are gone from the next
/// scrape on: only live processes are in `view`.
pub fn render(view: &MetricsView<'_>) -> String {
    let mut out = String::with_capacity(8192 * view.processes.len().max(1));
    let labelled: Vec<(String, &Summary)> = view
        .processes
        .iter()
        .map(|s| (process_labels(s), s))
        .collect();
    header(
        &mut out,
        "goprobe_target_info",
        "gauge",
        "A traced process.",
    );
    for (labels, s) in &labelled {
        let _ = writeln!(
            out,
            "goprobe_target_info{{{labels},binary=\"{}\",go_version=\"{}\"}} 1",
            escape(&s.run.binary),
            escape(&s.run.go_version)
        );
    }
    header(
        &mut out,
        "goprobe_processes",
        "gauge",
        "Processes traced now.",
    );
    let _ = writeln!(
        out,
        "goprobe_processes {}",
        view.processes.len() + view.unexported
    );
    header(
        &mut out,
        "goprobe_processes_unexported",
        "gauge",
        "Processes traced now whose series are left out (beyond the cardinality bound).",
    );
    let _ = writeln!(out, "goprobe_processes_unexported {}", view.unexported);

    header(
        &mut out,
        "goprobe_events_total",
        "counter",
        "Kernel events received, by process and kind.",
    );
    for (labels, s) in &labelled {
        for kind in EventKind::ALL {
            let _ = writeln!(
                out,
                "goprobe_events_total{{{labels},kind=\"{}\"}} {}",
                kind_name(kind),
                s.received.get(kind)
            );
        }
    }
    for (name, help, counts) in [
        (
            "goprobe_lost_events_total",
            "Events the kernel could not submit because the ring buffer was full (whole run).",
            &view.kernel.lost,
        ),
        (
            "goprobe_read_errors_total",
            "Events whose probe could not read the target's memory, by kind (whole run).",
            &view.kernel.read_errors,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for kind in EventKind::ALL {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{}\"}} {}",
                kind_name(kind),
                counts.get(kind)
            );
        }
    }
    header(
        &mut out,
        "goprobe_kernel_skipped_runs_total",
        "counter",
        "Runs of a goprobe program the kernel skipped because a BPF program was already \
         running on the CPU: events never recorded (whole run; kernels that count them).",
    );
    for (program, skipped) in &view.kernel.skipped {
        let _ = writeln!(
            out,
            "goprobe_kernel_skipped_runs_total{{program=\"{program}\"}} {skipped}"
        );
    }
    header(
        &mut out,
        "goprobe_malformed_records_total",
        "counter",
        "Ring buffer records goprobe could not decode.",
    );
    let malformed: u64 = view.processes.iter().map(|s| s.malformed).sum();
    let _ = writeln!(out, "goprobe_malformed_records_total {malformed}");

    header(
        &mut out,
        "goprobe_preemptions_total",
        "counter",
        "Goroutines preempted, by path (async, stack_check) and action (reschedule, park).",
    );
    for (labels, s) in &labelled {
        let p = &s.preemptions;
        for (path, action, n) in [
            (
                PreemptPath::Async,
                PreemptAction::Reschedule,
                p.async_reschedule,
            ),
            (PreemptPath::Async, PreemptAction::Park, p.async_park),
            (
                PreemptPath::StackCheck,
                PreemptAction::Reschedule,
                p.stack_check_reschedule,
            ),
            (
                PreemptPath::StackCheck,
                PreemptAction::Park,
                p.stack_check_park,
            ),
        ] {
            let _ = writeln!(
                out,
                "goprobe_preemptions_total{{{labels},path=\"{}\",action=\"{}\"}} {n}",
                path.name(),
                action.name()
            );
        }
    }
    header(
        &mut out,
        "goprobe_voluntary_yields_total",
        "counter",
        "runtime.Gosched and friends: rescheduling that is not a preemption.",
    );
    for (labels, s) in &labelled {
        if let Some(yields) = s.voluntary_yields {
            let _ = writeln!(out, "goprobe_voluntary_yields_total{{{labels}}} {yields}");
        }
    }

    header(
        &mut out,
        "goprobe_attempts_total",
        "counter",
        "Finished preemption attempts, by requester and outcome.",
    );
    for (labels, s) in &labelled {
        for ((requester, outcome), n) in &s.outcomes {
            let _ = writeln!(
                out,
                "goprobe_attempts_total{{{labels},requester=\"{}\",outcome=\"{}\"}} {n}",
                requester.name(),
                outcome.name()
            );
        }
    }

    header(
        &mut out,
        "goprobe_hop_latency_seconds",
        "histogram",
        "Latency of each link of the preemption chain.",
    );
    for (labels, s) in &labelled {
        // Every hop from the first scrape, seen or not: series must not appear over time.
        for hop in Hop::ALL {
            histogram(
                &mut out,
                "goprobe_hop_latency_seconds",
                &format!("{labels},hop=\"{}\"", hop.key()),
                s.hop(hop),
            );
        }
    }
    for (name, help, of) in [
        (
            "goprobe_sysmon_tick_interval_seconds",
            "Interval between consecutive sysmon ticks.",
            (|s: &Summary| &s.tick_intervals) as fn(&Summary) -> &Distribution,
        ),
        (
            "goprobe_running_when_asked_seconds",
            "How long a goroutine had run when sysmon asked it to stop (lower bound).",
            |s: &Summary| &s.ran_before_request,
        ),
        (
            "goprobe_gc_preemption_delay_seconds",
            "From the GC's suspendG to the goroutine off the CPU.",
            |s: &Summary| &s.gc_delays,
        ),
        (
            "goprobe_stw_preemption_delay_seconds",
            "From stop-the-world's preemptall to the goroutine off the CPU.",
            |s: &Summary| &s.stw_delays,
        ),
    ] {
        header(&mut out, name, "histogram", help);
        for (labels, s) in &labelled {
            histogram(&mut out, name, labels, of(s));
        }
    }
    out
}

/// At most this many scrape connections at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer, idle keep-alive included (Prometheus reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves `snapshot` at `/metrics` (and `/`) until the task is dropped.
pub async fn serve(listener: TcpListener, snapshot: Snapshot) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors (or another transient error): the pending
            // connection stays in the backlog, so back off instead of spinning on it.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let snapshot = Arc::clone(&snapshot);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &snapshot);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

/// `GET` or `HEAD` of `/metrics` or `/`, any query string; hyper leaves the body out
/// of a `HEAD` response.
fn respond(request: &Request<Incoming>, snapshot: &Snapshot) -> Response<Full<Bytes>> {
    let (status, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics" | "/") => (
            StatusCode::OK,
            snapshot.lock().map(|text| text.clone()).unwrap_or_default(),
        ),
        (&Method::GET | &Method::HEAD, _) => (
            StatusCode::NOT_FOUND,
            "goprobe serves /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "goprobe serves GET /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        correlate::{Meaning, Preemption},
        events::KernelCounters,
        summary::{Aggregator, RunInfo},
    };

    #[test]
    fn renders_counters_and_histograms() {
        let mut agg = Aggregator::new();
        let event = crate::events::Event {
            kind: EventKind::GoschedImpl,
            ts_ns: 1,
            tid: 1,
            tgid: 1,
            cpu: 0,
            seq: 0,
            data: crate::events::EventData::Goroutine {
                g_addr: 1,
                goid: Some(7),
                pc: None,
                g_status: None,
                preempted: Some(true),
                preempt_flags: None,
            },
        };
        let meaning = Meaning::Preemption(Preemption {
            ts_ns: 1,
            tid: 1,
            goid: Some(7),
            path: PreemptPath::Async,
            action: PreemptAction::Reschedule,
            pc: None,
        });
        agg.add(&event, &meaning);
        agg.tick_intervals.add(10_000_000);
        agg.tick_intervals.add(20_000);
        let kernel = KernelCounters::default();
        let snapshot = agg.snapshot(
            RunInfo {
                pid: 42,
                binary: "/bin/\"app\"".into(),
                go_version: "go1.27.3".into(),
                voluntary_yields: Some(3),
                ..RunInfo::default()
            },
            kernel.clone(),
        );
        let text = render(&MetricsView {
            processes: std::slice::from_ref(&snapshot),
            kernel: &kernel,
            unexported: 0,
        });
        let process = "pid=\"42\",exe=\"\\\"app\\\"\",container=\"\"";
        assert!(
            text.contains(&format!(
                "goprobe_target_info{{{process},binary=\"/bin/\\\"app\\\"\""
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "goprobe_events_total{{{process},kind=\"gosched\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "goprobe_preemptions_total{{{process},path=\"async\",action=\"reschedule\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "goprobe_sysmon_tick_interval_seconds_count{{{process}}} 2\n"
        )));
        assert!(text.contains(&format!(
            "goprobe_sysmon_tick_interval_seconds_bucket{{{process},le=\"+Inf\"}} 2\n"
        )));
        // Cumulative buckets: 20 µs falls in [16384, 32767] ns.
        assert!(
            text.contains(&format!(
                "goprobe_sysmon_tick_interval_seconds_bucket{{{process},le=\"3.2768e-5\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains("goprobe_processes 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {line}");
        }
    }
}
