//! Command line: every flag documented here is the user's whole interface.

use std::{num::NonZeroU32, path::PathBuf, time::Duration};

use clap::{ArgGroup, Parser, ValueEnum};

/// Trace how the Go runtime preempts goroutines in a running Go program, from sysmon's tick
/// to the goroutine leaving the CPU, with eBPF (uprobes on the runtime, signal tracepoints).
///
/// Needs root, or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (plus CAP_SYS_PTRACE to
/// trace another user's process). Works on unmodified Go 1.21+ binaries; attaches entry
/// probes only and detaches on exit, Ctrl-C or SIGKILL.
#[derive(Debug, Parser)]
#[command(
    name = "goprobe",
    version,
    after_help = "Examples:\n  \
        sudo goprobe --pid 1234                  trace a running process until Ctrl-C\n  \
        sudo goprobe --pid 1234 --duration 10    trace for 10 seconds, then summarise\n  \
        sudo goprobe --json -o trace.jsonl -- ./app --flag   start ./app traced from its first instruction\n  \
        sudo goprobe --list-probes --pid 1234    show what would be attached, attach nothing\n\n\
        With `-- CMD` the command lives as long as the trace: when goprobe stops first\n\
        (--duration, SIGINT, SIGTERM, an output error) it sends the command SIGINT (for\n\
        SIGINT) or SIGTERM, waits up to 5 s, then kills it; if goprobe dies the kernel sends\n\
        the command SIGTERM.\n\n\
        Exit status: 0 ok (with `-- CMD`: the command's own status), 1 runtime error, 2 usage error.\n\n\
        `goprobe verify [--pid PID | -- CMD]` gives a PASS/WARN/FAIL verdict on async\n\
        preemption in a process, or on this host (see `goprobe verify --help`)."
)]
#[command(group(ArgGroup::new("target").required(true).args(["pid", "command", "all"])))]
pub struct Cli {
    /// Process id of a Go program to trace (host pid). Repeat it, or give a list
    /// (`-p 12,34`), to trace several: processes of one binary share its probes.
    #[arg(
        short,
        long,
        value_name = "PID",
        value_delimiter = ',',
        conflicts_with = "command"
    )]
    pub pid: Vec<NonZeroU32>,

    /// Trace every Go process on the host (Go 1.21+), those running now and those that
    /// start later (found at their exec). Non-Go processes are ignored; runs until
    /// Ctrl-C or --duration.
    #[arg(long, conflicts_with_all = ["pid", "command"])]
    pub all: bool,

    /// With --all: only processes whose executable path (as the process sees it)
    /// matches this shell pattern (`*` also crosses `/`), e.g. '*/bin/api-*'.
    #[arg(long, value_name = "GLOB", requires = "all", value_parser = parse_glob)]
    pub exe: Option<glob::Pattern>,

    /// With --all: only processes with this command name (/proc/PID/comm, 15 chars).
    #[arg(long, value_name = "NAME", requires = "all")]
    pub comm: Option<String>,

    /// With --all: only processes whose cgroup path starts with PATH, or whose container
    /// id starts with PATH (`--cgroup 1a2b3c`).
    #[arg(long, value_name = "PATH", requires = "all")]
    pub cgroup: Option<String>,

    /// Stop after this many seconds (fractions allowed), then print the summary.
    #[arg(short, long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Every SECS seconds, one line per traced process with what happened in the interval
    /// (preemptions, attempts by outcome) and the preemption latency so far; tracing
    /// goes on (with `--all` and no --duration: a node daemon).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub interval: Option<Duration>,

    /// Output format on stdout (or the --output file).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Shorthand for `--format json`: one JSON object per line (`type` = "event",
    /// "attempt" or "summary"); schema in README.md.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Write trace output to FILE instead of stdout (diagnostics stay on stderr).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print only the summary, no live lines.
    #[arg(short, long)]
    pub quiet: bool,

    /// Text format: one line per kernel event (tick, request, signal, delivery, ...)
    /// instead of one line per preemption attempt. JSON always carries both.
    #[arg(long, conflicts_with = "quiet")]
    pub raw: bool,

    /// Also record when each goroutine starts running (uprobe on `runtime.execute`): exact
    /// run slices per goroutine. It fires on every goroutine switch, so it costs more on
    /// busy programs.
    #[arg(long)]
    pub slices: bool,

    /// Also observe voluntary yields (`runtime.Gosched`): counted exactly in the kernel, and
    /// one event each on a ring of their own (a flood of them never costs a preemption
    /// event). One probe hit per yield: off by default, so a Gosched-heavy program pays
    /// nothing for them. Implied by --slices.
    #[arg(long)]
    pub yields: bool,

    /// Write a Perfetto trace (protobuf, open it at https://ui.perfetto.dev) to FILE: a
    /// track per thread, goroutine run slices, instants for every link of the chain and
    /// flows joining each preemption attempt. Implies --slices.
    #[arg(long, value_name = "FILE")]
    pub perfetto: Option<PathBuf>,

    /// Read Go struct offsets from goprobe's table for this release (e.g. `1.27`) instead
    /// of the binary's DWARF or its own release's entry. For a Go release newer than
    /// goprobe knows, when the nearest layout it assumes gives wrong goroutine ids.
    #[arg(long, value_name = "RELEASE", value_parser = parse_go_layout)]
    pub go_layout: Option<String>,

    /// Put every uprobe at its function's entry instead of the emulated `PUSHQ BP` after
    /// the stack check. Slower (a single-step trap per hit) and it counts a function twice
    /// when its stack check fails; for comparing placements (`cargo xtask bench`).
    #[arg(long, hide_short_help = true)]
    pub entry_probes: bool,

    /// Record the signal events at the classic tracepoints (fields from their tracefs
    /// formats), as on a kernel without BTF, even where the raw ones (BTF) are there:
    /// for comparing the two and testing the classic path on a kernel that has both.
    #[arg(long, hide_short_help = true)]
    pub classic_tracepoints: bool,

    /// How `tgkill` is hooked. `none` (default): no syscall hook; a call that succeeds is
    /// recorded where it generates the signal, one that fails is inferred (a signalM whose
    /// thread generates no signal), errno unknown. `exit`: its exit event too, for the
    /// errno of failed calls (`goprobe verify` uses it); every syscall on the host costs
    /// ~15 ns more while attached and detaching waits ~35 ms more. `classic`: its entry
    /// event too (~22 ns per syscall, detach ~135 ms; SIGURGs sent into a traced process
    /// from outside are seen). `raw`: raw `sys_enter`/`sys_exit` filtered in BPF (~140 ns
    /// per syscall, detach ~55 ms). Measured on 6.18, 2 CPUs (`cargo xtask bench`). `raw`
    /// needs kernel BTF; without it the syscall events are used.
    #[arg(long, value_enum, default_value = "none", value_name = "HOOKS")]
    pub syscall_hooks: SyscallHooks,

    /// Serve Prometheus metrics at http://ADDR/metrics while tracing (e.g.
    /// 127.0.0.1:9464): preemptions, attempts by requester and outcome, per-hop latency
    /// histograms, sysmon cadence, lost events. Refreshed every second.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Show which link of the preemption chain each probe observes and where it would be
    /// attached, then exit without attaching anything.
    #[arg(long)]
    pub list_probes: bool,

    /// Size of the preemption chain's kernel→user ring buffer in KiB (power of two, at least
    /// 4 KiB); with --yields or --slices the bulk ring gets four times as much. A ring is
    /// mapped twice, so it counts twice in goprobe's RSS. Raise it if the summary reports
    /// lost events.
    #[arg(long, value_name = "KIB", default_value_t = 1024, value_parser = parse_ringbuf_kib)]
    pub ringbuf_kib: u32,

    /// More diagnostics on stderr; with -v a failed BPF load prints the whole verifier log.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Program to start and trace from its first instruction, with its arguments (after
    /// `--`). goprobe exits with its exit status.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub use crate::probes::SyscallHooks;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One readable line per preemption attempt (per kernel event with --raw), then a
    /// text summary.
    Text,
    /// JSON lines.
    Json,
}

