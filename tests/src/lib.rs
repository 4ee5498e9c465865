//! Harness for goprobe's privileged integration tests: run the real `goprobe` binary (real
//! BPF in this kernel) against real Go fixture processes and hand the tests what goprobe
//! observed next to what the fixture itself reported.
//!
//! Run through `cargo xtask test`, which builds goprobe and the fixtures and sets
//! `GOPROBE_BIN`, `GOPROBE_FIXTURES` and `GOPROBE_GO_RELEASES`. Without them, or without
//! root, every test fails with a message saying so: nothing is skipped silently.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod checks;
pub mod tracefs;

/// Where things are, from the environment `cargo xtask test` sets.
pub struct Env {
    pub goprobe: PathBuf,
    pub fixtures: PathBuf,
    /// Go releases to test, oldest first, e.g. ["1.21.13", "1.24.11", "1.27.3"].
    pub releases: Vec<String>,
}

pub fn env() -> Env {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the integration tests with `cargo xtask test`")
        })
    };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "integration tests load BPF programs and need root (cargo xtask test uses sudo -E)"
    );
    let env = Env {
        goprobe: PathBuf::from(var("GOPROBE_BIN")),
        fixtures: PathBuf::from(var("GOPROBE_FIXTURES")),
        releases: var("GOPROBE_GO_RELEASES")
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect(),
    };
    assert!(
        env.goprobe.is_file(),
        "{} does not exist",
        env.goprobe.display()
    );
    assert!(!env.releases.is_empty(), "GOPROBE_GO_RELEASES is empty");
    env
}

impl Env {
    /// Path of a built fixture; fails if it was not built.
    pub fn fixture(&self, release: &str, variant: &str, name: &str) -> PathBuf {
        let path = self.fixtures.join(release).join(variant).join(name);
        assert!(
            path.is_file(),
            "fixture {} missing: `cargo xtask fixtures --go {release}` builds it",
            path.display()
        );
        path
    }

    pub fn newest(&self) -> &str {
        self.releases.last().expect("at least one release")
    }
}

