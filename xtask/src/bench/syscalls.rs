//! What each `--syscall-hooks` costs every syscall on the host while goprobe is attached:
//! `dd bs=1` (a read and a write per byte) timed with goprobe tracing another process.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Context, Row, Stat,
    runner::{self, start_tracer, wait_with_usage},
    table::Unit,
};
use crate::demo;

/// Bytes `dd` copies one at a time: two syscalls each.
const COPIES: u64 = 1_000_000;
const HOOKS: [&str; 4] = ["none", "exit", "classic", "raw"];

/// ns per syscall of one `dd` run, pinned to the last CPU.
fn dd_ns_per_syscall() -> anyhow::Result<f64> {
    let cpu = std::thread::available_parallelism().map_or(1, usize::from) - 1;
    let start = Instant::now();
    let status = Command::new("taskset")
        .args([
            "-c",
            &cpu.to_string(),
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
        ])
        .arg(format!("count={COPIES}"))
        .stderr(Stdio::null())
        .status()
        .context("running dd under taskset")?;
    if !status.success() {
        bail!("dd failed: {status}");
    }
    Ok(start.elapsed().as_secs_f64() * 1e9 / (2 * COPIES) as f64)
}

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    eprintln!("xtask: bench syscalls: dd bs=1 under each --syscall-hooks");
    let mut target = Command::new(cx.fixture("spinner"))
        .args(["-workers", "1", "-procs", "1", "-duration", "600s"])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = target.id().to_string();
    let runs = runner::interleaved(cx.args.reps, HOOKS.len() + 1, |variant| {
        if variant == 0 {
            return dd_ns_per_syscall();
        }
        let mut cmd = demo::privileged(&cx.goprobe);
        cmd.args([
            "-q",
            "-o",
            "/dev/null",
            "--syscall-hooks",
            HOOKS[variant - 1],
        ])
        .args(["--pid", &pid]);
        let (mut child, _) = start_tracer(cmd, "attached")?;
        let ns = dd_ns_per_syscall();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        wait_with_usage(&mut child)?;
        ns
    });
    let _ = target.kill();
    let _ = target.wait();
    let runs = runs?;
    let bare = Stat::of(&runs[0]).map_or(f64::NAN, |s| s.median);
    Ok(HOOKS
        .iter()
        .enumerate()
        .map(|(i, hooks)| {
            let deltas: Vec<f64> = runs[i + 1]
                .iter()
                .zip(&runs[0])
                .map(|(traced, bare)| traced - bare)
                .collect();
            let measured = Stat::of(&runs[i + 1]).map_or(f64::NAN, |s| s.median);
            let default = if i == 0 { " (default)" } else { "" };
            Row::new(
                format!("per host syscall, --syscall-hooks {hooks}{default}"),
                Unit::Nanos,
                &deltas,
            )
            .baseline(format!("untraced {bare:.0} ns"))
            .measured(format!("{measured:.0} ns"))
        })
        .collect())
}
