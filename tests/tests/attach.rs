//! Attaching to a process that is already running, and leaving it unharmed.

use std::{process::Command, time::Duration};

use goprobe_integration::{Spawned, env, fixture_result, json_lines, send_signal, temp_path};

#[test]
fn attach_by_pid_then_detach_on_sigint_leaves_the_process_running() {
    let env = env();
    let release = env.newest();
    let fixture_path = env.fixture(release, "default", "spinner");
    let mut fixture = Spawned::start(
        Command::new(&fixture_path)
            .args(["-workers", "4", "-procs", "1", "-duration", "3s"])
            .env("GOPROBE_FIXTURE_TRIGGER", "signal"),
    );
    let ready = fixture.wait_line(Duration::from_secs(10), |line| line.contains("\"ready\""));
    let pid = fixture.child.id();
    assert!(
        ready.contains(&pid.to_string()),
        "ready line names the pid: {ready}"
    );

    let out = temp_path("attach.jsonl");
    let mut goprobe = Command::new(&env.goprobe)
        .args(["--json", "-o"])
        .arg(&out)
        .args(["--pid", &pid.to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("goprobe starts");
    // Wait until goprobe says it is attached, then let the fixture work.
    let stderr = goprobe.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let attached = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("goprobe reports attaching");
    assert!(
        attached.contains("attached"),
        "first stderr line: {attached}"
    );
    send_signal(pid, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(1500));

    // Detach mid-run.
    send_signal(goprobe.id(), libc::SIGINT);
    let status = goprobe_integration::wait_timeout(&mut goprobe, Duration::from_secs(20));
    assert!(status.success(), "goprobe exits 0 after SIGINT: {status}");
    let lines = json_lines(&std::fs::read_to_string(&out).expect("output"));
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["end_reason"], "SIGINT");
    let asyncs = summary["preemptions"]["async"].as_u64().unwrap();
    assert!(
        asyncs >= 20,
        "async preemptions while attached ~1.5 s: {asyncs}"
    );
    assert_eq!(summary["lost_total"], 0);

    // The fixture keeps running after the detach and finishes normally.
    assert!(
        fixture.child.try_wait().expect("try_wait").is_none(),
        "the fixture died while goprobe detached"
    );
    let (status, lines) = fixture.finish(Duration::from_secs(20));
    assert!(status.success(), "fixture exit: {status}");
    let result = fixture_result(&lines.join("\n")).expect("fixture result line");
    let counts: Vec<u64> = result["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["count"].as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|&c| c > 0), "all workers ran: {counts:?}");
    let _ = std::fs::remove_file(out);
}

/// A target that execs another program leaves the probes behind on the old binary:
/// goprobe says so and stops, and (as for any early end of `-- CMD`) stops the command.
#[test]
fn exec_in_the_target_ends_tracing_and_says_so() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let out = temp_path("exec.jsonl");
    let started = std::time::Instant::now();
    let output = Command::new(&env.goprobe)
        .args(["--json", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&fixture)
        .args(["-workers", "2", "-procs", "1", "-duration", "1s"])
        .args(["-exec", "/bin/sleep 30"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("goprobe starts");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The spinner ran, reported, then exec'd sleep, which goprobe stopped with SIGTERM.
    let result = fixture_result(&stdout).expect("the fixture reported before its exec");
    let pid = result["pid"].as_u64().unwrap();
    assert_eq!(
        output.status.code(),
        Some(128 + libc::SIGTERM),
        "goprobe exits with the stopped command's status: {}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains(&format!("pid {pid} exec'd /usr/bin/sleep"))
            || stderr.contains(&format!("pid {pid} exec'd /bin/sleep")),
        "{stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "noticed long before sleep's 30 s: {elapsed:?}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the exec'd command was left running"
    );
    let lines = json_lines(&std::fs::read_to_string(&out).expect("output"));
    let summary = lines.last().expect("summary");
    assert_eq!(summary["type"], "summary");
    let end = summary["end_reason"].as_str().unwrap();
    assert!(end.starts_with("target exec ("), "{end}");
    // What happened before the exec is kept.
    assert!(
        summary["preemptions"]["async"].as_u64().unwrap() >= 10,
        "{summary}"
    );
    let _ = std::fs::remove_file(out);
}