/// A unique path in the temp directory for one test's output file.
pub fn temp_path(stem: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "goprobe-test-{}-{}-{stem}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// What one goprobe run produced.
#[derive(Debug)]
pub struct Traced {
    pub events: Vec<Value>,
    /// Finished preemption attempts (`"type":"attempt"`).
    pub attempts: Vec<Value>,
    pub summary: Value,
    /// The fixture's final `{"event":"result"}` line, if it printed one.
    pub fixture: Option<Value>,
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

impl Traced {
    pub fn events_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }

    /// Events of `kind` inside the fixture's workload window (`start_ns..=end_ns` of its
    /// result): before it, start-up may run long enough on a slow or loaded machine for
    /// sysmon to preempt main itself (in flag parsing, encoding/json, ...).
    pub fn in_window<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        let fixture = self.fixture();
        let (start, end) = (u64_of(fixture, "start_ns"), u64_of(fixture, "end_ns"));
        self.events_of(kind).filter(move |e| {
            e["ts_ns"]
                .as_u64()
                .is_some_and(|ts| (start..=end).contains(&ts))
        })
    }

    /// Goroutine ids preempted asynchronously inside the fixture's window (sorted, each
    /// once), less main's preemptions of the one form the runtime gives them there. Main
    /// (g1) still runs at the window's edges (releasing the workers, calling Sleep);
    /// when its time slice began over 10 ms earlier (a slow or loaded start-up), sysmon
    /// asks it then. Allowed only as exactly that: an attempt by sysmon's retake for a
    /// slice at least 10 ms old (`ran_ns`).
    pub fn async_preempted_in_window(&self) -> Vec<u64> {
        const MAIN: u64 = 1;
        const FORCE_PREEMPT_NS: u64 = 10_000_000;
        let attempt = |id: &Value| self.attempts.iter().find(|a| a["id"] == *id);
        let mut goids: Vec<u64> = self
            .in_window("async_preempt")
            .filter(|e| {
                if e["goid"] != MAIN {
                    return true;
                }
                let found = attempt(&e["attempt"]);
                let explained = found.is_some_and(|a| {
                    a["requester"] == "sysmon"
                        && a["ran_ns"].as_u64().is_some_and(|r| r >= FORCE_PREEMPT_NS)
                });
                // Shown if the caller's check fails.
                println!("main preempted in the window ({explained}): {e} by {found:?}");
                !explained
            })
            .map(|e| u64_of(e, "goid"))
            .collect();
        goids.sort_unstable();
        goids.dedup();
        goids
    }

    pub fn count(&self, kind: &str) -> u64 {
        self.summary["events"][kind]
            .as_u64()
            .unwrap_or_else(|| panic!("summary has no count for {kind}: {}", self.summary))
    }

    pub fn fixture(&self) -> &Value {
        self.fixture.as_ref().unwrap_or_else(|| {
            panic!(
                "the fixture printed no result line\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The fixture's workers as it reported them: `(goid, iterations)` each.
    pub fn workers(&self) -> Vec<(u64, u64)> {
        self.fixture()["workers"]
            .as_array()
            .unwrap_or_else(|| panic!("the fixture reported no workers: {}", self.fixture()))
            .iter()
            .map(|w| (u64_of(w, "goid"), u64_of(w, "count")))
            .collect()
    }

    pub fn worker_goids(&self) -> Vec<u64> {
        self.workers().into_iter().map(|(goid, _)| goid).collect()
    }

    pub fn worker_counts(&self) -> Vec<u64> {
        self.workers().into_iter().map(|(_, count)| count).collect()
    }

    /// Thread ids that ran `runtime.retake`: sysmon's.
    pub fn sysmon_tids(&self) -> Vec<u64> {
        let mut tids: Vec<u64> = self
            .events_of("sysmon_tick")
            .filter_map(|e| e["tid"].as_u64())
            .collect();
        tids.sort_unstable();
        tids.dedup();
        tids
    }
}

/// A number field of a JSON object; panics naming the field and the object.
pub fn u64_of(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing or not a number in {value}"))
}

/// Parses JSON lines; panics with the offending line.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("bad JSON line {line:?}: {err}"))
        })
        .collect()
}

/// The fixture's result line among its stdout lines.
pub fn fixture_result(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|value| value["event"] == "result")
}

/// Splits goprobe's JSON output into events, attempts and the summary.
pub fn split_output(path: &Path) -> (Vec<Value>, Vec<Value>, Value) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("goprobe wrote no output to {}: {err}", path.display()));
    let _ = std::fs::remove_file(path);
    let mut lines = json_lines(&text);
    let summary = match lines.pop() {
        Some(last) if last["type"] == "summary" => last,
        other => panic!("goprobe's last line is not a summary: {other:?}"),
    };
    let (attempts, events): (Vec<Value>, Vec<Value>) = lines
        .into_iter()
        .partition(|line| line["type"] == "attempt");
    assert!(
        events.iter().all(|line| line["type"] == "event"),
        "only the last line may be a summary"
    );
    (events, attempts, summary)
}

