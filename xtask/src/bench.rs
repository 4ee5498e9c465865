//! `cargo xtask bench`: the numbers behind goprobe's speed and memory claims, each against
//! a baseline measured in the same run.
//!
//! - `attach`: analysing and attaching to a big (>50 MB) generated Go binary, against a
//!   small one: wall time of `--list-probes` (parse + plan) and to "attached" (load,
//!   verify, attach), and goprobe's peak RSS against the binary's pclntab size.
//! - `placement`: a workload that hits `runtime.goschedImpl` hundreds of thousands of
//!   times a second, untraced, traced with probes placed after the stack check, and traced
//!   with probes at the function entries: ops/s and the cost per probe hit.
//! - `throughput`: the same workload on two Ps: events/s goprobe receives and processes
//!   with zero loss, and goprobe's own CPU and RSS (goprobe attaches by --pid, so its
//!   rusage is its own).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::{
    demo,
    fixtures::{self, Variant},
    go, setup, util,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bench {
    Attach,
    Pipeline,
    Placement,
    Throughput,
}

#[derive(Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// Which benchmarks (comma separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Bench>,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Generated functions in the big binary (~700 bytes of binary each).
    #[arg(long, default_value_t = 140_000)]
    pub big_functions: usize,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let setup = setup::run(&setup::SetupArgs {
        go: vec![go::NEWEST.to_string()],
        all_go: false,
    })?;
    let toolchain = &setup.go[0];
    demo::build_goprobe()?;
    let fixtures = fixtures::build(toolchain, Variant::Default)?;
    let goprobe = util::workspace_root().join("target/release/goprobe");
    let all = args.only.is_empty();
    let mut report = String::new();
    if all || args.only.contains(&Bench::Attach) {
        report += &attach(args, toolchain, &goprobe, &fixtures)?;
    }
    if all || args.only.contains(&Bench::Placement) {
        report += &placement(args, &goprobe, &fixtures)?;
    }
    if all || args.only.contains(&Bench::Throughput) {
        report += &throughput(args, &goprobe, &fixtures)?;
    }
    if all || args.only.contains(&Bench::Pipeline) {
        report += &pipeline(&fixtures)?;
    }
    println!("\n{report}");
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Resource use of a reaped child.
struct Usage {
    cpu: Duration,
    max_rss_kib: u64,
}

fn wait_with_usage(child: &mut Child) -> anyhow::Result<(i32, Usage)> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok((
        libc::WEXITSTATUS(status),
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
        },
    ))
}

fn as_root(program: &Path) -> Command {
    demo::privileged(program)
}

// ---------------------------------------------------------------------------------------
// attach

fn attach(
    args: &BenchArgs,
    toolchain: &go::Toolchain,
    goprobe: &Path,
    fixtures: &Path,
) -> anyhow::Result<String> {
    let big = big_binary(toolchain, args.big_functions)?;
    let small = fixtures.join("spinner");
    let mut out = String::from("== attach: analysis and attach time, small vs big binary\n");
    writeln!(
        out,
        "{:<10} {:>9} {:>10} {:>13} {:>12} {:>16} {:>12}",
        "binary",
        "size MB",
        "pclntab MB",
        "list-probes",
        "list RSS MB",
        "to \"attached\"",
        "attach RSS MB"
    )?;
    for (name, path) in [("small", &small), ("big", &big)] {
        let size = std::fs::metadata(path)?.len() as f64 / 1e6;
        let pclntab = pclntab_size(path).unwrap_or(0) as f64 / 1e6;
        let mut list = Vec::new();
        let mut list_rss = 0;
        for _ in 0..args.reps {
            let start = Instant::now();
            let mut child = Command::new(goprobe)
                .args(["--list-probes", "--"])
                .arg(path)
                .stdout(Stdio::null())
                .spawn()?;
            let (code, usage) = wait_with_usage(&mut child)?;
            if code != 0 {
                bail!("goprobe --list-probes {} failed", path.display());
            }
            list.push(start.elapsed().as_secs_f64() * 1e3);
            list_rss = list_rss.max(usage.max_rss_kib);
        }
        let mut attached = Vec::new();
        let mut attach_rss = 0;
        for _ in 0..args.reps {
            let start = Instant::now();
            let mut child = as_root(goprobe)
                .args(["--quiet", "--duration", "0.2", "-o", "/dev/null", "--"])
                .arg(path)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let stderr = child.stderr.take().context("stderr")?;
            let mut line = String::new();
            for next in BufReader::new(stderr).lines() {
                line = next?;
                if line.contains("attached") {
                    break;
                }
            }
            attached.push(start.elapsed().as_secs_f64() * 1e3);
            let (_, usage) = wait_with_usage(&mut child)?;
            attach_rss = attach_rss.max(usage.max_rss_kib);
            if !line.contains("attached") {
                bail!("goprobe never attached to {}", path.display());
            }
        }
        writeln!(
            out,
            "{name:<10} {size:>9.1} {pclntab:>10.1} {:>10.1} ms {:>12.1} {:>13.1} ms {:>12.1}",
            median(list),
            list_rss as f64 / 1024.0,
            median(attached),
            attach_rss as f64 / 1024.0
        )?;
    }
    writeln!(
        out,
        "(medians of {}; \"to attached\" includes loading and verifying the BPF programs, \
         the same for both binaries)\n",
        args.reps
    )?;
    Ok(out)
}

