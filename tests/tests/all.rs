//! `goprobe --all`: every Go process the filter admits, those running when it starts and
//! one started later, in and out of a pid namespace, plain and cgo; a non-Go process of
//! the same directory is ignored without a word. Counts are exact against the kernel's
//! own count on each binary's inode, and a later process of a probed binary adds no link.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use goprobe_integration::{
    BpfKind, bpf_held,
    checks::{assert_async_follows_sysmon_signal, assert_only_workers_preempted},
    env, goprobe_with_stderr, json_lines, old_go_copy, process_part, send_signal, temp_path,
    tracefs::{TracefsUprobe, planned_offset},
    u64_of, wait_timeout, waiting_spinner,
};

const SPINNER_ARGS: [&str; 6] = ["-workers", "2", "-procs", "1", "-duration", "2s"];

/// A directory of private copies, removed on drop.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of goprobe's stderr until one satisfies `want`.
fn wait_stderr(stderr: &Receiver<String>, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stderr.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return;
                }
            }
            Err(_) => panic!("goprobe did not say it: {seen:#?}"),
        }
    }
}

/// The BPF links `goprobe` holds.
fn links_of(goprobe: &Child) -> usize {
    bpf_held()
        .into_iter()
        .filter(|((kind, _), holder)| *kind == BpfKind::Link && *holder == goprobe.id())
        .count()
}

