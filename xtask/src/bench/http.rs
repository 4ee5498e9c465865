//! A Go HTTP server no one here wrote, under load: esbuild's `--serve` (a stripped release
//! build, Go 1.26, from npm's `@esbuild/linux-x64`) serving a static file to `wrk`.
//! Requests/s and p99, traced / untraced, next to untraced / untraced (the noise).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Context, Row, Stat,
    runner::{self, start_tracer, wait_with_usage},
    table::{Goal, Unit, si},
};
use crate::{demo, util};

const ESBUILD: &str = "0.28.2";
const WRK_SECONDS: &str = "5";

/// esbuild's binary, fetched once with `npm pack` into `target/bench/`.
fn esbuild() -> anyhow::Result<PathBuf> {
    let dir = util::workspace_root().join(format!("target/bench/esbuild/{ESBUILD}"));
    let binary = dir.join("package/bin/esbuild");
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir)?;
    util::run(Command::new("npm").current_dir(&dir).args([
        "pack",
        "--silent",
        &format!("@esbuild/linux-x64@{ESBUILD}"),
    ]))
    .context("npm pack @esbuild/linux-x64 (the bench's real-world HTTP server)")?;
    util::run(
        Command::new("tar")
            .current_dir(&dir)
            .args(["xzf", &format!("esbuild-linux-x64-{ESBUILD}.tgz")]),
    )?;
    if !binary.is_file() {
        bail!("{} missing after unpacking", binary.display());
    }
    Ok(binary)
}