/// Size of `.gopclntab` (or the PIE/cgo name of it) from the section headers.
fn pclntab_size(path: &Path) -> Option<u64> {
    let out = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("gopclntab"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // [Nr] Name Type Address Off Size ...: the size follows the offset.
    let at = fields.iter().position(|f| f.contains("gopclntab"))?;
    u64::from_str_radix(fields.get(at + 4)?, 16).ok()
}

/// A generated Go program of `functions` distinct, non-inlinable functions plus a large
/// slice of the standard library: over 50 MB with the default count. Cached.
fn big_binary(toolchain: &go::Toolchain, functions: usize) -> anyhow::Result<PathBuf> {
    let dir = util::workspace_root()
        .join("target/bench/bigprog")
        .join(format!("{}-{functions}", toolchain.version));
    let binary = dir.join("bigprog");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("go.mod"), "module bigprog\n\ngo 1.21\n")?;
    const PER_FILE: usize = 1000;
    let files = functions.div_ceil(PER_FILE);
    for file in 0..files {
        let mut src = String::from("package main\n\n");
        let first = file * PER_FILE;
        let last = (first + PER_FILE).min(functions);
        for i in first..last {
            let _ = write!(
                src,
                "//go:noinline\nfunc f{i}(x uint64) uint64 {{\n\
                 \ts := x ^ {i}\n\
                 \tfor k := uint64(0); k < x&7; k++ {{\n\
                 \t\ts = s*{m} + k\n\
                 \t\tswitch (s >> 3) & 7 {{\n\
                 \t\tcase 0:\n\t\t\ts ^= {a}\n\
                 \t\tcase 1:\n\t\t\ts += {b}\n\
                 \t\tcase 2:\n\t\t\ts -= {c}\n\
                 \t\tcase 3:\n\t\t\ts = s<<7 | s>>57\n\
                 \t\tcase 4:\n\t\t\ts *= {d}\n\
                 \t\tdefault:\n\t\t\ts = s<<1 | s>>63\n\
                 \t\t}}\n\t}}\n\treturn s\n}}\n\n",
                m = 2 * i + 3,
                a = i * 7 + 1,
                b = i * 13 + 5,
                c = i * 17 + 11,
                d = i * 31 + 7,
            );
        }
        let _ = writeln!(src, "var table{file} = []func(uint64) uint64{{");
        for i in first..last {
            let _ = writeln!(src, "\tf{i},");
        }
        src.push_str("}\n");
        std::fs::write(dir.join(format!("gen{file:03}.go")), src)?;
    }
    let mut main = String::from(
        "package main\n\nimport (\n\t_ \"crypto/tls\"\n\t_ \"database/sql\"\n\t\
         _ \"encoding/json\"\n\t_ \"go/types\"\n\t_ \"html/template\"\n\t_ \"image/png\"\n\t\
         _ \"net/http\"\n\t\"os\"\n\t\"time\"\n)\n\nvar tables = [][]func(uint64) uint64{\n",
    );
    for file in 0..files {
        let _ = writeln!(main, "\ttable{file},");
    }
    main.push_str(
        "}\n\n// Calls every function, then keeps busy for a second so a tracer can attach.\n\
         func main() {\n\tvar s uint64\n\tfor _, t := range tables {\n\t\tfor i, f := range t \
         {\n\t\t\ts += f(uint64(i))\n\t\t}\n\t}\n\tdeadline := time.Now().Add(time.Second)\n\t\
         for time.Now().Before(deadline) {\n\t\ts = tables[0][s%7](s)\n\t}\n\t\
         if s == 42 {\n\t\tos.Exit(3)\n\t}\n}\n",
    );
    std::fs::write(dir.join("main.go"), main)?;
    eprintln!("xtask: building the {functions}-function benchmark binary (a few minutes, once)");
    util::run(
        toolchain
            .command()
            .current_dir(&dir)
            .env("CGO_ENABLED", "0")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("."),
    )?;
    Ok(binary)
}

// ---------------------------------------------------------------------------------------
// placement and throughput

/// One run of the yield workload, optionally traced by goprobe attached by pid.
struct YieldRun {
    ops_per_sec: f64,
    /// The workload window (the fixture's end_ns - start_ns).
    window: Duration,
    goprobe: Option<GoprobeRun>,
}

