//! Least privilege: the exact Linux capabilities with which a non-root user runs goprobe,
//! each one shown necessary by taking it away.
//!
//! Measured on 6.18 with `kernel.perf_event_paranoid = 2` and
//! `kernel.unprivileged_bpf_disabled = 2`; neither sysctl changes the set (the BPF program
//! types goprobe loads need CAP_BPF and CAP_PERFMON whatever their values):
//!
//! - `-- CMD` (or `--pid` of a process of the same user): CAP_BPF, CAP_PERFMON,
//!   CAP_DAC_READ_SEARCH (tracefs is mode 0700 and root's: goprobe reads event ids and
//!   formats there; CAP_DAC_OVERRIDE would do too but grants writes).
//! - `--pid` of another user's process: those three and CAP_SYS_PTRACE (/proc/PID/exe).
//!
//! CAP_SYS_ADMIN is only needed when tracefs is not mounted (goprobe mounts it), and on
//! kernels with Debian's `kernel.perf_event_paranoid = 3` (its kernels' default), which
//! refuse `perf_event_open` to all but CAP_SYS_ADMIN. There (measured in Debian 12's 6.1
//! under `cargo xtask kernels`) it stands in for CAP_BPF and CAP_PERFMON, as the kernel's
//! bpf_capable() and perfmon_capable() allow, and the tests take it instead of those two.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use goprobe_integration::{
    Env, env, fixture_result, goprobe_fails, perf_event_needs_sys_admin, split_output, temp_path,
    wait_timeout,
};

/// `nobody`: an unprivileged user that owns nothing on the host.
const NOBODY: u32 = 65534;

/// `-- CMD`: the target runs as the same user.
const COMMAND_CAPS: &[&str] = &["bpf", "perfmon", "dac_read_search"];

/// `--pid` of a process of another user (root).
const FOREIGN_PID_CAPS: &[&str] = &["bpf", "perfmon", "dac_read_search", "sys_ptrace"];

/// The set for this kernel: under `perf_event_paranoid` 3, CAP_SYS_ADMIN in place of
/// CAP_BPF and CAP_PERFMON.
fn for_this_kernel(caps: &[&'static str]) -> Vec<&'static str> {
    if !perf_event_needs_sys_admin() {
        return caps.to_vec();
    }
    std::iter::once("sys_admin")
        .chain(
            caps.iter()
                .copied()
                .filter(|cap| !matches!(*cap, "bpf" | "perfmon")),
        )
        .collect()
}

/// Without each capability: where it fails, and what goprobe's message must name.
/// CAP_BPF and CAP_PERFMON are caught by goprobe's own check before any syscall; past it,
/// the kernel refuses `bpf(BPF_MAP_CREATE)` (the first map, EPERM) without CAP_BPF and
/// `bpf(BPF_PROG_LOAD)` of the uprobe program (BPF_PROG_TYPE_KPROBE, EPERM) without
/// CAP_PERFMON.
fn expected_message(cap: &str) -> &'static str {
    match cap {
        "bpf" => "(missing: CAP_BPF)",
        "perfmon" => "(missing: CAP_PERFMON)",
        // statx("/sys/kernel/tracing/events") = EACCES.
        "dac_read_search" => "goprobe needs CAP_DAC_READ_SEARCH",
        // readlink("/proc/PID/exe") = EACCES (ptrace access check).
        "sys_ptrace" => "goprobe needs root, or CAP_SYS_PTRACE",
        // Under perf_event_paranoid 3: perf_event_open = EACCES.
        "sys_admin" => "kernel.perf_event_paranoid is",
        other => panic!("no expected message for CAP_{other}"),
    }
}

/// Fails loudly, never skips, when util-linux's setpriv is missing.
fn require_setpriv() {
    let output = Command::new("setpriv")
        .arg("--version")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "setpriv (util-linux) is needed to run goprobe as an unprivileged user, and \
                 cannot be started: {err}"
            )
        });
    assert!(
        output.status.success(),
        "setpriv --version failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `setpriv` arguments running a program as `nobody` with exactly `caps` (effective,
/// permitted, inheritable, ambient and bounding), no supplementary groups.
fn as_nobody(caps: &[&str]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|cap| format!("+{cap}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".to_string(),
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".to_string(),
    ]
}

/// `caps` without `cap`.
fn without<'a>(caps: &[&'a str], cap: &str) -> Vec<&'a str> {
    caps.iter().copied().filter(|c| *c != cap).collect()
}

/// A fresh world-writable directory holding copies of goprobe and the fixture (mode 0755),
/// so that `nobody` reaches them wherever the checkout lives and can write the output.
struct Sandbox {
    dir: PathBuf,
    env: Env,
    fixture: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        require_setpriv();
        let env = env();
        let dir = temp_path("privileges");
        fs::create_dir(&dir).unwrap_or_else(|err| panic!("mkdir {}: {err}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod 0777");
        let copy = |from: &Path, name: &str| {
            let to = dir.join(name);
            fs::copy(from, &to)
                .unwrap_or_else(|err| panic!("copy {} to {}: {err}", from.display(), to.display()));
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
            to
        };
        let goprobe = copy(&env.goprobe, "goprobe");
        let fixture = copy(&env.fixture(env.newest(), "default", "spinner"), "spinner");
        Sandbox {
            env: Env {
                goprobe,
                fixtures: env.fixtures,
                releases: env.releases,
            },
            dir,
            fixture,
        }
    }

    fn fixture(&self) -> &str {
        self.fixture.to_str().expect("UTF-8 temp path")
    }