struct Server {
    child: Child,
    /// esbuild serves while its stdin is open.
    _stdin: ChildStdin,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(esbuild: &Path) -> anyhow::Result<Server> {
    let www = util::workspace_root().join("target/bench/esbuild/www");
    std::fs::create_dir_all(&www)?;
    // A 16 KiB page: a typical static asset.
    let page: String = (0..16 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(www.join("index.html"), page)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(esbuild)
        .arg(format!("--servedir={}", www.display()))
        .arg(format!("--serve=127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting esbuild --serve")?;
    let stdin = child.stdin.take().context("stdin")?;
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("esbuild did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server {
        child,
        _stdin: stdin,
        url: format!("http://127.0.0.1:{port}/index.html"),
    })
}

/// One wrk run: (requests/s, p99 in ms).
fn wrk(url: &str, seconds: &str) -> anyhow::Result<(f64, f64)> {
    let out = util::stdout(Command::new("wrk").args([
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]))?;
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {out}"))?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| millis(v.trim()))
        .with_context(|| format!("no 99% latency in wrk's output: {out}"))?;
    Ok((rps, p99))
}

/// wrk's "1.23ms", "456.78us", "1.20s" in ms.
fn millis(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    let esbuild = esbuild()?;
    let server = serve(&esbuild)?;
    let pid = server.child.id().to_string();
    eprintln!("xtask: bench http: esbuild {ESBUILD} under wrk, untraced ×2 / -q / JSON");
    wrk(&server.url, "2")?; // warm-up
    let events_file = std::env::temp_dir().join("goprobe-bench-http.jsonl");
    let mut event_rates = Vec::new();
    let runs = runner::interleaved(cx.args.reps, 4, |variant| {
        if variant < 2 {
            return wrk(&server.url, WRK_SECONDS);
        }
        let mut cmd = demo::privileged(&cx.goprobe);
        if variant == 2 {
            cmd.arg("-q");
        }
        cmd.args(["--json", "-o"])
            .arg(&events_file)
            .args(["--pid", &pid]);
        let (mut child, started) = start_tracer(cmd, "attached")?;
        let result = wrk(&server.url, WRK_SECONDS);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        wait_with_usage(&mut child)?;
        if variant == 2 {
            let summary: serde_json::Value =
                serde_json::from_str(&runner::last_line(&events_file)?)?;
            let events = summary["events_total"].as_f64().unwrap_or(0.0);
            event_rates.push(events / started.elapsed().as_secs_f64());
        }
        let _ = std::fs::remove_file(&events_file);
        result
    })?;
    let breakdown = where_the_time_goes(cx, &server, &pid, &events_file)?;
    let ratio = |variant: usize, pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        runs[variant]
            .iter()
            .zip(&runs[0])
            .map(|(a, b)| pick(a) / pick(b))
            .collect()
    };
    let median = |values: Vec<f64>| Stat::of(&values).map_or(f64::NAN, |s| s.median);
    let rps = |variant: usize| median(runs[variant].iter().map(|r| r.0).collect());
    let p99 = |variant: usize| median(runs[variant].iter().map(|r| r.1).collect());
    let base_rps = format!("untraced {} req/s", si(rps(0)));
    let base_p99 = format!("untraced p99 {:.2} ms", p99(0));
    let name = format!("HTTP server (esbuild {ESBUILD}, wrk -c16)");
    let mut rows = vec![
        Row::new(format!("{name} req/s, -q"), Unit::Ratio, &ratio(2, |r| r.0))
            .baseline(base_rps.clone())
            .measured(format!(
                "{} req/s, {} rec/s",
                si(rps(2)),
                si(median(event_rates))
            ))
            .goal(Goal::AtLeast(0.99)),
        Row::new(format!("{name} p99, -q"), Unit::Ratio, &ratio(2, |r| r.1))
            .baseline(base_p99.clone())
            .measured(format!("p99 {:.2} ms", p99(2))),
        Row::new(
            format!("{name} req/s, JSON"),
            Unit::Ratio,
            &ratio(3, |r| r.0),
        )
        .baseline(base_rps.clone())
        .measured(format!("{} req/s", si(rps(3)))),
        Row::new(format!("{name} p99, JSON"), Unit::Ratio, &ratio(3, |r| r.1))
            .baseline(base_p99.clone())
            .measured(format!("p99 {:.2} ms", p99(3))),
        Row::new(
            format!("{name} req/s, noise"),
            Unit::Ratio,
            &ratio(1, |r| r.0),
        )
        .baseline(base_rps)
        .measured("untraced again (A/A)"),
        Row::new(
            format!("{name} p99, noise"),
            Unit::Ratio,
            &ratio(1, |r| r.1),
        )
        .baseline(base_p99)
        .measured("untraced again (A/A)"),
    ];
    rows.extend(breakdown);
    Ok(rows)
}

/// One more `-q` run under load with the kernel's BPF statistics on: each program's runs
/// per second and time per run (`bpftool prog show`), and goprobe's own CPU.
fn where_the_time_goes(
    cx: &Context,
    server: &Server,
    pid: &str,
    output: &Path,
) -> anyhow::Result<Vec<Row>> {
    let stats = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    std::fs::write(stats, "1").context("enabling BPF statistics")?;
    let measured = (|| {
        let mut cmd = demo::privileged(&cx.goprobe);
        cmd.args(["-q", "--json", "-o"])
            .arg(output)
            .args(["--pid", pid]);
        let (mut child, _) = start_tracer(cmd, "attached")?;
        let before = programs()?;
        let cpu_before = runner::cpu_ns(child.id()).unwrap_or(0);
        let load = Instant::now();
        wrk(&server.url, WRK_SECONDS)?;
        let seconds = load.elapsed().as_secs_f64();
        let cpu_after = runner::cpu_ns(child.id()).unwrap_or(0);
        let after = programs()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        wait_with_usage(&mut child)?;
        let cpu = cpu_after.saturating_sub(cpu_before) as f64 / 1e9 / seconds * 100.0;
        anyhow::Ok((before, after, seconds, cpu))
    })();
    std::fs::write(stats, "0")?;
    let _ = std::fs::remove_file(output);
    let (before, after, seconds, cpu) = measured?;
    let mut rows = Vec::new();
    for (id, (name, runs, ns)) in &after {
        let Some((_, runs_before, ns_before)) = before.get(id) else {
            continue;
        };
        let runs = runs - runs_before;
        if runs == 0 {
            continue;
        }
        let per_run = (ns - ns_before) as f64 / runs as f64;
        let share = (ns - ns_before) as f64 / 1e9 / seconds * 100.0;
        rows.push(
            Row::new(
                format!("  under HTTP load: {name}"),
                Unit::Nanos,
                &[per_run],
            )
            .baseline("bpf_stats: time per run")
            .measured(format!(
                "{} runs/s, {share:.2}% of a CPU",
                si(runs as f64 / seconds)
            )),
        );
    }
    rows.push(
        Row::new(
            "  under HTTP load: goprobe's userspace",
            Unit::Percent,
            &[cpu],
        )
        .baseline("schedstat, during the load")
        .measured("% of one CPU"),
    );
    Ok(rows)
}

/// goprobe's programs by id: (name, run count, run time in ns), from `bpftool`.
fn programs() -> anyhow::Result<std::collections::BTreeMap<u64, (String, u64, u64)>> {
    let out = util::stdout(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    let list: serde_json::Value = serde_json::from_str(&out)?;
    let mut programs = std::collections::BTreeMap::new();
    for prog in list.as_array().into_iter().flatten() {
        let name = prog["name"].as_str().unwrap_or_default();
        let ours = name == "go_runtime" || name.starts_with("raw_") || name.starts_with("tp_");
        if let (true, Some(id)) = (ours, prog["id"].as_u64()) {
            programs.insert(
                id,
                (
                    name.to_string(),
                    prog["run_cnt"].as_u64().unwrap_or(0),
                    prog["run_time_ns"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrk_latencies_in_ms() {
        assert_eq!(super::millis("1.50ms"), Some(1.5));
        assert_eq!(super::millis("250.00us"), Some(0.25));
        assert_eq!(super::millis("1.20s"), Some(1200.0));
        assert_eq!(super::millis("n/a"), None);
    }
}