#[test]
fn all_traces_every_go_process_of_the_filter_running_or_started_later() {
    let env = env();
    let release = env.newest();
    let dir = Dir(temp_path("fleet"));
    std::fs::create_dir(&dir.0).unwrap();
    let copy = |from: &Path, name: &str| {
        let to = dir.0.join(name);
        std::fs::copy(from, &to).unwrap();
        to
    };
    let plain = copy(&env.fixture(release, "default", "spinner"), "spinner");
    let cgo = copy(&env.fixture(release, "cgo", "spinner"), "spinner-cgo");
    let not_go = copy(Path::new("/bin/sleep"), "sleep");
    let old = dir.0.join("old-go");
    old_go_copy(&plain, release, &old);

    let mut running = vec![
        waiting_spinner(&plain, &SPINNER_ARGS, false),
        waiting_spinner(&plain, &SPINNER_ARGS, true),
        waiting_spinner(&cgo, &SPINNER_ARGS, false),
    ];
    let mut sleeper = Command::new(&not_go).arg("60").spawn().unwrap();
    // Go 1.20 (by its version strings): one running now, one started later.
    let mut old_ones = vec![waiting_spinner(&old, &SPINNER_ARGS, false)];

    let out = temp_path("fleet.jsonl");
    let pattern = format!("{}/*", dir.0.display());
    let out_arg = out.display().to_string();
    let (mut goprobe, stderr) = goprobe_with_stderr(
        &env,
        &["--all", "--exe", &pattern, "--json", "-o", &out_arg],
    );
    let mut said = Vec::new();
    wait_stderr(&stderr, &mut said, |line| {
        line.contains("Go processes, and those that start")
    });
    assert!(
        said.last().unwrap().contains("tracing 3 Go processes"),
        "the three running spinners, not the sleep nor the Go 1.20 one: {said:#?}"
    );
    let links_before = links_of(&goprobe);

    // One more, after goprobe: found at its exec.
    let later = waiting_spinner(&plain, &SPINNER_ARGS, false);
    let later_pid = later.1;
    wait_stderr(&stderr, &mut said, |line| {
        line.starts_with(&format!("goprobe: pid {later_pid} traced"))
    });
    running.push(later);
    old_ones.push(waiting_spinner(&old, &SPINNER_ARGS, false));
    assert_eq!(
        links_of(&goprobe),
        links_before,
        "a fourth process of a probed binary adds no link"
    );
    let pids: Vec<u32> = running.iter().map(|(_, pid)| *pid).collect();

    // The kernel's count on each inode, from before any workload starts.
    let plain_hits = TracefsUprobe::new(
        "fleet_plain",
        &plain,
        planned_offset(&env.goprobe, &plain, "runtime.asyncPreempt2"),
    );
    let cgo_hits = TracefsUprobe::new(
        "fleet_cgo",
        &cgo,
        planned_offset(&env.goprobe, &cgo, "runtime.asyncPreempt2"),
    );
    for pid in &pids {
        send_signal(*pid, libc::SIGUSR1);
    }
    let stdouts: Vec<String> = running
        .drain(..)
        .map(|(spawned, _)| spawned.finish(Duration::from_secs(20)).1.join("\n"))
        .collect();
    let (plain_count, cgo_count) = (plain_hits.hits(), cgo_hits.hits());
    drop((plain_hits, cgo_hits));
    // Their exits are seen (each summary written as its last records are read, whatever
    // the machine's speed); goprobe goes on until told to stop.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        // Whole lines only: goprobe may be writing the last.
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let summarised = json_lines(whole)
            .iter()
            .filter(|line| line["type"] == "summary")
            .filter_map(|line| line["pid"].as_u64())
            .collect::<BTreeSet<u64>>();
        if pids.iter().all(|pid| summarised.contains(&u64::from(*pid))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exits not summarised: {summarised:?} of {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        goprobe.try_wait().unwrap().is_none(),
        "--all runs until stopped"
    );
    let stopped = Instant::now();
    send_signal(goprobe.id(), libc::SIGINT);
    let status = wait_timeout(&mut goprobe, Duration::from_secs(20));
    let exit_ms = stopped.elapsed().as_millis();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    for (mut spawned, _) in old_ones {
        send_signal(spawned.child.id(), libc::SIGUSR1);
        let _ = wait_timeout(&mut spawned.child, Duration::from_secs(20));
    }
    said.extend(stderr.try_iter());
    assert!(status.success(), "goprobe {status}: {said:#?}");
    assert!(
        !said
            .iter()
            .any(|line| line.contains(&sleeper.id().to_string()) || line.contains("sleep")),
        "a non-Go process is ignored without a word: {said:#?}"
    );

    let lines = json_lines(&std::fs::read_to_string(&out).expect("goprobe's output"));
    let _ = std::fs::remove_file(&out);
    let total = lines.last().expect("a last line");
    assert_eq!(total["type"], "total", "{total}");
    assert_eq!(total["lost_total"], 0, "{total}");
    assert_eq!(total["unaccounted"], 0, "{total}");
    // No record came after its process had been summarised.
    assert_eq!(total["unrouted"], 0, "{total}");
    let rows: BTreeSet<u64> = total["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| u64_of(row, "pid"))
        .collect();
    let expected: BTreeSet<u64> = pids.iter().map(|pid| u64::from(*pid)).collect();
    assert_eq!(rows, expected, "exactly the four spinners: {total}");

    let mut asyncs = Vec::new();
    for (index, pid) in pids.iter().enumerate() {
        let traced = process_part(&lines, *pid, &stdouts[index], status);
        let summary = &traced.summary;
        assert!(
            summary["end_reason"]
                .as_str()
                .unwrap()
                .starts_with("target exit"),
            "{summary}"
        );
        if index == 1 {
            assert_eq!(summary["ns_pid"], 1, "{summary}");
        }
        let label = format!("pid {pid}");
        assert_async_follows_sysmon_signal(&traced, &label);
        assert_only_workers_preempted(&traced, &label);
        asyncs.push(traced.count("async_preempt"));
    }
    eprintln!(
        "async per process {asyncs:?}; kernel-counted asyncPreempt2: plain binary \
         {plain_count}, cgo {cgo_count}; links {links_before}; SIGINT to exit {exit_ms} ms"
    );
    assert!(asyncs.iter().all(|&n| n >= 25), "{asyncs:?}");
    assert_eq!(
        asyncs[0] + asyncs[1] + asyncs[3],
        plain_count,
        "three processes of one binary"
    );
    assert_eq!(asyncs[2], cgo_count, "the cgo binary");
}