    /// Runs goprobe as `nobody` with `caps`, `--json -o FILE`; asserts it succeeded and
    /// returns the summary and the fixture's stdout.
    fn trace(&self, caps: &[&str], args: &[&str]) -> (serde_json::Value, String) {
        let out = self.dir.join("trace.jsonl");
        let wrap = as_nobody(caps);
        let output = Command::new(&wrap[0])
            .args(&wrap[1..])
            .arg(&self.env.goprobe)
            .args(["--json", "-o"])
            .arg(&out)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("setpriv starts");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "goprobe as uid {NOBODY} with {caps:?} failed: {}\nstderr:\n{stderr}\nstdout:\n{stdout}",
            output.status
        );
        let owner = fs::metadata(&out)
            .unwrap_or_else(|err| panic!("no output {}: {err}\nstderr:\n{stderr}", out.display()))
            .uid();
        assert_eq!(owner, NOBODY, "goprobe really ran as uid {NOBODY}");
        let (_, _, summary) = split_output(&out);
        assert!(
            summary["preemptions"]["async"].as_u64().unwrap_or(0) > 0,
            "no async preemptions observed with {caps:?}: {summary}\nstderr:\n{stderr}"
        );
        assert_eq!(summary["lost_total"], 0, "{summary}");
        (summary, stdout)
    }

    /// Takes each capability of `caps` away in turn: goprobe must fail with exit code 1,
    /// no panic, with a message naming the capability.
    fn each_cap_needed(&self, caps: &[&str], args: &[&str]) {
        for cap in caps {
            let fewer = without(caps, cap);
            let wrap = as_nobody(&fewer);
            let wrap: Vec<&str> = wrap.iter().map(String::as_str).collect();
            let (code, stderr) = goprobe_fails(&self.env, args, Some(&wrap));
            assert!(
                !stderr.starts_with("setpriv:"),
                "setpriv itself failed, not goprobe: {stderr}"
            );
            assert_eq!(
                code,
                1,
                "without CAP_{} goprobe must fail with exit code 1; it printed:\n{stderr}",
                cap.to_uppercase(),
            );
            assert!(
                stderr.contains(expected_message(cap)),
                "without CAP_{} the message must name it ({:?}); it printed:\n{stderr}",
                cap.to_uppercase(),
                expected_message(cap)
            );
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `-- CMD` as `nobody` with CAP_BPF + CAP_PERFMON + CAP_DAC_READ_SEARCH: a full trace;
/// without any one of them goprobe exits 1 naming it.
#[test]
fn minimal_capabilities_trace_a_command() {
    let sandbox = Sandbox::new();
    let fixture = sandbox.fixture();
    let command = [
        "--",
        fixture,
        "-workers",
        "2",
        "-procs",
        "1",
        "-duration",
        "2s",
    ];
    let caps = for_this_kernel(COMMAND_CAPS);
    let (summary, stdout) = sandbox.trace(&caps, &command);
    let result = fixture_result(&stdout)
        .unwrap_or_else(|| panic!("the fixture printed no result line:\n{stdout}"));
    assert_eq!(summary["pid"], result["pid"], "{summary}");
    sandbox.each_cap_needed(&caps, &command);
}

/// `--pid` of root's process as `nobody`: CAP_SYS_PTRACE on top of the three above.
#[test]
fn minimal_capabilities_trace_another_users_process() {
    let sandbox = Sandbox::new();
    // Started by this (root) test process, so owned by root.
    let mut target = Command::new(&sandbox.fixture)
        .args(["-workers", "2", "-procs", "1", "-duration", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("fixture starts");
    let pid = target.id().to_string();
    let args = ["--pid", pid.as_str(), "-d", "2"];
    let outcome = std::panic::catch_unwind(|| {
        let caps = for_this_kernel(FOREIGN_PID_CAPS);
        sandbox.trace(&caps, &args);
        sandbox.each_cap_needed(&caps, &args);
    });
    let alive = target.try_wait().expect("wait").is_none();
    let _ = target.kill();
    wait_timeout(&mut target, Duration::from_secs(10));
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(alive, "the traced root process survived being traced");
}

/// `goprobe verify` (the host check) as `nobody`: the privileges line lists what is held
/// and what is lacking, each exactly as setpriv set it; without CAP_PERFMON it fails
/// naming it.
#[test]
fn verify_lists_capabilities_held_and_lacking() {
    let sandbox = Sandbox::new();
    let privileges = |caps: &[&str]| {
        let wrap = as_nobody(caps);
        let output = Command::new(&wrap[0])
            .args(&wrap[1..])
            .arg(&sandbox.env.goprobe)
            .args(["verify", "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("setpriv starts");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
            panic!(
                "not one JSON object ({err}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        let check = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "privileges")
            .cloned()
            .unwrap_or_else(|| panic!("no privileges check: {report}"));
        (output.status.code(), check)
    };
    let (_, check) = privileges(COMMAND_CAPS);
    assert_eq!(check["status"], "pass", "{check}");
    let found = check["found"].as_str().unwrap();
    assert!(found.starts_with(&format!("uid {NOBODY}; ")), "{found}");
    assert!(
        found.contains("holds CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH; lacks CAP_SYS_PTRACE"),
        "{found}"
    );
    assert!(
        found.contains("CAP_SYS_ADMIN (to mount tracefs, and under perf_event_paranoid 3)"),
        "{found}"
    );

    let (code, check) = privileges(&without(COMMAND_CAPS, "perfmon"));
    assert_eq!(check["status"], "fail", "{check}");
    assert_eq!(code, Some(4), "{check}");
    let found = check["found"].as_str().unwrap();
    assert!(found.contains("lacks CAP_PERFMON (always)"), "{found}");
    assert!(found.contains("(missing: CAP_PERFMON)"), "{found}");
}