/// `goprobe --json -o FILE [goprobe_args] -- fixture [fixture_args]` with `env` added to
/// the (inherited) environment, which the fixture inherits in turn.
pub fn trace_command(
    env: &Env,
    goprobe_args: &[&str],
    fixture: &Path,
    fixture_args: &[&str],
    fixture_env: &[(&str, &str)],
) -> Traced {
    let out = temp_path("trace.jsonl");
    let output = Command::new(&env.goprobe)
        .args(["--json", "-o"])
        .arg(&out)
        .args(goprobe_args)
        .arg("--")
        .arg(fixture)
        .args(fixture_args)
        .envs(fixture_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("goprobe starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "goprobe failed: {}\nstderr:\n{stderr}\nstdout:\n{stdout}",
        output.status
    );
    let (events, attempts, summary) = split_output(&out);
    Traced {
        events,
        attempts,
        summary,
        fixture: fixture_result(&stdout),
        stdout,
        stderr,
        status: output.status,
    }
}

/// Runs goprobe expecting failure; returns (exit code, stderr).
pub fn goprobe_fails(env: &Env, args: &[&str], wrap: Option<&[&str]>) -> (i32, String) {
    let mut cmd = match wrap {
        Some([program, rest @ ..]) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(&env.goprobe);
            cmd
        }
        _ => Command::new(&env.goprobe),
    };
    let output = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("goprobe starts");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output
        .status
        .code()
        .unwrap_or_else(|| panic!("goprobe died of a signal: {}\n{stderr}", output.status));
    assert!(
        !stderr.contains("panicked"),
        "goprobe panicked instead of reporting an error:\n{stderr}"
    );
    (code, stderr)
}

/// A child process whose stdout we read line by line.
pub struct Spawned {
    pub child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Spawned {
    pub fn start(cmd: &mut Command) -> Spawned {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {cmd:?}: {err}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line satisfying `want`.
    pub fn wait_line(&mut self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out; lines so far: {:#?}", self.seen),
            }
        }
    }

    /// The rest of stdout, after the process exits.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let status = wait_timeout(&mut self.child, timeout);
        let mut rest = self.seen;
        rest.extend(self.lines.try_iter());
        (status, rest)
    }
}

/// A child that is killed if the test panics before it is waited for (a failed test
/// must not leave a tracer or a server running).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child`, killing it (and failing) after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill with a pid we started.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

// ---------------------------------------------------------------------------------------
// Life-cycle helpers: private executables, processes, BPF objects, mapped text.

/// A private copy of an executable, deleted on drop: processes running it are found by
/// its unique path, and uprobes on it (keyed by inode) cannot meet anyone else's.
pub struct PrivateExe {
    pub path: PathBuf,
}

impl PrivateExe {
    pub fn copy_of(original: &Path, stem: &str) -> PrivateExe {
        let path = temp_path(stem);
        std::fs::copy(original, &path).unwrap_or_else(|err| {
            panic!(
                "copying {} to {}: {err}",
                original.display(),
                path.display()
            )
        });
        PrivateExe { path }
    }
}

impl Drop for PrivateExe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads `reader` line by line on a thread; the lines arrive on the returned channel.
pub fn read_lines(
    reader: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Pids in /proc, numerically.
pub fn all_pids() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Writes to `to` a copy of the Go binary `original` (built by Go `release`) whose version
/// strings say Go 1.20: a release older than goprobe supports, still a working program.
pub fn old_go_copy(original: &Path, release: &str, to: &Path) {
    let original = std::fs::read(original).unwrap();
    let from = format!("go{release}");
    let old = format!("go1.20.{}", "9".repeat(from.len() - "go1.20.".len()));
    assert_eq!(from.len(), old.len());
    let patched = replace_all(&original, from.as_bytes(), old.as_bytes());
    assert_ne!(patched, original, "version string found");
    std::fs::write(to, patched).unwrap();
    make_executable(to);
}

/// `haystack` with every `from` replaced by `to` (of the same length).
pub fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = haystack.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

pub fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// One process's part of a multi-process goprobe JSON output: its events, attempts and
/// summary (by `pid`), with the fixture's stdout.
pub fn process_part(lines: &[Value], pid: u32, stdout: &str, status: ExitStatus) -> Traced {
    let mine = |line: &&Value| line["pid"].as_u64() == Some(u64::from(pid));
    let of_type = |ty: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|line| line["type"] == ty && mine(line))
            .cloned()
            .collect()
    };
    Traced {
        events: of_type("event"),
        attempts: of_type("attempt"),
        summary: of_type("summary")
            .pop()
            .unwrap_or_else(|| panic!("no summary for pid {pid}")),
        fixture: fixture_result(stdout),
        stdout: stdout.to_string(),
        stderr: String::new(),
        status,
    }
}

