//! A process in a container, as a runtime makes one: its own pid namespace (it is pid 1
//! there, and its thread ids are the namespace's), its own mount namespace (its binary
//! exists only inside it) and a cgroup named as docker names its scopes. goprobe traces it
//! by its host pid, and must count exactly what the kernel counts.

use std::{
    collections::BTreeSet,
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use goprobe_integration::{
    Spawned, Traced,
    checks::{assert_async_follows_sysmon_signal, assert_nothing_lost},
    child_of, env, fixture_result, goprobe_with_stderr, send_signal, split_output, temp_path,
    tracefs::{TracefsUprobe, planned_offset},
    u64_of, wait_timeout,
};
use serde_json::Value;

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid
/// host).
fn cgroup2_root() -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("/proc/self/mounts");
    mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .unwrap_or_else(|| panic!("no cgroup2 mount on this host:\n{mounts}"))
}

/// A cgroup under the v2 root, removed (with its parent) on drop.
struct Cgroup {
    parent: PathBuf,
    dir: PathBuf,
    /// The path `/proc/PID/cgroup` shows for its members.
    path: String,
}

impl Cgroup {
    fn new(parent: &str, name: &str) -> Cgroup {
        let root = cgroup2_root();
        let dir = root.join(parent).join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("mkdir {}: {err}", dir.display()));
        Cgroup {
            parent: root.join(parent),
            dir,
            path: format!("/{parent}/{name}"),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
        let _ = fs::remove_dir(&self.parent);
    }
}

/// A 64-hex-digit id, different on every run, as container runtimes make them.
fn container_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let seed = nanos ^ u64::from(std::process::id()).rotate_left(32);
    (0..4u64)
        .map(|i| {
            format!(
                "{:016x}",
                seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .rotate_left(i as u32 * 16)
                    ^ i
            )
        })
        .collect()
}

#[test]
fn process_in_pid_and_mount_namespaces_is_traced_exactly() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "spinner");
        let id = container_id();
        let cgroup = Cgroup::new(
            &format!("goprobe-test-{}", std::process::id()),
            &format!("docker-{id}.scope"),
        );
        // The container's root: a tmpfs mounted only in its mount namespace, holding the
        // only copy of the binary it runs.
        let root = temp_path("container-root");
        fs::create_dir(&root).unwrap();
        let inside = root.join("spinner");
        let script = format!(
            "mount -t tmpfs goprobe-test {root} && cp {fixture} {inside} && \
             echo 0 > {procs} && exec {inside} -workers 4 -procs 1 -duration 2s",
            root = root.display(),
            fixture = fixture.display(),
            inside = inside.display(),
            procs = cgroup.dir.join("cgroup.procs").display(),
        );
        eprintln!(
            "{release}: cgroup {} made; starting the container",
            cgroup.path
        );
        let mut container = Spawned::start(
            Command::new("unshare")
                .args(["--fork", "--pid", "--mount", "--mount-proc"])
                .args(["--propagation", "private", "sh", "-c", &script])
                .env("GOPROBE_FIXTURE_TRIGGER", "signal"),
        );
        let ready: Value = serde_json::from_str(
            &container.wait_line(Duration::from_secs(20), |line| line.contains("\"ready\"")),
        )
        .unwrap();
        // The fixture's own view: pid 1 of its namespace.
        assert_eq!(ready["pid"], 1, "{release}: {ready}");
        let host_pid = child_of(container.child.id()).expect("unshare's child");
        assert!(
            !inside.exists(),
            "{release}: {} must exist only inside the container",
            inside.display()
        );

        eprintln!("{release}: container ready, host pid {host_pid}");
        // The kernel's own count of asyncPreempt2, on the container's copy (its inode).
        let exe = PathBuf::from(format!("/proc/{host_pid}/exe"));
        let offset = planned_offset(&env.goprobe, &fixture, "runtime.asyncPreempt2");
        let probe = TracefsUprobe::new("container_ap2", &exe, offset);

        eprintln!("{release}: tracefs uprobe made");
        let out = temp_path("container.jsonl");
        let (out_arg, pid_arg) = (out.display().to_string(), host_pid.to_string());
        let (mut goprobe, stderr) =
            goprobe_with_stderr(&env, &["--json", "-o", &out_arg, "--pid", &pid_arg]);
        let attached = stderr
            .recv_timeout(Duration::from_secs(30))
            .expect("goprobe says it attached");
        assert!(attached.contains("attached"), "{release}: {attached}");
        assert!(
            attached.contains("pid 1 in its pid namespace")
                && attached.contains(&format!("container docker {}", &id[..12])),
            "{release}: the attach line names the namespace pid and the container: {attached}"
        );
        eprintln!("{release}: goprobe attached");
        send_signal(host_pid, libc::SIGUSR1);
        let status = wait_timeout(&mut goprobe, Duration::from_secs(30));
        let (_, stdout) = container.finish(Duration::from_secs(10));
        let hits = probe.hits();
        drop(probe);
        let cgroup_path = cgroup.path.clone();
        drop(cgroup);
        let _ = fs::remove_dir(&root);
        let stderr_text: Vec<String> = stderr.try_iter().collect();
        assert!(
            status.success(),
            "{release}: goprobe {status}: {stderr_text:#?}"
        );

        let (events, attempts, summary) = split_output(&out);
        let stdout = stdout.join("\n");
        let traced = Traced {
            events,
            attempts,
            summary,
            fixture: fixture_result(&stdout),
            stdout,
            stderr: stderr_text.join("\n"),
            status,
        };
        check_container_run(&traced, release, host_pid, (&id, &cgroup_path), hits);
    }
}

