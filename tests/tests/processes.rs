//! Several processes in one run (`--pid A,B --pid C`): two of one binary, one of another
//! release in a pid namespace of its own. Each is counted exactly, against the kernel's
//! own count on its binary's inode, and the probes are per binary, not per process.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use goprobe_integration::{
    BpfKind, Env, PrivateExe, bpf_held,
    checks::{assert_async_follows_sysmon_signal, assert_only_workers_preempted},
    env, goprobe_with_stderr, json_lines, process_part, send_signal, temp_path,
    tracefs::{TracefsUprobe, planned_offset},
    wait_timeout, waiting_spinner,
};

const SPINNER_ARGS: [&str; 6] = ["-workers", "2", "-procs", "1", "-duration", "2s"];

/// goprobe on `pids` until its "attached" lines are all out; the BPF links it made.
fn goprobe_attached(
    env: &Env,
    pids: &[u32],
    extra: &[&str],
) -> (std::process::Child, BTreeSet<u32>, Vec<String>) {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let list = list.join(",");
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(["--pid", list.as_str()])
        .collect();
    let (goprobe, stderr) = goprobe_with_stderr(env, &args);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines
        .iter()
        .filter(|l: &&String| l.contains("attached"))
        .count()
        < pids.len()
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("goprobe did not attach to {pids:?}: {lines:#?}"),
        }
    }
    // The links this goprobe holds (fds): other BPF users of the host do not count.
    let links = bpf_held()
        .into_iter()
        .filter(|((kind, _), holder)| *kind == BpfKind::Link && *holder == goprobe.id())
        .map(|((_, id), _)| id)
        .collect();
    std::thread::spawn(move || for _ in stderr.iter() {});
    (goprobe, links, lines)
}