/// A spinner fixture started with `args`, waiting for SIGUSR1 after its ready line;
/// `in_namespace`: under `unshare` in a pid namespace of its own. With its host pid.
pub fn waiting_spinner(exe: &Path, args: &[&str], in_namespace: bool) -> (Spawned, u32) {
    let mut command = if in_namespace {
        let mut command = Command::new("unshare");
        command.args(["--fork", "--pid", "--mount-proc"]).arg(exe);
        command
    } else {
        Command::new(exe)
    };
    command.args(args).env("GOPROBE_FIXTURE_TRIGGER", "signal");
    let mut spawned = Spawned::start(&mut command);
    let ready: Value = serde_json::from_str(
        &spawned.wait_line(Duration::from_secs(20), |line| line.contains("\"ready\"")),
    )
    .unwrap();
    let pid = if in_namespace {
        assert_eq!(ready["pid"], 1, "pid 1 of its namespace: {ready}");
        child_of(spawned.child.id()).expect("unshare's child")
    } else {
        spawned.child.id()
    };
    (spawned, pid)
}

/// goprobe started with `args` (stdin and stdout null), and its stderr lines as they come.
pub fn goprobe_with_stderr<S: AsRef<std::ffi::OsStr>>(
    env: &Env,
    args: &[S],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut goprobe = Command::new(&env.goprobe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("goprobe starts");
    let stderr = read_lines(goprobe.stderr.take().expect("piped stderr"));
    (goprobe, stderr)
}

/// A child of `parent` (unshare's forked child is its pid namespace's pid 1).
pub fn child_of(parent: u32) -> Option<u32> {
    all_pids().into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            status
                .lines()
                .any(|line| line.strip_prefix("PPid:").map(str::trim) == Some(&parent.to_string()))
        })
    })
}

/// Live (non-zombie) processes whose executable is `exe` or whose command line names it,
/// as `(pid, command line)`: a command exec'd from `exe`, a forked child of a tool that
/// was given `exe` as an argument (before its exec) and the tool itself.
pub fn processes_of(exe: &Path) -> Vec<(u32, String)> {
    let wanted = exe.as_os_str().as_encoded_bytes();
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let cmdline = std::fs::read(proc.join("cmdline")).ok()?;
            let by_exe = std::fs::read_link(proc.join("exe")).is_ok_and(|path| path == exe);
            let by_arg = cmdline.split(|&b| b == 0).any(|arg| arg == wanted);
            let zombie = std::fs::read_to_string(proc.join("stat"))
                .ok()
                .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')))
                .unwrap_or(true);
            (!zombie && (by_exe || by_arg)).then(|| {
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (pid, text.trim_end().to_string())
            })
        })
        .collect()
}