impl Cli {
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    /// Run slices: `execute` and yield records on the bulk ring.
    pub fn wants_slices(&self) -> bool {
        self.slices || self.perfetto.is_some()
    }

    /// Voluntary yields are observed (counted).
    pub fn wants_yields(&self) -> bool {
        self.yields || self.wants_slices()
    }
}

/// Longest `--duration`: ten years, far beyond any trace, well inside `Duration`.
const MAX_DURATION_SECS: f64 = 10.0 * 365.0 * 86_400.0;

fn parse_glob(text: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(text).map_err(|err| format!("not a shell pattern: {err}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "duration must be a positive number of seconds, not `{text}`"
        ));
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "duration `{text}` is longer than ten years; leave --duration out to trace until \
             Ctrl-C"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|err| format!("duration `{text}`: {err}"))
}

/// A Go release goprobe has a layout for (`1.27`, `go1.27`, `1.27.3`).
fn parse_go_layout(text: &str) -> Result<String, String> {
    let (major, minor) = crate::gobin::offsets::parse_go_version(text)
        .map_err(|_| format!("`{text}` is not a Go release (expected e.g. 1.27)"))?;
    match crate::gobin::offsets::from_table(major, minor) {
        Some((_, true)) => Ok(text.to_owned()),
        _ => {
            let (oldest, newest) = crate::gobin::offsets::table_range();
            Err(format!(
                "goprobe knows the struct layouts of Go {oldest} to {newest}, not {major}.{minor}"
            ))
        }
    }
}

