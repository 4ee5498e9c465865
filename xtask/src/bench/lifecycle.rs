//! Time to attach and SIGINT→exit (detach): one process, and 20 processes of 3 binaries.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Context, Row,
    runner::{start_tracer_n, wait_for_file, wait_with_usage},
    table::{Goal, Unit},
    throughput::bpftrace_script,
};
use crate::{demo, util};

/// Spinners that run at once (no trigger) until killed.
const SPINNER: [&str; 6] = ["-workers", "1", "-procs", "1", "-duration", "600s"];

struct Spinners(Vec<Child>);

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Spinners {
    fn start(binaries: &[PathBuf], count: usize) -> anyhow::Result<Spinners> {
        let mut children = Spinners(Vec::new());
        for i in 0..count {
            let binary = &binaries[i % binaries.len()];
            children.0.push(
                Command::new(binary)
                    .args(SPINNER)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {}", binary.display()))?,
            );
        }
        // Past the runtime's start-up.
        std::thread::sleep(Duration::from_millis(300));
        Ok(children)
    }

    fn pids(&self) -> String {
        self.0
            .iter()
            .map(|c| c.id().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Three copies of the spinner: three inodes, so three binaries to the kernel.
fn three_binaries(spinner: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = util::workspace_root().join("target/bench/lifecycle");
    let mut out = Vec::new();
    for name in ["a", "b", "c"] {
        let path = dir.join(name).join("spinner");
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::copy(spinner, &path)?;
        out.push(path);
    }
    Ok(out)
}

/// One goprobe run: ms from start to the last "attached" line, ms from SIGINT to exit.
fn goprobe_once(goprobe: &Path, spinners: &Spinners) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let mut cmd = demo::privileged(goprobe);
    cmd.args(["-q", "-o", "/dev/null", "--pid", &spinners.pids()]);
    let (mut child, attached) = start_tracer_n(cmd, "attached", spinners.0.len())?;
    let to_attached = attached - start;
    std::thread::sleep(Duration::from_millis(1000));
    let stop = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (code, _) = wait_with_usage(&mut child)?;
    let to_exit = stop.elapsed();
    if code != 0 {
        bail!("goprobe exited with {code}");
    }
    Ok((ms(to_attached), ms(to_exit)))
}

/// The bpftrace peer on one process: start to its BEGIN, SIGINT to exit.
fn bpftrace_once(bpftrace: &Path, binary: &Path, pid: u32) -> anyhow::Result<(f64, f64)> {
    let output = std::env::temp_dir().join(format!("goprobe-bench-bt-{pid}.out"));
    let ready = output.with_extension("ready");
    let _ = std::fs::remove_file(&ready);
    let script = bpftrace_script(false)
        .replace("$PID", &pid.to_string())
        .replace("$BIN", &binary.to_string_lossy())
        .replace("$READY", &ready.to_string_lossy());
    let start = Instant::now();
    let mut child = Command::new(bpftrace)
        .args(["--unsafe", "-o"])
        .arg(&output)
        .arg("-e")
        .arg(script)
        .stderr(Stdio::null())
        .spawn()?;
    wait_for_file(&ready, Duration::from_secs(60), &mut child)?;
    let _ = std::fs::remove_file(&ready);
    let to_attached = start.elapsed();
    std::thread::sleep(Duration::from_millis(1000));
    let stop = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    wait_with_usage(&mut child)?;
    let to_exit = stop.elapsed();
    let _ = std::fs::remove_file(&output);
    Ok((ms(to_attached), ms(to_exit)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    let spinner = cx.fixture("spinner");
    let binaries = three_binaries(&spinner)?;
    let mut rows = Vec::new();
    for (name, count, binaries, goal) in [
        ("1 process", 1, &binaries[..1], 100.0),
        ("20 processes of 3 binaries", 20, &binaries[..], 200.0),
    ] {
        eprintln!("xtask: bench lifecycle: {name}");
        let spinners = Spinners::start(binaries, count)?;
        let mut attach = Vec::new();
        let mut detach = Vec::new();
        for _ in 0..cx.args.reps {
            let (a, d) = goprobe_once(&cx.goprobe, &spinners)?;
            attach.push(a);
            detach.push(d);
        }
        rows.push(
            Row::new(format!("attach, {name}"), Unit::Millis, &attach)
                .baseline("start → attached")
                .measured("goprobe -q --pid"),
        );
        rows.push(
            Row::new(format!("detach, {name}"), Unit::Millis, &detach)
                .baseline("SIGINT → exit")
                .measured("goprobe -q --pid")
                .goal(Goal::AtMost(goal)),
        );
        if count == 1
            && let Some(bpftrace) = &cx.bpftrace
        {
            let pid = spinners.0[0].id();
            let mut attach = Vec::new();
            let mut detach = Vec::new();
            for _ in 0..cx.args.reps {
                let (a, d) = bpftrace_once(bpftrace, &binaries[0], pid)?;
                attach.push(a);
                detach.push(d);
            }
            rows.push(
                Row::new("peer: bpftrace attach, 1 process", Unit::Millis, &attach)
                    .baseline("start → BEGIN")
                    .measured("same hooks, counting"),
            );
            rows.push(
                Row::new("peer: bpftrace detach, 1 process", Unit::Millis, &detach)
                    .baseline("SIGINT → exit")
                    .measured("same hooks, counting"),
            );
        }
    }
    Ok(rows)
}