/// Whether `pid` is a process that has not exited (a zombie has).
pub fn is_live(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// Polls `check` every 20 ms until it returns `None` or `timeout` passes; returns the last
/// `Some` (the failure to report) and how long it took.
pub fn poll_until_none<T>(
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> (Option<T>, Duration) {
    let start = Instant::now();
    loop {
        let last = check();
        if last.is_none() || start.elapsed() > timeout {
            return (last, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kind of BPF object the kernel numbers with ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BpfKind {
    Prog,
    Map,
    Link,
}

impl BpfKind {
    pub const ALL: [BpfKind; 3] = [BpfKind::Prog, BpfKind::Map, BpfKind::Link];

    /// BPF_{PROG,MAP,LINK}_GET_NEXT_ID and BPF_{PROG,MAP,LINK}_GET_FD_BY_ID.
    fn commands(self) -> (libc::c_long, libc::c_long) {
        match self {
            BpfKind::Prog => (11, 13),
            BpfKind::Map => (12, 14),
            BpfKind::Link => (31, 30),
        }
    }

    /// The key of this kind's id in an fd's /proc fdinfo.
    fn fdinfo_key(self) -> &'static str {
        match self {
            BpfKind::Prog => "prog_id:",
            BpfKind::Map => "map_id:",
            BpfKind::Link => "link_id:",
        }
    }
}

/// `union bpf_attr` as the id commands use it.
#[repr(C)]
struct BpfIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct BpfInfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, correctly laid out prefix of `union bpf_attr` for `cmd`;
    // the kernel reads and writes at most size_of::<T>() bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Ids of every BPF object of `kind` in the system now (bpf(2) GET_NEXT_ID).
pub fn bpf_ids(kind: BpfKind) -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let mut attr = BpfIdAttr {
        id: 0,
        next_id: 0,
        open_flags: 0,
    };
    loop {
        match bpf(kind.commands().0, &mut attr) {
            Ok(_) => {
                ids.insert(attr.next_id);
                attr.id = attr.next_id;
            }
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return ids,
            Err(err) => panic!("bpf(GET_NEXT_ID, {kind:?}): {err}"),
        }
    }
}

/// The kernel's info record of one BPF object (prefix of bpf_{prog,map,link}_info), or
/// `None` when it is gone. For a program, its map ids go to `map_ids`.
fn bpf_info(kind: BpfKind, id: u32, map_ids: &mut Vec<u32>) -> Option<[u8; 128]> {
    let mut by_id = BpfIdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    let fd = bpf(kind.commands().1, &mut by_id).ok()? as i32;
    // SAFETY: a fresh fd the kernel just gave us.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut info = [0u8; 128];
    let mut maps = vec![0u32; 64];
    if kind == BpfKind::Prog {
        // nr_map_ids at 52, map_ids (a user pointer) at 56 in struct bpf_prog_info.
        info[52..56].copy_from_slice(&(maps.len() as u32).to_ne_bytes());
        info[56..64].copy_from_slice(&(maps.as_mut_ptr() as u64).to_ne_bytes());
    }
    let mut attr = BpfInfoAttr {
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd) as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(15, &mut attr).ok()?;
    if kind == BpfKind::Prog {
        let count = u32::from_ne_bytes(info[52..56].try_into().unwrap()) as usize;
        map_ids.extend(&maps[..count.min(maps.len())]);
    }
    Some(info)
}

/// A readable description of one BPF object: its name (program, map) or its program
/// (link).
pub fn bpf_describe(kind: BpfKind, id: u32) -> String {
    let Some(info) = bpf_info(kind, id, &mut Vec::new()) else {
        return format!("{kind:?} {id} (gone)");
    };
    let name = |range: std::ops::Range<usize>| {
        let bytes = &info[range];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    match kind {
        // struct bpf_prog_info: name[16] at 64; bpf_map_info: name[16] at 24;
        // bpf_link_info: type at 0, prog_id at 8.
        BpfKind::Prog => format!("prog {id} {:?}", name(64..80)),
        BpfKind::Map => format!("map {id} {:?}", name(24..40)),
        BpfKind::Link => format!(
            "link {id} (type {}, prog {})",
            u32::from_ne_bytes(info[0..4].try_into().unwrap()),
            u32::from_ne_bytes(info[8..12].try_into().unwrap())
        ),
    }
}

/// The BPF objects some live process holds: through one of its fds (a link fd also holds
/// its program) or through a program it holds (the program's maps); each with a pid.
pub fn bpf_held() -> std::collections::BTreeMap<(BpfKind, u32), u32> {
    let mut held = std::collections::BTreeMap::new();
    for pid in all_pids() {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let is_bpf = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().starts_with("anon_inode:bpf"));
            if !is_bpf {
                continue;
            }
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let Ok(text) = std::fs::read_to_string(info) else {
                continue;
            };
            for line in text.lines() {
                for kind in BpfKind::ALL {
                    if let Some(id) = line.strip_prefix(kind.fdinfo_key())
                        && let Ok(id) = id.trim().parse()
                    {
                        held.insert((kind, id), pid);
                    }
                }
            }
        }
    }
    let progs: Vec<(u32, u32)> = held
        .iter()
        .filter(|((kind, _), _)| *kind == BpfKind::Prog)
        .map(|(&(_, id), &pid)| (id, pid))
        .collect();
    for (prog, pid) in progs {
        let mut maps = Vec::new();
        bpf_info(BpfKind::Prog, prog, &mut maps);
        for map in maps {
            held.entry((BpfKind::Map, map)).or_insert(pid);
        }
    }
    held
}

/// Every BPF object in the system now, by kind.
pub type BpfSnapshot = std::collections::BTreeMap<BpfKind, std::collections::BTreeSet<u32>>;

pub fn bpf_snapshot() -> BpfSnapshot {
    BpfKind::ALL
        .into_iter()
        .map(|kind| (kind, bpf_ids(kind)))
        .collect()
}

/// BPF objects that exist now, did not exist at `baseline` and that no live process holds:
/// what a dead tracer left behind. Objects other live processes (other tools, other
/// tests) hold are theirs, not leaks.
pub fn bpf_leaked(baseline: &BpfSnapshot) -> Vec<(BpfKind, u32)> {
    let now = bpf_snapshot();
    let new: Vec<(BpfKind, u32)> = now
        .iter()
        .flat_map(|(&kind, ids)| ids.difference(&baseline[&kind]).map(move |&id| (kind, id)))
        .collect();
    if new.is_empty() {
        return new;
    }
    let held = bpf_held();
    new.into_iter()
        .filter(|object| !held.contains_key(object))
        .collect()
}

/// Bytes of `pid`'s executable mappings of `file` (`r-xp`, as /proc/PID/mem reads them)
/// that differ from the file's own bytes at the same offsets: `(address, memory, file)`.
/// A uprobe shows as 0xCC in memory. Fails if `file` has no executable mapping.
pub fn text_differences(pid: u32, file: &Path) -> Vec<(u64, u8, u8)> {
    use std::os::unix::fs::FileExt as _;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|err| panic!("/proc/{pid}/maps: {err}"));
    let contents = std::fs::read(file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|err| panic!("/proc/{pid}/mem: {err}"));
    let mut mappings = 0;
    let mut differences = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || fields[1] != "r-xp" || Path::new(fields[5]) != file {
            continue;
        }
        let (start, end) = fields[0].split_once('-').expect("maps range");
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = u64::from_str_radix(fields[2], 16).unwrap() as usize;
        let len = ((end - start) as usize).min(contents.len().saturating_sub(offset));
        let mut in_memory = vec![0u8; len];
        mem.read_exact_at(&mut in_memory, start)
            .unwrap_or_else(|err| panic!("reading /proc/{pid}/mem at {start:#x}+{len:#x}: {err}"));
        mappings += 1;
        // Page by page (a slice compare is a memcmp even unoptimised), bytes where differing.
        const PAGE: usize = 4096;
        let on_disk = &contents[offset..offset + len];
        for (page, (m, f)) in in_memory.chunks(PAGE).zip(on_disk.chunks(PAGE)).enumerate() {
            if m != f {
                differences.extend(
                    m.iter()
                        .zip(f)
                        .enumerate()
                        .filter(|(_, (m, f))| m != f)
                        .map(|(i, (&m, &f))| (start + (page * PAGE + i) as u64, m, f)),
                );
            }
        }
    }
    assert!(
        mappings > 0,
        "no r-xp mapping of {} in /proc/{pid}/maps:\n{maps}",
        file.display()
    );
    differences
}

/// Debian's `kernel.perf_event_paranoid` level 3 (its kernels' default) here: it refuses
/// `perf_event_open` to all but CAP_SYS_ADMIN.
pub fn perf_event_needs_sys_admin() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|level| level.trim().parse::<i32>().ok())
        .is_some_and(|level| level >= 3)
}
