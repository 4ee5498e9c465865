//! Bad input and hostile hosts: a clear message naming the fix, a non-zero exit, no panic.

use goprobe_integration::{
    env, goprobe_fails, make_executable, old_go_copy, replace_all, temp_path, trace_command,
};

#[test]
fn no_such_pid() {
    let env = env();
    // Above the kernel's maximum pid_max (2^22).
    let (code, stderr) = goprobe_fails(&env, &["--pid", "4194305"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no process with pid 4194305"), "{stderr}");
}

#[test]
fn not_a_go_program() {
    let env = env();
    let (code, stderr) = goprobe_fails(&env, &["--", "/bin/sh", "-c", "true"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a Go program"), "{stderr}");
    // Same through --pid: our own test process is Rust, not Go.
    let pid = std::process::id().to_string();
    let (code, stderr) = goprobe_fails(&env, &["--pid", &pid], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not a Go program"), "{stderr}");
}

#[test]
fn command_not_found() {
    let env = env();
    let (code, stderr) = goprobe_fails(&env, &["--", "no-such-command-goprobe"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("command not found"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let env = env();
    for args in [
        &["--pid", "0"][..],
        &["--pid", "1", "--", "x"],
        &[],
        &["--json"],
        &["--bogus"],
        &["--pid", "1", "-d", "1e20"],
        &["--pid", "1", "-d", "18446744073709551615"],
        &["--pid", "1", "--go-layout", "banana"],
    ] {
        let (code, stderr) = goprobe_fails(&env, args, None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The message names the flag and the way out.
    for (args, want) in [
        (&["--pid", "1", "-d", "1e300"][..], "--duration"),
        (&["--pid", "1", "-d", "1e300"][..], "leave --duration out"),
        (&["--pid", "1", "--go-layout", "banana"], "--go-layout"),
        (&[], "--pid"),
    ] {
        let (code, stderr) = goprobe_fails(&env, args, None);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?} should name {want:?}: {stderr}"
        );
    }
}

/// A zombie is an exited process, not a kernel thread; pid 1 as root is one message.
#[test]
fn zombie_and_unreachable_pids() {
    let env = env();
    // An exited child this test does not reap until goprobe has looked at it.
    let mut child = std::process::Command::new("/bin/true")
        .spawn()
        .expect("true starts");
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z ")
    {
        assert!(std::time::Instant::now() < deadline, "no zombie");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (code, stderr) = goprobe_fails(&env, &["--pid", &pid.to_string()], None);
    let _ = child.wait();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("already exited") && !stderr.contains("kernel thread"),
        "{stderr}"
    );
    // Kernel thread: kthreadd is pid 2 in the host's pid namespace.
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|comm| comm.trim() == "kthreadd") {
        let (code, stderr) = goprobe_fails(&env, &["--pid", "2"], None);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("kernel thread"), "{stderr}");
    }
    // Whatever pid 1 is here, goprobe says why once.
    let (code, stderr) = goprobe_fails(&env, &["--pid", "1"], None);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.matches("goprobe: error").count(),
        1,
        "one error message for --pid 1: {stderr}"
    );
    if stderr.contains("os error") {
        assert_eq!(
            stderr.matches("os error").count(),
            1,
            "the cause said once: {stderr}"
        );
    }
}

#[test]
fn without_privileges() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    let fixture = fixture.to_str().unwrap();
    // An unprivileged user: no capabilities at all.
    let (code, stderr) = goprobe_fails(
        &env,
        &["--", fixture],
        Some(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
}

#[test]
fn tracefs_missing_and_not_mountable() {
    let env = env();
    let fixture = env.fixture(env.newest(), "default", "spinner");
    // A private mount namespace without tracefs, and no CAP_SYS_ADMIN to mount it.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; \
         exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin {} -- {}",
        env.goprobe.display(),
        fixture.display()
    );
    let (code, stderr) = goprobe_fails(
        &env,
        &[],
        Some(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "--",
        ]),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tracefs is not mounted") && stderr.contains("mount -t tracefs"),
        "{stderr}"
    );
}

/// A Go release older than goprobe supports: the version string patched to 1.20.
#[test]
fn go_too_old() {
    let env = env();
    let release = env.newest();
    let path = temp_path("old-go");
    old_go_copy(&env.fixture(release, "default", "spinner"), release, &path);
    let (code, stderr) = goprobe_fails(&env, &["--", path.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("goprobe supports Go 1.21 and newer"),
        "{stderr}"
    );
}

/// A runtime function missing from the binary (here: renamed in its symbol tables, the
/// code untouched): goprobe says which link goes unobserved and traces the rest.
#[test]
fn missing_probe_function_is_reported_and_the_rest_traced() {
    let env = env();
    let release = env.newest();
    let original = std::fs::read(env.fixture(release, "default", "spinner")).unwrap();
    let patched = replace_all(
        &original,
        b"runtime.preemptPark\0",
        b"runtime.preemptPxrk\0",
    );
    assert_ne!(patched, original, "symbol name found");
    let path = temp_path("renamed");
    std::fs::write(&path, patched).unwrap();
    make_executable(&path);
    let traced = trace_command(
        &env,
        &[],
        &path,
        &["-workers", "2", "-procs", "1", "-duration", "1s"],
        &[],
    );
    let _ = std::fs::remove_file(&path);
    assert!(
        traced.stderr.contains("runtime.preemptPark")
            && traced.stderr.contains("off CPU link (goroutine parked")
            && traced.stderr.contains("is not observed"),
        "{}",
        traced.stderr
    );
    assert!(traced.count("async_preempt") > 0, "the rest is traced");
}

/// A Go release newer than goprobe knows, without DWARF: the nearest known layout is
/// assumed with a warning, goroutine ids still come out right, and --go-layout overrides.
#[test]
fn newer_release_assumes_the_nearest_layout() {
    let env = env();
    let release = env.newest();
    let original = std::fs::read(env.fixture(release, "stripped", "spinner")).unwrap();
    let from = format!("go{release}");
    let to = format!("go1.99.{}", "0".repeat(from.len() - "go1.99.".len()));
    let patched = replace_all(&original, from.as_bytes(), to.as_bytes());
    let path = temp_path("newer-go");
    std::fs::write(&path, patched).unwrap();
    make_executable(&path);
    let args = ["-workers", "2", "-procs", "1", "-duration", "1s"];
    let traced = trace_command(&env, &[], &path, &args, &[]);
    assert!(
        traced
            .stderr
            .contains("newer than every release goprobe knows")
            && traced.stderr.contains("--go-layout"),
        "{}",
        traced.stderr
    );
    let workers: Vec<u64> = traced.fixture()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["goid"].as_u64().unwrap())
        .collect();
    let preempted = traced.async_preempted_in_window();
    assert!(!preempted.is_empty());
    assert!(
        preempted.iter().all(|g| workers.contains(g)),
        "{preempted:?} vs {workers:?}"
    );
    let minor = release.split('.').nth(1).unwrap();
    let layout = format!("1.{minor}");
    let overridden = trace_command(&env, &["--go-layout", &layout], &path, &args, &[]);
    let _ = std::fs::remove_file(&path);
    assert!(
        !overridden.stderr.contains("newer than every release"),
        "{}",
        overridden.stderr
    );
}

/// Only linux/amd64 programs: an AArch64 ELF and a binary built for another GOOS are
/// refused up front (the plan would decode x86 from ARM code, or hook another runtime).
#[test]
fn other_platforms_are_refused() {
    let env = env();
    let original = std::fs::read(env.fixture(env.newest(), "default", "spinner")).unwrap();

    let mut arm = original.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes()); // e_machine = EM_AARCH64
    let path = temp_path("aarch64");
    std::fs::write(&path, arm).unwrap();
    make_executable(&path);
    let (code, stderr) =
        goprobe_fails(&env, &["--list-probes", "--", path.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not an x86-64 program"), "{stderr}");

    let other_os = replace_all(&original, b"GOOS=linux", b"GOOS=plan9");
    assert_ne!(other_os, original, "GOOS setting found");
    let path = temp_path("plan9");
    std::fs::write(&path, other_os).unwrap();
    make_executable(&path);
    let (code, stderr) =
        goprobe_fails(&env, &["--list-probes", "--", path.to_str().unwrap()], None);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("GOOS=plan9"), "{stderr}");
}

/// What does not trace several processes yet says so, by flag, before attaching.
#[test]
fn single_process_outputs_refuse_several_processes() {
    let env = env();
    for (flag, args) in [
        ("--perfetto", &["--all", "--perfetto", "/dev/null"][..]),
        ("--perfetto", &["--pid", "1,2", "--perfetto", "/dev/null"]),
    ] {
        let (code, stderr) = goprobe_fails(&env, args, None);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} traces one process for now")),
            "{args:?}: {stderr}"
        );
    }
}
