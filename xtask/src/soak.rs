//! `cargo xtask soak`: goprobe as a node daemon (`--all --metrics`, release build) for N
//! minutes while Go processes come and go, its memory sampled every second. The question
//! it answers: does RSS stay flat while processes and goroutines churn?
//!
//! Churn: `--alive` spinners run at any time, each for a random 0.2–2 s with 1–8
//! goroutines, replaced as soon as one exits; so hundreds of processes (and thousands of
//! goroutines) pass through goprobe a minute, each adopted at its exec, summarised and
//! forgotten at its exit.

use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{
    demo,
    fixtures::{self, Variant},
    go, setup, util,
};

#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// How long to run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Spinner processes alive at any time.
    #[arg(long, default_value_t = 4)]
    pub alive: usize,
}

/// Memory of a process, in KiB, from `/proc/PID/status`.
struct Memory {
    rss: u64,
    /// Peak RSS (`VmHWM`).
    peak: u64,
    /// The part of RSS that is goprobe's own allocations (heap, stacks), not file pages
    /// (its binary, the Go binaries it maps) or shared memory (the ring buffers).
    anon: u64,
}

fn memory_kib(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
        anon: field("RssAnon:")?,
    })
}

/// A small deterministic generator (xorshift): the churn differs per process, the same
/// every run.
struct Churn(u64);

impl Churn {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }

    fn spinner(&mut self, exe: &Path) -> anyhow::Result<Child> {
        let workers = 1 + self.next(8);
        let millis = 200 + self.next(1800);
        Command::new(exe)
            .args(["-workers", &workers.to_string(), "-procs", "1"])
            .args(["-duration", &format!("{millis}ms")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a spinner")
    }
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("cargo xtask soak traces with BPF: run it as root");
    }
    let setup = setup::run(&setup::SetupArgs {
        go: vec![go::NEWEST.to_string()],
        all_go: false,
    })?;
    demo::build_goprobe()?;
    let fixtures = fixtures::build(&setup.go[0], Variant::Default)?;
    let root = util::workspace_root();
    let dir = root.join("target/soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let exe = dir.join("spinner");
    std::fs::copy(fixtures.join("spinner"), &exe)?;

    let mut goprobe = Command::new(root.join("target/release/goprobe"))
        .args(["--all", "--exe", &format!("{}/*", dir.display())])
        .args(["-q", "-o", "/dev/null", "--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting goprobe")?;
    let stderr = BufReader::new(goprobe.stderr.take().expect("piped"));
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Started once it says it traces.
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .context("goprobe did not start")?;
        if line.contains("Go processes, and those that start") {
            break;
        }
    }

    let mut churn = Churn(0x9e37_79b9_7f4a_7c15);
    let mut alive: Vec<Child> = Vec::new();
    let mut started = 0u64;
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut anon_max = 0;
    let begin = Instant::now();
    let end = begin + Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_sample = begin;
    let mut peak = 0;
    while Instant::now() < end {
        alive.retain_mut(|child| !matches!(child.try_wait(), Ok(Some(_))));
        while alive.len() < args.alive {
            alive.push(churn.spinner(&exe)?);
            started += 1;
        }
        if Instant::now() >= next_sample {
            let Some(memory) = memory_kib(goprobe.id()) else {
                bail!("goprobe exited during the soak");
            };
            peak = peak.max(memory.peak);
            anon_max = anon_max.max(memory.anon);
            samples.push((begin.elapsed().as_secs_f64(), memory.rss));
            next_sample += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut child in alive {
        let _ = child.wait();
    }
    // The last ones must be summarised and forgotten too.
    std::thread::sleep(Duration::from_millis(500));
    let after = memory_kib(goprobe.id()).map_or(0, |memory| memory.rss);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(goprobe.id() as i32, libc::SIGINT) };
    let status = goprobe.wait()?;
    let adopted = lines
        .try_iter()
        .filter(|line| line.contains("traced") && line.contains("after its exec"))
        .count();
    if !status.success() {
        bail!("goprobe ended with {status}");
    }
    report(
        &samples,
        (started, adopted),
        (after, peak, anon_max),
        args.minutes,
    );
    Ok(())
}

fn report(
    samples: &[(f64, u64)],
    (started, adopted): (u64, usize),
    (after, peak, anon_max): (u64, u64, u64),
    minutes: f64,
) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("\n== soak: goprobe --all --metrics, {minutes} min, processes churning");
    println!("processes started {started}, adopted by goprobe {adopted}");
    println!("{:>8} {:>10}", "minute", "RSS MiB");
    let per_minute = samples.len().div_ceil(60).max(1);
    for minute in 0..per_minute {
        let slice: Vec<u64> = samples
            .iter()
            .filter(|(t, _)| (*t / 60.0) as usize == minute)
            .map(|(_, rss)| *rss)
            .collect();
        if let (Some(min), Some(max)) = (slice.iter().min(), slice.iter().max()) {
            println!("{minute:>8} {:>5.1}–{:<5.1}", mib(*min), mib(*max));
        }
    }
    // Flat or growing: least-squares slope over the run, after its first minute (warm-up).
    let warm: Vec<&(f64, u64)> = samples.iter().filter(|(t, _)| *t >= 60.0).collect();
    let points: Vec<&(f64, u64)> = if warm.len() >= 10 {
        warm
    } else {
        samples.iter().collect()
    };
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (t, rss)| (sx + t, sy + mib(*rss)));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), (t, rss)| {
        (sxy + (t - mx) * (mib(*rss) - my), sxx + (t - mx) * (t - mx))
    });
    let slope = if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 };
    println!(
        "RSS: max {:.1} MiB (peak VmHWM {:.1} MiB), {:.1} MiB after the last exit; slope \
         after the first minute {slope:+.3} MiB/min",
        mib(samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0)),
        mib(peak),
        mib(after)
    );
    println!(
        "of which goprobe's own allocations (RssAnon): at most {:.1} MiB; the rest is file \
         pages (its binary, the Go binaries it maps) and the ring buffers",
        mib(anon_max)
    );
}