struct GoprobeRun {
    summary: Value,
    usage: Usage,
    wall: Duration,
}

impl YieldRun {
    /// Events goprobe received per second of workload (nearly all come in the window).
    fn events_per_sec(&self) -> f64 {
        let total = self
            .goprobe
            .as_ref()
            .and_then(|g| g.summary["events_total"].as_f64())
            .unwrap_or(0.0);
        total / self.window.as_secs_f64()
    }
}

/// Runs the yield workload on `procs` Ps at `rate` Gosched calls/s ("0": flat out).
fn yield_run(
    goprobe: &Path,
    fixture: &Path,
    procs: &str,
    rate: &str,
    goprobe_args: Option<&[&str]>,
) -> anyhow::Result<YieldRun> {
    let mut workload = Command::new(fixture)
        .args([
            "-goroutines",
            "4",
            "-procs",
            procs,
            "-duration",
            "2s",
            "-rate",
            rate,
        ])
        .env("GOPROBE_FIXTURE_TRIGGER", "signal")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the yield fixture")?;
    let mut lines = BufReader::new(workload.stdout.take().context("stdout")?).lines();
    let ready = lines.next().context("fixture said nothing")??;
    if !ready.contains("ready") {
        bail!("unexpected fixture output: {ready}");
    }
    let pid = workload.id();
    let summary_path = std::env::temp_dir().join(format!("goprobe-bench-{pid}.jsonl"));
    let mut tracer = match goprobe_args {
        Some(extra) => {
            // `--events` in `extra` means: every event as JSON (the heaviest output).
            let events = extra.contains(&"--events");
            let extra: Vec<&str> = extra.iter().copied().filter(|a| *a != "--events").collect();
            let mut child = as_root(goprobe)
                .args(if events {
                    &["--json"][..]
                } else {
                    &["--quiet", "--json"][..]
                })
                .arg("-o")
                .arg(&summary_path)
                .args(extra)
                .args(["--pid", &pid.to_string()])
                .stderr(Stdio::piped())
                .spawn()
                .context("starting goprobe")?;
            let stderr = child.stderr.take().context("stderr")?;
            let mut attached = false;
            for line in BufReader::new(stderr).lines() {
                if line?.contains("attached") {
                    attached = true;
                    break;
                }
            }
            if !attached {
                bail!("goprobe did not attach");
            }
            Some((child, Instant::now()))
        }
        None => None,
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let result: Value = lines
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|v| v["event"] == "result")
        .context("fixture printed no result")?;
    workload.wait()?;
    let goprobe = match tracer.as_mut() {
        Some((child, started)) => {
            let (code, usage) = wait_with_usage(child)?;
            let wall = started.elapsed();
            if code != 0 {
                bail!("goprobe exited with {code}");
            }
            let summary: Value = serde_json::from_str(&last_line(&summary_path)?)?;
            let _ = std::fs::remove_file(&summary_path);
            Some(GoprobeRun {
                summary,
                usage,
                wall,
            })
        }
        None => None,
    };
    let window_ns =
        result["end_ns"].as_u64().unwrap_or(0) - result["start_ns"].as_u64().unwrap_or(0);
    Ok(YieldRun {
        ops_per_sec: result["ops_per_sec"].as_f64().context("ops_per_sec")?,
        window: Duration::from_nanos(window_ns.max(1)),
        goprobe,
    })
}

/// The last line of a file, read from its end. Reading a whole multi-hundred-MB JSON
/// output into this process would skew the next goprobe's `maxrss`: Linux carries the
/// RSS high-water mark of the forked copy of this process across `exec`.
fn last_line(path: &Path) -> anyhow::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let tail = len.min(1 << 20);
    file.seek(SeekFrom::Start(len - tail))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    text.lines()
        .last()
        .map(str::to_string)
        .with_context(|| format!("{} is empty", path.display()))
}

