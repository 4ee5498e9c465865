//! `goprobe verify`: the verdict, its exit code and the named cause for a healthy
//! process, async preemption configured off, tgkill denied by seccomp, an idle process,
//! bad targets, and this host.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use goprobe_integration::{
    Env, Spawned, env, goprobe_fails, goprobe_with_stderr, read_lines, send_signal, split_output,
    temp_path,
};
use serde_json::Value;

/// `goprobe verify --json ARGS`: (exit code, the report).
fn verify(env: &Env, args: &[&str], fixture_env: &[(&str, &str)]) -> (i32, Value) {
    let output = Command::new(&env.goprobe)
        .args(["verify", "--json"])
        .args(args)
        .envs(fixture_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("goprobe starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().expect("goprobe exits");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|err| panic!("not one JSON object ({err}): {stdout}\n{stderr}"));
    (code, report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report}"))
}

const SPIN: [&str; 6] = ["-workers", "2", "-procs", "1", "-duration", "60s"];

#[test]
fn healthy_process_passes() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let mut args = vec!["-d", "2", "--", fixture.to_str().unwrap()];
    args.extend(SPIN);
    let (code, report) = verify(&env, &args, &[]);
    assert_eq!(report["verdict"], "pass", "{report}");
    assert_eq!(code, 0, "{report}");
    let preemption = check(&report, "preemption");
    assert_eq!(preemption["status"], "pass", "{report}");
    assert!(
        preemption["found"].as_str().unwrap().contains("main.spin"),
        "names where: {preemption}"
    );
}

#[test]
fn asyncpreemptoff_fails_naming_it() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let mut args = vec!["-d", "2", "--", fixture.to_str().unwrap()];
    args.extend(SPIN);
    let (code, report) = verify(&env, &args, &[("GODEBUG", "asyncpreemptoff=1")]);
    assert_eq!(report["verdict"], "fail", "{report}");
    assert_eq!(report["cause"], "asyncpreemptoff", "{report}");
    assert_eq!(code, 4, "{report}");
}

/// The spinner fixture under a seccomp filter that fails tgkill with EPERM
/// (tests/src/bin/deny-tgkill.rs), once it has exec'd (same pid).
fn spinner_denied_tgkill(env: &Env, fixture_env: &[(&str, &str)]) -> Spawned {
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let target = Spawned::start(
        Command::new(env!("CARGO_BIN_EXE_deny-tgkill"))
            .arg(&fixture)
            .args(SPIN)
            .envs(fixture_env.iter().copied()),
    );
    let pid = target.child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .as_deref()
        != Some(&fixture)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the helper never exec'd"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    target
}

