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