#[test]
fn processes_of_two_binaries_are_each_counted_exactly_with_probes_per_binary() {
    let env = env();
    let (oldest, newest) = (&env.releases[0], env.newest());
    // Private copies: no other process can hit a uprobe on these inodes.
    let shared = PrivateExe::copy_of(&env.fixture(newest, "default", "spinner"), "shared");
    let other = PrivateExe::copy_of(&env.fixture(oldest, "default", "spinner"), "other");
    let mut waiting = vec![
        waiting_spinner(&shared.path, &SPINNER_ARGS, false),
        waiting_spinner(&shared.path, &SPINNER_ARGS, false),
        waiting_spinner(&other.path, &SPINNER_ARGS, true),
    ];
    let pids: Vec<u32> = waiting.iter().map(|(_, pid)| *pid).collect();

    // One process per binary first, attached and gone before any workload starts.
    let (mut probe_run, links_two, _) = goprobe_attached(&env, &[pids[0], pids[2]], &["-q"]);
    send_signal(probe_run.id(), libc::SIGINT);
    assert!(wait_timeout(&mut probe_run, Duration::from_secs(20)).success());

    let shared_hits = TracefsUprobe::new(
        "fleet_shared",
        &shared.path,
        planned_offset(&env.goprobe, &shared.path, "runtime.asyncPreempt2"),
    );
    let other_hits = TracefsUprobe::new(
        "fleet_other",
        &other.path,
        planned_offset(&env.goprobe, &other.path, "runtime.asyncPreempt2"),
    );
    let out = temp_path("processes.jsonl");
    let out_arg = out.display().to_string();
    let (mut goprobe, links_three, attached) =
        goprobe_attached(&env, &pids, &["--json", "-o", &out_arg]);
    // A third process of a binary already probed adds no link.
    assert_eq!(
        links_three.len(),
        links_two.len(),
        "links with 3 processes of 2 binaries vs 1 process of each"
    );
    assert!(
        attached
            .iter()
            .any(|line| line.contains(&format!("pid {}", pids[2]))
                && line.contains("pid 1 in its pid namespace")),
        "{attached:#?}"
    );
    for (_, pid) in &waiting {
        send_signal(*pid, libc::SIGUSR1);
    }
    let status = wait_timeout(&mut goprobe, Duration::from_secs(30));
    assert!(status.success(), "goprobe {status}");
    let (shared_count, other_count) = (shared_hits.hits(), other_hits.hits());
    drop((shared_hits, other_hits));
    let stdouts: Vec<String> = waiting
        .drain(..)
        .map(|(spawned, _)| spawned.finish(Duration::from_secs(10)).1.join("\n"))
        .collect();

    let text = std::fs::read_to_string(&out).expect("goprobe's output");
    let _ = std::fs::remove_file(&out);
    let lines = json_lines(&text);
    let total = lines.last().expect("a last line");
    assert_eq!(total["type"], "total", "{total}");
    assert_eq!(total["schema"], 5);
    assert_eq!(total["lost_total"], 0, "{total}");
    assert_eq!(total["unaccounted"], 0, "{total}");
    assert_eq!(total["unrouted"], 0, "{total}");
    assert_eq!(
        total["processes"].as_array().map(Vec::len),
        Some(3),
        "{total}"
    );

    let mut asyncs = Vec::new();
    for (index, pid) in pids.iter().enumerate() {
        let traced = process_part(&lines, *pid, &stdouts[index], status);
        assert_eq!(traced.summary["counters_in_total"], true);
        let label = format!("pid {pid}");
        // One sysmon per process, every delivery after its own tgkill: nothing of
        // another process was folded into this one.
        assert_async_follows_sysmon_signal(&traced, &label);
        assert_eq!(traced.count("signal_m"), traced.count("tgkill"), "{label}");
        let row = total["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["pid"].as_u64() == Some(u64::from(*pid)))
            .unwrap();
        assert_eq!(
            row["asynchronous"].as_u64(),
            Some(traced.count("async_preempt"))
        );
        assert_only_workers_preempted(&traced, &label);
        asyncs.push(traced.count("async_preempt"));
    }
    if attached[0].contains("uprobe_multi (one link per binary)") {
        // One uprobe_multi link per binary; the others are the tracepoints' (a program
        // observing two links, signal_generate, is one link).
        let first = lines.iter().find(|l| l["type"] == "summary").unwrap();
        let mut tracepoints: Vec<&str> = first["probes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["attached"] == true && p["program"] != "go_runtime")
            .filter_map(|p| p["program"].as_str())
            .collect();
        tracepoints.sort_unstable();
        tracepoints.dedup();
        let tracepoints = tracepoints.len();
        assert_eq!(links_three.len(), 2 + tracepoints, "{links_three:?}");
    }
    assert_eq!(
        lines
            .iter()
            .find(|l| l["type"] == "summary" && l["pid"] == pids[2])
            .unwrap()["ns_pid"],
        1
    );
    eprintln!(
        "async per process {asyncs:?}; kernel-counted asyncPreempt2: shared binary \
         {shared_count}, other {other_count}; links {}",
        links_three.len()
    );
    assert!(asyncs.iter().all(|&n| n >= 25), "{asyncs:?}");
    assert_eq!(
        asyncs[0] + asyncs[1],
        shared_count,
        "the two processes of one binary"
    );
    assert_eq!(
        asyncs[2], other_count,
        "the namespaced process of the other binary"
    );
}

/// `--interval`: each report counts exactly what the output shows between it and the
/// previous one (JSON lines are written in the order records are processed).
#[test]
fn interval_reports_count_exactly_what_happened_between_them() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let out = temp_path("interval.jsonl");
    let status = Command::new(&env.goprobe)
        .args(["--json", "--interval", "0.5", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&fixture)
        .args(["-workers", "2", "-procs", "1", "-duration", "2s"])
        .stdout(Stdio::null())
        .status()
        .expect("goprobe runs");
    assert!(status.success(), "{status}");
    let lines = json_lines(&std::fs::read_to_string(&out).unwrap());
    let _ = std::fs::remove_file(&out);
    let (mut asyncs, mut attempts, mut reports) = (0, 0, Vec::new());
    for line in &lines {
        match line["type"].as_str() {
            Some("event") if line["kind"] == "async_preempt" => asyncs += 1,
            Some("attempt") => attempts += 1,
            Some("interval") => {
                let row = &line["processes"][0];
                assert_eq!(row["asynchronous"], asyncs, "{line}");
                assert_eq!(row["attempts"], attempts, "{line}");
                let length = line["length_ns"].as_u64().unwrap();
                assert!(length >= 400_000_000, "{line}");
                reports.push((asyncs, attempts));
                (asyncs, attempts) = (0, 0);
            }
            _ => {}
        }
    }
    eprintln!("per interval (async, attempts): {reports:?}");
    // A 2 s workload, a report every 0.5 s: at least three while it spins.
    assert!(reports.len() >= 3, "{reports:?}");
    assert!(
        reports.iter().filter(|(n, _)| *n > 0).count() >= 3,
        "{reports:?}"
    );
    let summary = lines.last().unwrap();
    let reported: u64 = reports.iter().map(|(n, _)| n).sum::<u64>() + asyncs;
    assert_eq!(summary["preemptions"]["async"], reported, "{summary}");
}