fn parse_ringbuf_kib(text: &str) -> Result<u32, String> {
    let kib: u32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a size in KiB"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > (1 << 18) {
        return Err(format!(
            "ring buffer size must be a power of two between 4 and 262144 KiB, not {kib}"
        ));
    }
    Ok(kib)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_after_double_dash() {
        let cli = Cli::try_parse_from(["goprobe", "--json", "--", "./app", "-x", "1"]).unwrap();
        assert_eq!(cli.command, ["./app", "-x", "1"]);
        assert_eq!(cli.format(), Format::Json);
    }

    #[test]
    fn pid_and_command_conflict() {
        let err = Cli::try_parse_from(["goprobe", "-p", "1", "--", "./app"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["goprobe", "-p", "0"][..],
            &["goprobe", "-p", "x"],
            &["goprobe", "-p", "1", "-d", "-3"],
            &["goprobe", "-p", "1", "--ringbuf-kib", "1000"],
            &["goprobe", "-p", "1", "-d", "1e20"],
            &["goprobe", "-p", "1", "-d", "1e300"],
            &["goprobe", "-p", "1", "-d", "18446744073709551615"],
            &["goprobe", "-p", "1", "-d", "inf"],
            &["goprobe", "-p", "1", "--go-layout", "banana"],
            &["goprobe", "-p", "1", "--go-layout", "1.19"],
            &["goprobe"],
            &["goprobe", "--json"],
        ] {
            assert!(
                Cli::try_parse_from(args).is_err(),
                "{args:?} should be rejected"
            );
        }
    }

    #[test]
    fn go_layout_names_the_flag_and_the_known_releases() {
        let err = Cli::try_parse_from(["goprobe", "-p", "1", "--go-layout", "banana"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--go-layout"), "{err}");
        assert!(err.contains("not a Go release"), "{err}");
        let cli = Cli::try_parse_from(["goprobe", "-p", "1", "--go-layout", "1.27"]).unwrap();
        assert_eq!(cli.go_layout.as_deref(), Some("1.27"));
    }

    #[test]
    fn pids_repeat_or_come_as_a_list() {
        let cli = Cli::try_parse_from(["goprobe", "-p", "7,8", "--pid", "9"]).unwrap();
        let pids: Vec<u32> = cli.pid.iter().map(|pid| pid.get()).collect();
        assert_eq!(pids, [7, 8, 9]);
        assert!(Cli::try_parse_from(["goprobe", "-p", "7,0"]).is_err());
    }

    #[test]
    fn all_takes_filters_and_excludes_pids() {
        let cli =
            Cli::try_parse_from(["goprobe", "--all", "--exe", "/srv/*", "--comm", "api"]).unwrap();
        assert!(cli.all);
        assert!(cli.exe.unwrap().matches("/srv/bin/api"));
        for args in [
            &["goprobe", "--all", "-p", "1"][..],
            &["goprobe", "--exe", "x"],
            &["goprobe", "--all", "--exe", "[oops"],
            &["goprobe", "--all", "--", "./app"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn interval_is_a_duration() {
        let cli = Cli::try_parse_from(["goprobe", "--all", "--interval", "2.5"]).unwrap();
        assert_eq!(cli.interval, Some(Duration::from_millis(2500)));
        assert!(Cli::try_parse_from(["goprobe", "--all", "--interval", "-1"]).is_err());
    }

    #[test]
    fn fractional_duration() {
        let cli = Cli::try_parse_from(["goprobe", "-p", "7", "-d", "0.5"]).unwrap();
        assert_eq!(cli.duration, Some(Duration::from_millis(500)));
    }
}
