//! Output formats. Each renders the same two things: one event (with what correlation
//! made of it) and the final summary. Data goes to stdout or `--output`; diagnostics
//! never do.

pub mod json;
pub mod perfetto;
pub mod prometheus;
pub mod text;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::Context as _;

use tracer_common::{EventKind, Stream};

use crate::{
    cli::{Cli, Format},
    correlate::{Attempt, Meaning},
    events::Event,
    summary::{IntervalReport, Summary, Total},
    symbolize::Location,
};

/// An event with everything needed to render it.
pub struct EventView<'a> {
    pub event: &'a Event,
    pub meaning: &'a Meaning,
    /// The attempt the correlator folded it into.
    pub attempt: Option<u64>,
    /// Where the thread or goroutine was (signal delivery, handler, async preemption).
    pub location: Option<Rc<Location>>,
    /// The function that made the call (`preemptone`'s and `signalM`'s callers).
    pub caller: Option<Rc<Location>>,
    /// Nanoseconds since tracing started.
    pub rel_ns: i64,
    /// More than one process is traced: lines name the pid.
    pub multi: bool,
}

/// A finished preemption attempt with its interrupted location resolved.
pub struct AttemptView<'a> {
    /// The traced process (host pid).
    pub pid: u32,
    pub attempt: &'a Attempt,
    pub location: Option<Rc<Location>>,
    /// Nanoseconds since tracing started, of the attempt's start.
    pub rel_ns: i64,
    /// More than one process is traced: lines name the pid.
    pub multi: bool,
}

pub trait Output {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()>;
    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()>;
    /// One process's summary (once per traced process).
    fn summary(&mut self, summary: &Summary) -> io::Result<()>;
    /// The whole run, after every process's summary, when several were traced.
    fn total(&mut self, _total: &Total) -> io::Result<()> {
        Ok(())
    }
    /// `--interval`: what the live processes did since the previous report.
    fn interval(&mut self, _report: &IntervalReport) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()>;
}

/// Every output of a run, opened before anything is attached or started.
pub struct Outputs {
    pub list: Vec<Box<dyn Output>>,
    pub metrics: Option<Metrics>,
}

/// The Prometheus endpoint: the latest snapshot and the task serving it.
pub struct Metrics {
    snapshot: prometheus::Snapshot,
    pub server: tokio::task::JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Metrics {
    /// Renders the exposition scrapes get from now on.
    pub fn update(&self, view: &prometheus::MetricsView<'_>) {
        let text = prometheus::render(view);
        if let Ok(mut latest) = self.snapshot.lock() {
            *latest = text;
        }
    }
}

impl Outputs {
    /// The main output (text or JSON, to stdout or `--output`), the Perfetto file, and the
    /// metrics listener. Each failure names the file or address.
    pub async fn open(cli: &Cli) -> anyhow::Result<Outputs> {
        let mut list = vec![main_output(cli)?];
        if let Some(path) = &cli.perfetto {
            let file =
                create(path).with_context(|| format!("--perfetto: creating {}", path.display()))?;
            list.push(Box::new(
                perfetto::PerfettoOutput::new(BufWriter::new(Named::new(file, path)))
                    .with_context(|| format!("writing {}", path.display()))?,
            ));
        }
        let metrics = match cli.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics: cannot listen on {addr}"))?;
                let addr = listener.local_addr().unwrap_or(addr);
                let snapshot = prometheus::Snapshot::default();
                let server = tokio::spawn(prometheus::serve(
                    listener,
                    std::sync::Arc::clone(&snapshot),
                ));
                crate::diag!("goprobe: serving Prometheus metrics at http://{addr}/metrics");
                Some(Metrics {
                    snapshot,
                    server,
                    addr,
                })
            }
            None => None,
        };
        Ok(Outputs { list, metrics })
    }
}

fn create(path: &Path) -> io::Result<File> {
    File::create(path)
}

fn main_output(cli: &Cli) -> anyhow::Result<Box<dyn Output>> {
    let writer: Box<dyn Write> = match &cli.output {
        Some(path) => {
            let file = create(path).with_context(|| format!("-o: creating {}", path.display()))?;
            Box::new(BufWriter::with_capacity(1 << 18, Named::new(file, path)))
        }
        None => Box::new(BufWriter::with_capacity(1 << 16, io::stdout())),
    };
    let live = match (cli.quiet, cli.raw) {
        (true, _) => text::Live::Quiet,
        (false, true) => text::Live::Events,
        (false, false) => text::Live::Attempts,
    };
    Ok(match cli.format() {
        Format::Text => Box::new(text::TextOutput::new(writer, live)),
        Format::Json => Box::new(json::JsonOutput::new(writer, !cli.quiet)),
    })
}