fn check_container_run(
    traced: &Traced,
    release: &str,
    host_pid: u32,
    (id, cgroup): (&str, &str),
    hits: u64,
) {
    let summary = &traced.summary;
    assert_eq!(u64_of(summary, "pid"), u64::from(host_pid), "{release}");
    assert_eq!(summary["ns_pid"], 1, "{release}: {summary}");
    assert_eq!(traced.fixture()["pid"], 1, "{release}");
    assert_eq!(summary["container"]["runtime"], "docker", "{release}");
    assert_eq!(summary["container"]["id"], id, "{release}");
    assert_eq!(summary["cgroup"], cgroup, "{release}");
    assert_eq!(summary["untranslated_ids"], 0, "{release}: {summary}");
    assert_nothing_lost(traced, release);

    // Exact: every execution of asyncPreempt2 the kernel counted, and no other.
    let asyncs = traced.count("async_preempt");
    eprintln!("{release}: goprobe async {asyncs}, kernel-counted asyncPreempt2 {hits}");
    assert!(hits >= 50, "{release}: the kernel counted only {hits}");
    assert_eq!(asyncs, hits, "{release}: goprobe vs uprobe_profile");

    // Thread ids are the host's throughout: signalM's m.procid and tgkill's target (both
    // namespace ids in the process) are threads that SIGURG was delivered to.
    assert_async_follows_sysmon_signal(traced, release);
    let delivered: BTreeSet<u64> = traced
        .events_of("signal_deliver")
        .map(|e| u64_of(e, "tid"))
        .collect();
    let signalled: BTreeSet<u64> = traced
        .events_of("signal_m")
        .map(|e| u64_of(e, "m_tid"))
        .collect();
    let tgkilled: BTreeSet<u64> = traced
        .events_of("tgkill")
        .map(|e| u64_of(e, "target_tid"))
        .collect();
    assert_eq!(signalled, tgkilled, "{release}");
    assert!(
        signalled.is_subset(&delivered),
        "{release}: {signalled:?} vs {delivered:?}"
    );
    assert!(
        traced
            .events_of("tgkill")
            .all(|e| u64_of(e, "target_tgid") == u64::from(host_pid)),
        "{release}: tgkill targets are the host pid"
    );
    assert_eq!(
        traced.count("signal_m"),
        traced.count("tgkill"),
        "{release}"
    );

    // Every attempt that preempted has every link of the chain, and there are as many
    // as there were asynchronous preemptions.
    let by_sysmon = &summary["attempts"]["by_requester"]["sysmon"];
    assert_eq!(
        by_sysmon["async"].as_u64(),
        Some(asyncs),
        "{release}: {summary}"
    );
    // A request that finds the thread's last SIGURG not yet handled is merged into it
    // (`m.signalPending`, or the kernel's pending set): none on a fast host, some where
    // delivery takes longer than sysmon's 10 ms (a qemu guest without KVM). Each must be
    // exactly that.
    let coalesced: Vec<&Value> = traced
        .attempts
        .iter()
        .filter(|a| a["outcome"] == "coalesced")
        .collect();
    assert_eq!(
        by_sysmon["coalesced"].as_u64().unwrap_or(0),
        coalesced.len() as u64,
        "{release}: {summary}"
    );
    for merged in coalesced {
        let at = u64_of(merged, "ts_ns");
        let in_flight = traced.attempts.iter().any(|a| {
            a["target_tid"] == merged["target_tid"]
                && a["stamps"]["signal"]
                    .as_u64()
                    .is_some_and(|sent| sent <= at)
                && a["stamps"]["handler"]
                    .as_u64()
                    .is_none_or(|handled| handled >= at)
        });
        assert!(
            in_flight,
            "{release}: coalesced with no SIGURG in flight to its thread: {merged}"
        );
    }
    let preempting: Vec<&Value> = traced
        .attempts
        .iter()
        .filter(|a| a["outcome"] == "async")
        .collect();
    assert_eq!(preempting.len() as u64, asyncs, "{release}");
    for attempt in preempting {
        let stamps = &attempt["stamps"];
        for link in [
            "tick", "request", "signal", "tgkill", "generate", "deliver", "handler", "preempt",
            "off",
        ] {
            assert!(
                stamps[link].is_u64(),
                "{release}: attempt without its {link}: {attempt}"
            );
        }
        assert!(
            delivered.contains(&u64_of(attempt, "target_tid")),
            "{release}: {attempt}"
        );
    }
}
