//! Running a fixture workload untraced, under goprobe or under bpftrace, and what each
//! run cost the tracer (CPU, memory) next to what the fixture reported.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::demo;

/// How a run is traced.
#[derive(Clone, Debug)]
pub enum Tracer {
    None,
    /// goprobe attached by `--pid`: with `events`, every record as JSON to a file;
    /// without, `-q` (the summary only, as JSON to a file).
    Goprobe {
        args: Vec<String>,
        events: bool,
    },
    /// A bpftrace script (`$PID` and `$BIN` substituted), its output to a file.
    Bpftrace {
        bpftrace: PathBuf,
        script: String,
    },
}

impl Tracer {
    pub fn goprobe(args: &[&str], events: bool) -> Tracer {
        Tracer::Goprobe {
            args: args.iter().map(ToString::to_string).collect(),
            events,
        }
    }
}

/// Resource use of a reaped child.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// What the tracer of a run cost, and goprobe's JSON summary.
#[derive(Debug)]
pub struct TracerRun {
    pub usage: Usage,
    pub wall: Duration,
    /// `VmRSS` and `RssAnon` (KiB) in the middle of the workload window: steady state.
    pub rss_mid_kib: Option<(u64, u64)>,
    /// CPU time over wall time from attached to the workload's end (start-up and the
    /// final report left out), in % of one CPU.
    pub steady_cpu_percent: Option<f64>,
    pub summary: Option<Value>,
    /// Bytes the tracer wrote to its output file.
    pub output_bytes: u64,
}

impl TracerRun {
    /// Steady-state CPU when it was sampled, else over the whole run.
    pub fn cpu_percent(&self) -> f64 {
        self.steady_cpu_percent
            .unwrap_or_else(|| self.usage.cpu.as_secs_f64() / self.wall.as_secs_f64() * 100.0)
    }

    pub fn lost(&self) -> u64 {
        self.summary
            .as_ref()
            .and_then(|s| s["lost_total"].as_u64())
            .unwrap_or(0)
    }

    pub fn events_total(&self) -> u64 {
        self.summary
            .as_ref()
            .and_then(|s| s["events_total"].as_u64())
            .unwrap_or(0)
    }
}

pub struct Run {
    /// The fixture's result line.
    pub result: Value,
    pub tracer: Option<TracerRun>,
}

impl Run {
    pub fn field(&self, name: &str) -> anyhow::Result<f64> {
        self.result[name]
            .as_f64()
            .with_context(|| format!("fixture result has no {name}: {}", self.result))
    }

    /// The workload window, from the fixture's own clock.
    pub fn window(&self) -> Duration {
        let ns = self.result["end_ns"].as_u64().unwrap_or(0)
            - self.result["start_ns"].as_u64().unwrap_or(0);
        Duration::from_nanos(ns.max(1))
    }
}

/// CPUs to pin the workload and the tracer to (`taskset`), or neither.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pinning {
    pub workload: Option<usize>,
    pub tracer: Option<usize>,
}

impl Pinning {
    /// The workload on the last CPU, the tracer on the first: what the program pays for
    /// tracing is then only what runs on its own threads.
    pub fn apart() -> Pinning {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Pinning {
            workload: Some(cpus - 1),
            tracer: Some(0),
        }
    }
}