/// A file whose write errors name it (`writing /dev/full: No space left on device`).
pub struct Named<W> {
    inner: W,
    path: PathBuf,
}

impl<W> Named<W> {
    pub fn new(inner: W, path: &Path) -> Self {
        Named {
            inner,
            path: path.to_path_buf(),
        }
    }

    fn wrap(&self, err: io::Error) -> io::Error {
        io::Error::new(
            err.kind(),
            format!("writing {}: {err}", self.path.display()),
        )
    }
}

impl<W: Write> Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|err| self.wrap(err))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|err| self.wrap(err))
    }
}

/// What to tell the user when the kernel skipped runs of goprobe's programs: their events
/// were never recorded, and nothing in the rings shows where.
pub fn skip_advice(kernel: &crate::events::KernelCounters) -> Option<String> {
    let total = kernel.skipped_total();
    let programs: Vec<String> = kernel
        .skipped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(program, n)| format!("{program} {n} ({})", what_a_skip_hides(program)))
        .collect();
    (total > 0).then(|| {
        format!(
            "the kernel skipped {total} runs of goprobe's programs: {}. It does not nest \
             BPF programs on one CPU, so an event that fired while another tracing program \
             (another tool's, or goprobe's own on a preemptible kernel) ran there was never \
             recorded; the counts and attempts around it may be off. Trace without other \
             BPF tracing tools attached",
            programs.join("; ")
        )
    })
}

/// What one skipped run of `program` can have kept from goprobe.
pub(crate) fn what_a_skip_hides(program: &str) -> &'static str {
    if program.contains("sys_exit") {
        "each at most a failed tgkill's errno: it runs for every syscall on the host, \
         mostly other processes'"
    } else if program.contains("sys_enter") {
        "each at most a tgkill: it runs for every syscall on the host, mostly other \
         processes'"
    } else {
        "each a signal event of a traced process or of another"
    }
}

/// What to tell the user when records were lost: which kinds, in which ring, and the
/// remedy. A chain loss can misclassify the attempts open then (marked `events_lost`);
/// a bulk loss (yields, run slices) cannot: yields are still counted in the kernel.
pub fn loss_advice(lost: &crate::events::PerKind, ringbuf_kib: u32) -> String {
    let lost = |stream: Stream| -> (u64, Vec<String>) {
        let kinds: Vec<(u64, EventKind)> = EventKind::ALL
            .iter()
            .filter(|kind| kind.stream() == stream)
            .map(|kind| (lost.get(*kind), *kind))
            .filter(|(n, _)| *n > 0)
            .collect();
        let names = kinds
            .iter()
            .map(|(n, kind)| format!("{n} {}", crate::events::kind_name(*kind)))
            .collect();
        (kinds.iter().map(|(n, _)| n).sum(), names)
    };
    let mut parts = Vec::new();
    let (chain, chain_kinds) = lost(Stream::Chain);
    if chain > 0 {
        parts.push(format!(
            "{chain} preemption-chain records were lost ({}); the attempts open then are \
             marked `events_lost`",
            chain_kinds.join(", ")
        ));
    }
    let (bulk, bulk_kinds) = lost(Stream::Bulk);
    if bulk > 0 {
        parts.push(format!(
            "{bulk} high-rate records were lost ({}); the chain is unaffected and yields \
             are still counted in the kernel",
            bulk_kinds.join(", ")
        ));
    }
    format!(
        "{}. goprobe's reader fell behind: write to a file (-o) rather than a slow \
         terminal, drop --yields/--slices unless you need every record, or raise \
         --ringbuf-kib (now {ringbuf_kib})",
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::skip_advice;
    use crate::events::KernelCounters;

    #[test]
    fn skipped_runs_are_named_by_program_only_when_there_are_some() {
        let mut kernel = KernelCounters::default();
        kernel.skipped.insert("raw_signal_deliver".into(), 0);
        assert_eq!(skip_advice(&kernel), None);
        kernel.skipped.insert("tp_signal_generate".into(), 3);
        let advice = skip_advice(&kernel).expect("advice");
        assert!(advice.contains("skipped 3 runs"), "{advice}");
        assert!(
            advice.contains("runs of goprobe's programs: tp_signal_generate 3 (each a signal"),
            "{advice}"
        );
        assert_eq!(kernel.lost_total(), 3);
    }
}