fn placement(args: &BenchArgs, goprobe: &Path, fixtures: &Path) -> anyhow::Result<String> {
    let fixture = fixtures.join("yield");
    let mut out = String::from(
        "== placement: runtime.goschedImpl hit per op (4 goroutines yielding, GOMAXPROCS 1)\n",
    );
    writeln!(
        out,
        "{:<28} {:>12} {:>10} {:>14} {:>8}",
        "probes", "ops/s", "hits/op", "cost/hit µs", "lost"
    )?;
    let mut base = Vec::new();
    // Per mode: (ops/s, hits per op, lost events) of each repetition.
    type Samples = Vec<(f64, f64, u64)>;
    let mut runs: Vec<(&str, Samples)> = vec![
        ("placed (PUSHQ BP, default)", Vec::new()),
        ("entry (--entry-probes)", Vec::new()),
    ];
    for _ in 0..args.reps {
        base.push(yield_run(goprobe, &fixture, "1", "0", None)?.ops_per_sec);
        // --yields: every Gosched is a probe hit and a record, the full cost of a hit.
        for (i, extra) in [&["--yields"][..], &["--yields", "--entry-probes"][..]]
            .into_iter()
            .enumerate()
        {
            let run = yield_run(goprobe, &fixture, "1", "0", Some(extra))?;
            let traced = run.goprobe.context("traced run")?;
            let hits = traced.summary["events"]["yield"].as_f64().unwrap_or(0.0);
            let ops = run.ops_per_sec * 2.0; // 2 s window
            let lost = traced.summary["lost_total"].as_u64().unwrap_or(0);
            runs[i].1.push((run.ops_per_sec, hits / ops, lost));
        }
    }
    let base_ops = median(base);
    writeln!(
        out,
        "{:<28} {base_ops:>12.0} {:>10} {:>14} {:>8}",
        "none", "-", "-", "-"
    )?;
    for (name, samples) in runs {
        let ops = median(samples.iter().map(|s| s.0).collect());
        let hits = median(samples.iter().map(|s| s.1).collect());
        let lost: u64 = samples.iter().map(|s| s.2).sum();
        let cost_us = (1.0 / ops - 1.0 / base_ops) / hits * 1e6;
        writeln!(
            out,
            "{name:<28} {ops:>12.0} {hits:>10.2} {cost_us:>14.2} {lost:>8}"
        )?;
    }
    writeln!(
        out,
        "(cost/hit = (1/ops traced - 1/ops untraced) / hits per op; medians of {})\n",
        args.reps
    )?;
    Ok(out)
}

fn throughput(args: &BenchArgs, goprobe: &Path, fixtures: &Path) -> anyhow::Result<String> {
    let fixture = fixtures.join("yield");
    let mut out = String::from(
        "== throughput: goprobe's userspace at the workload's full event rate (GOMAXPROCS 2)\n",
    );
    writeln!(
        out,
        "{:<30} {:>12} {:>8} {:>10} {:>10} {:>9}",
        "goprobe output", "events/s", "lost", "CPU %", "RSS MB", "ops/s"
    )?;
    // Flat out first (what the machine allows), then paced at 250 000 events/s: the
    // rate goprobe must sustain with zero loss, whatever the output.
    // Every row records each yield (--yields): the flood is the event stream.
    for (name, rate, extra) in [
        ("summary only (--quiet)", "0", &["--yields"][..]),
        (
            "+ run slices (--slices)",
            "0",
            &["--yields", "--slices"][..],
        ),
        (
            "every event as JSON (--json)",
            "0",
            &["--yields", "--events"][..],
        ),
        (
            "JSON, paced at 250k/s",
            "250000",
            &["--yields", "--events"][..],
        ),
        (
            "slices + JSON, 125k ops/s",
            "125000",
            &["--yields", "--events", "--slices"][..],
        ),
    ] {
        let mut rows = Vec::new();
        for _ in 0..args.reps {
            let run = yield_run(goprobe, &fixture, "2", rate, Some(extra))?;
            let events_per_sec = run.events_per_sec();
            let g = run.goprobe.context("traced run")?;
            rows.push((
                events_per_sec,
                g.summary["lost_total"].as_u64().unwrap_or(0),
                g.usage.cpu.as_secs_f64() / g.wall.as_secs_f64() * 100.0,
                g.usage.max_rss_kib as f64 / 1024.0,
                run.ops_per_sec,
            ));
        }
        let lost: u64 = rows.iter().map(|r| r.1).sum();
        writeln!(
            out,
            "{name:<30} {:>12.0} {lost:>8} {:>10.1} {:>10.1} {:>9.0}",
            median(rows.iter().map(|r| r.0).collect()),
            median(rows.iter().map(|r| r.2).collect()),
            median(rows.iter().map(|r| r.3).collect()),
            median(rows.iter().map(|r| r.4).collect()),
        )?;
    }
    writeln!(
        out,
        "(CPU % and RSS of the goprobe process alone, attached by --pid; medians of {})\n",
        args.reps
    )?;
    Ok(out)
}

/// goprobe's userspace alone (`tracer/benches/pipeline.rs`): events/s through the whole
/// pipeline to each output, with no workload competing for this host's two CPUs.
fn pipeline(fixtures: &Path) -> anyhow::Result<String> {
    let output = Command::new("cargo")
        .current_dir(util::workspace_root())
        .args([
            "bench",
            "--quiet",
            "--package",
            "goprobe",
            "--bench",
            "pipeline",
        ])
        .env("GOPROBE_BENCH_BINARY", fixtures.join("yield"))
        .stderr(Stdio::inherit())
        .output()
        .context("cargo bench --bench pipeline")?;
    if !output.status.success() {
        bail!("the pipeline benchmark failed: {}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned() + "\n")
}