/// The first number after `label ` in `text`.
fn number_after(text: &str, label: &str) -> u64 {
    let at = text
        .find(&format!("{label} "))
        .unwrap_or_else(|| panic!("no {label:?} in {text:?}"));
    text[at + label.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {text:?}"))
}

/// tgkill denied by seccomp while goprobe watches the spinners start: the failed calls
/// are seen at `sys_exit_tgkill` (the filter skips `sys_enter_tgkill`), with their
/// errno, one for each `runtime.signalM`, which calls tgkill directly.
#[test]
fn tgkill_denied_by_seccomp_is_seen_failing_with_eperm() {
    let env = env();
    let (output, report) = before_any_denial(|| {
        // The spinners wait for SIGUSR1, sent once goprobe has attached.
        let mut target = spinner_denied_tgkill(&env, &[("GOPROBE_FIXTURE_TRIGGER", "signal")]);
        target.wait_line(Duration::from_secs(20), |line| line.contains("\"ready\""));
        let pid = target.child.id();
        let mut goprobe = Command::new(&env.goprobe)
            .args(["verify", "--json", "-d", "2", "--pid", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("goprobe starts");
        release_when_attached(&read_lines(goprobe.stderr.take().unwrap()), pid);
        let output = goprobe.wait_with_output().expect("goprobe exits");
        let _ = target.child.kill();
        let _ = target.child.wait();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        let found = check(&report, "tgkill")["found"]
            .as_str()
            .unwrap()
            .to_string();
        let signalled = number_after(&found, "signalM") > 0;
        ((output, report), signalled)
    });
    assert_eq!(report["verdict"], "fail", "{report}");
    assert_eq!(report["cause"], "tgkill", "{report}");
    assert_eq!(output.status.code(), Some(4), "{report}");
    let found = check(&report, "tgkill")["found"].as_str().unwrap();
    assert!(found.contains("seccomp"), "{found}");
    let failed = number_after(found, "EPERM");
    assert!(failed > 0, "{found}");
    assert_eq!(failed, number_after(found, "signalM"), "{found}");
    assert_eq!(number_after(found, "tgkill"), 0, "none entered: {found}");
}

/// Runs `attempt` (a denied-tgkill fixture traced from before its spinners start) until
/// goprobe saw a `signalM` in it, at most five times. The runtime sends each thread one
/// SIGURG and, the tgkill denied, no other (`m.signalPending` stays set): on a slow CPU
/// (a qemu guest without KVM) sysmon can ask main to stop during start-up, before goprobe
/// attaches, and that thread's one signal is then spent unseen. Such a run shows requests
/// with no signal at all, the case `tgkill_denied_by_seccomp_fails_naming_it` covers; it is retried.
fn before_any_denial<T>(attempt: impl Fn() -> (T, bool)) -> T {
    for run in 1..=5 {
        let (result, signalled) = attempt();
        if signalled {
            return result;
        }
        println!("run {run}: the tgkill was denied before goprobe attached; again");
    }
    panic!("in five runs the runtime never sent a signal after goprobe attached");
}

/// Waits for goprobe's "attached" line, then sends the waiting fixture its SIGUSR1.
fn release_when_attached(stderr: &std::sync::mpsc::Receiver<String>, pid: u32) {
    let attached = stderr
        .recv_timeout(Duration::from_secs(20))
        .expect("goprobe says it attached");
    assert!(attached.contains("attached"), "{attached}");
    send_signal(pid, libc::SIGUSR1);
}

/// The same refusals traced with `--syscall-hooks raw`: raw `sys_exit` sees each failed
/// call (errno EPERM), one per signalM, and raw `sys_enter` none, like the syscall events.
#[test]
fn tgkill_denied_by_seccomp_is_seen_by_raw_syscall_hooks() {
    let env = env();
    let (events, summary) = before_any_denial(|| {
        let mut target = spinner_denied_tgkill(&env, &[("GOPROBE_FIXTURE_TRIGGER", "signal")]);
        target.wait_line(Duration::from_secs(20), |line| line.contains("\"ready\""));
        let pid = target.child.id();
        let out = temp_path("raw-hooks.jsonl");
        let out_arg = out.to_string_lossy().into_owned();
        let pid_arg = pid.to_string();
        let (mut goprobe, stderr) = goprobe_with_stderr(
            &env,
            &[
                "--json",
                "--syscall-hooks",
                "raw",
                "-d",
                "2",
                "-o",
                &out_arg,
                "--pid",
                &pid_arg,
            ],
        );
        release_when_attached(&stderr, pid);
        assert!(goprobe.wait().expect("goprobe exits").success());
        let _ = target.child.kill();
        let _ = target.child.wait();
        let (events, _, summary) = split_output(&out);
        let signalled = summary["events"]["signal_m"].as_u64().unwrap_or(0) > 0;
        ((events, summary), signalled)
    });
    let count = |kind: &str| summary["events"][kind].as_u64().unwrap_or(0);
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "tgkill_failed")
        .collect();
    assert!(!failed.is_empty(), "{summary}");
    // One per signalM, but for runs of raw sys_exit the kernel skipped and counted: a
    // kernel that runs syscall tracepoints preemptible (7.2) does not re-enter the
    // program while another task on the CPU is preempted inside it.
    let skipped = summary["skipped_by_kernel"]["raw_sys_exit"]
        .as_u64()
        .unwrap_or(0);
    let unseen = count("signal_m")
        .checked_sub(failed.len() as u64)
        .unwrap_or_else(|| panic!("more failures than signalMs: {summary}"));
    assert!(unseen <= skipped, "{unseen} failures unseen: {summary}");
    assert_eq!(count("tgkill"), 0, "none entered: {summary}");
    for event in failed {
        assert_eq!(event["errno"], 1, "EPERM: {event}");
    }
}

/// Attached to a process whose tgkill was denied long ago: the runtime sends no more
/// (each M's signal is still "pending"), so the evidence is sysmon asking again and
/// again with no signal at all; verify names tgkill and seccomp.
#[test]
fn tgkill_denied_by_seccomp_fails_naming_it() {
    let env = env();
    let mut target = spinner_denied_tgkill(&env, &[]);
    let pid = target.child.id().to_string();
    let (code, report) = verify(&env, &["-d", "2", "--pid", &pid], &[]);
    let _ = target.child.kill();
    let _ = target.child.wait();
    assert_eq!(report["verdict"], "fail", "{report}");
    assert_eq!(report["cause"], "tgkill", "{report}");
    assert!(
        check(&report, "tgkill")["found"]
            .as_str()
            .unwrap()
            .contains("seccomp"),
        "{report}"
    );
    assert_eq!(code, 4, "{report}");
}

/// One spinner blocks SIGURG on its locked thread: verify names that thread (the tid
/// the fixture printed) and warns.
#[test]
fn thread_blocking_sigurg_is_named() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let mut target = Spawned::start(Command::new(&fixture).args([
        "-workers",
        "2",
        "-procs",
        "2",
        "-duration",
        "60s",
        "-block-sigurg",
        "1",
    ]));
    let line = target.wait_line(Duration::from_secs(20), |line| {
        line.contains("sigurg_blocked")
    });
    let blocked: Value = serde_json::from_str(&line).unwrap();
    let tid = blocked["tid"].as_u64().unwrap();
    let pid = target.child.id().to_string();
    let (code, report) = verify(&env, &["-d", "2", "--pid", &pid], &[]);
    let _ = target.child.kill();
    let _ = target.child.wait();
    let sigurg = check(&report, "sigurg");
    assert_eq!(sigurg["status"], "warn", "{report}");
    let found = sigurg["found"].as_str().unwrap();
    assert!(found.contains("blocked in 1 of"), "{found}");
    assert!(found.contains(&format!("tid {tid} ")), "{found}");
    assert_eq!(report["verdict"], "warn", "{report}");
    assert_eq!(report["cause"], "sigurg", "{report}");
    assert_eq!(code, 3, "{report}");
}

/// Nothing runs: nothing to preempt is a WARN, not a PASS.
#[test]
fn idle_process_warns() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    // Waits for SIGUSR1 before any goroutine spins.
    let mut target = Spawned::start(
        Command::new(&fixture)
            .args(SPIN)
            .env("GOPROBE_FIXTURE_TRIGGER", "signal"),
    );
    target.wait_line(Duration::from_secs(20), |line| line.contains("\"ready\""));
    let pid = target.child.id().to_string();
    let (code, report) = verify(&env, &["-d", "2", "--pid", &pid], &[]);
    let _ = target.child.kill();
    let _ = target.child.wait();
    assert_eq!(report["verdict"], "warn", "{report}");
    assert_eq!(report["cause"], "requests", "{report}");
    assert_eq!(code, 3, "{report}");
}

#[test]
fn bad_targets_are_clear_errors() {
    let env = env();
    let (code, stderr) = goprobe_fails(&env, &["verify", "--", "/bin/sh", "-c", "sleep 5"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a Go program"), "{stderr}");
    let (code, stderr) = goprobe_fails(&env, &["verify", "--pid", "4194305"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no process with pid"), "{stderr}");
    let (code, stderr) = goprobe_fails(&env, &["verify", "--bogus"], None);
    assert_eq!(code, 2, "{stderr}");
}

/// This host, with the workload xtask ships beside goprobe: PASS, proved end to end.
#[test]
fn host_check_passes_here() {
    let env = env();
    let (code, report) = verify(&env, &[], &[]);
    assert_eq!(report["subject"], "host");
    assert_eq!(report["verdict"], "pass", "{report}");
    assert_eq!(code, 0, "{report}");
    for name in ["kernel", "privileges", "uprobes", "tracefs", "btf", "bpf"] {
        assert_eq!(check(&report, name)["status"], "pass", "{name}: {report}");
    }
    let e2e = check(&report, "end to end");
    assert_eq!(e2e["status"], "pass", "{report}");
    assert!(e2e["found"].as_str().unwrap().contains("async "), "{e2e}");
}