/// `program` under `taskset -c cpu`, or as it is.
fn pinned(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpu.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Runs `fixture args` (which waits for SIGUSR1 once set up), traced by `tracer` from
/// before the workload starts, and returns once fixture and tracer have ended.
pub fn run(goprobe: &Path, fixture: &Path, args: &[&str], tracer: &Tracer) -> anyhow::Result<Run> {
    run_pinned(goprobe, fixture, args, tracer, Pinning::default())
}

pub fn run_pinned(
    goprobe: &Path,
    fixture: &Path,
    args: &[&str],
    tracer: &Tracer,
    pinning: Pinning,
) -> anyhow::Result<Run> {
    let mut workload = pinned(fixture, pinning.workload)
        .args(args)
        .env("GOPROBE_FIXTURE_TRIGGER", "signal")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", fixture.display()))?;
    let mut lines = BufReader::new(workload.stdout.take().context("stdout")?).lines();
    let ready = lines.next().context("fixture said nothing")??;
    if !ready.contains("ready") {
        bail!("unexpected fixture output: {ready}");
    }
    let pid = workload.id();
    let output = std::env::temp_dir().join(format!("goprobe-bench-{pid}.out"));
    let mut traced = match tracer {
        Tracer::None => None,
        Tracer::Goprobe { args, events } => {
            let mut cmd = match pinning.tracer {
                Some(_) if !crate::util::is_root() => bail!("pinning a tracer needs root"),
                Some(cpu) => pinned(goprobe, Some(cpu)),
                None => demo::privileged(goprobe),
            };
            cmd.arg("--json");
            if !events {
                cmd.arg("--quiet");
            }
            cmd.arg("-o")
                .arg(&output)
                .args(args)
                .args(["--pid", &pid.to_string()]);
            Some(start_tracer(cmd, "attached")?)
        }
        Tracer::Bpftrace { bpftrace, script } => {
            // BEGIN runs once every probe is attached; it says so through a file of its
            // own, so the output keeps bpftrace's default (full) buffering.
            let ready = output.with_extension("ready");
            let _ = std::fs::remove_file(&ready);
            let child = pinned(bpftrace, pinning.tracer)
                .args(["--unsafe", "-o"])
                .arg(&output)
                .arg("-e")
                .arg(
                    script
                        .replace("$PID", &pid.to_string())
                        .replace("$BIN", &fixture.to_string_lossy())
                        .replace("$READY", &ready.to_string_lossy()),
                )
                .stderr(Stdio::piped())
                .spawn()
                .context("starting bpftrace")?;
            let mut child = child;
            if let Err(err) = wait_for_file(&ready, Duration::from_secs(60), &mut child) {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                bail!("{err}: {}", String::from_utf8_lossy(&out.stderr));
            }
            let _ = std::fs::remove_file(&ready);
            Some((child, Instant::now()))
        }
    };
    let cpu_at_attach = traced
        .as_ref()
        .and_then(|(child, _)| Some((cpu_ns(child.id())?, Instant::now())));
    let sampler = traced.as_ref().map(|(child, _)| {
        let tracer_pid = child.id();
        // The middle of the window (fixtures take -duration; all here run 2-3 s).
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            rss_kib(tracer_pid)
        })
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    let result: Value = lines
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .find(|v| v["event"] == "result")
        .context("fixture printed no result")?;
    let steady_cpu_percent = match (&traced, cpu_at_attach) {
        (Some((child, _)), Some((before, at))) => cpu_ns(child.id()).map(|now| {
            (now.saturating_sub(before)) as f64 / at.elapsed().as_nanos() as f64 * 100.0
        }),
        _ => None,
    };
    workload.wait()?;
    let tracer = match traced.as_mut() {
        Some((child, started)) => {
            if matches!(tracer, Tracer::Bpftrace { .. }) {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            }
            let (code, usage) = wait_with_usage(child)?;
            let wall = started.elapsed();
            if code != 0 {
                bail!("the tracer exited with {code}");
            }
            let summary = match tracer {
                Tracer::Goprobe { .. } => Some(serde_json::from_str(&last_line(&output)?)?),
                _ => None,
            };
            let output_bytes = std::fs::metadata(&output).map_or(0, |m| m.len());
            let _ = std::fs::remove_file(&output);
            Some(TracerRun {
                usage,
                wall,
                rss_mid_kib: sampler.and_then(|s| s.join().ok()).flatten(),
                steady_cpu_percent,
                summary,
                output_bytes,
            })
        }
        None => None,
    };
    Ok(Run { result, tracer })
}

/// Starts a tracer and waits for the stderr line containing `attached` (`count` of them:
/// goprobe says it once per process); the rest of its stderr is drained meanwhile.
pub fn start_tracer(cmd: Command, attached: &str) -> anyhow::Result<(Child, Instant)> {
    start_tracer_n(cmd, attached, 1)
}

pub fn start_tracer_n(
    mut cmd: Command,
    attached: &str,
    count: usize,
) -> anyhow::Result<(Child, Instant)> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting goprobe")?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let mut seen = 0;
    while seen < count {
        let Some(line) = lines.next() else {
            bail!("goprobe did not attach: {}", said.join("\n"));
        };
        let line = line?;
        if line.contains(attached) {
            seen += 1;
        }
        said.push(line);
    }
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, Instant::now()))
}

/// Waits for bpftrace's BEGIN to create `path`, while `child` lives.
pub fn wait_for_file(path: &Path, limit: Duration, child: &mut Child) -> anyhow::Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > limit {
            bail!("bpftrace did not start within {limit:?}");
        }
        if let Some(status) = child.try_wait()? {
            bail!("bpftrace exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub fn wait_with_usage(child: &mut Child) -> anyhow::Result<(i32, Usage)> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaping our own child.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((
        code,
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
        },
    ))
}

/// CPU time of all of a process's threads so far, in ns (`schedstat`).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// `VmRSS` and `RssAnon` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

/// The last line of a file, read from its end. Reading a whole multi-hundred-MB JSON
/// output into this process would skew the next goprobe's `maxrss`: Linux carries the
/// RSS high-water mark of the forked copy of this process across `exec`.
pub fn last_line(path: &Path) -> anyhow::Result<String> {
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

/// Runs `variants` (index 0 the baseline) `reps` times each, interleaved, the order
/// rotating every repetition so that neither side always runs first.
pub fn interleaved<T>(
    reps: usize,
    variants: usize,
    mut run: impl FnMut(usize) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Vec<T>>> {
    let mut results: Vec<Vec<T>> = (0..variants).map(|_| Vec::new()).collect();
    for rep in 0..reps {
        for k in 0..variants {
            let variant = (rep + k) % variants;
            results[variant].push(run(variant)?);
        }
    }
    Ok(results)
}
