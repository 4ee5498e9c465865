//! `goprobe verify`: does asynchronous preemption work in this process, or on this host,
//! and if not, why. A verdict a script can act on (PASS, WARN, FAIL and an exit code),
//! one line per check with the facts it rests on and the fix.
//!
//! - `goprobe verify --pid PID` / `goprobe verify -- CMD`: traces the target for a few
//!   seconds (the normal session, output discarded) and judges what `/proc` says of it
//!   and what the chain showed ([`target`]).
//! - `goprobe verify` alone: the host's kernel, privileges and tracing features, then,
//!   where the workload shipped beside goprobe exists, the same target verdict on it
//!   ([`host`]).

mod host;
mod target;

use std::{num::NonZeroU32, path::PathBuf};

use clap::Parser;
use serde::Serialize;

/// Exit status of a PASS.
pub const EXIT_PASS: i32 = 0;
/// Exit status of a WARN: nothing failed, but the evidence is incomplete.
pub const EXIT_WARN: i32 = 3;
/// Exit status of a FAIL. (1 stays a runtime error, 2 a usage error.)
pub const EXIT_FAIL: i32 = 4;

/// Verify that the Go runtime can preempt goroutines asynchronously: in a process
/// (`--pid`, `-- CMD`), or on this host (no target).
///
/// Exit status: 0 PASS, 3 WARN, 4 FAIL, 1 runtime error, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "goprobe verify", version)]
pub struct VerifyCli {
    /// Process id of the Go program to verify.
    #[arg(short, long, value_name = "PID", conflicts_with = "command")]
    pub pid: Option<NonZeroU32>,
    /// How long to observe the target.
    #[arg(short, long, value_name = "SECS", default_value = "3")]
    pub duration: String,
    /// The result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// A command to start and verify (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A fact, judged neither way.
    Info,
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Info => "INFO",
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Short and stable: what a script matches on (`asyncpreemptoff`, `tgkill`, ...).
    pub name: &'static str,
    pub status: Status,
    /// The observed facts.
    pub found: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, found: impl Into<String>) -> Check {
        Check {
            name,
            status,
            found: found.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Everything verify found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// What was verified: "host", or "pid N (binary, go1.x)".
    pub subject: String,
    pub verdict: Status,
    /// The first check with the verdict's status: the named cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(subject: String, checks: Vec<Check>) -> Report {
        let verdict = checks
            .iter()
            .map(|c| c.status)
            .filter(|s| *s != Status::Info)
            .max()
            .unwrap_or(Status::Warn);
        let cause = (verdict != Status::Pass)
            .then(|| checks.iter().find(|c| c.status == verdict).map(|c| c.name))
            .flatten();
        Report {
            subject,
            verdict,
            cause,
            checks,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            Status::Pass => EXIT_PASS,
            Status::Fail => EXIT_FAIL,
            Status::Warn | Status::Info => EXIT_WARN,
        }
    }

    fn render_text(&self) -> String {
        let mut out = format!("goprobe verify: {}\n", self.subject);
        for check in &self.checks {
            out += &format!(
                "  {:<4}  {:<16} {}\n",
                check.status.label(),
                check.name,
                check.found
            );
            if let Some(fix) = &check.fix {
                out += &format!("        {:<16} fix: {fix}\n", "");
            }
        }
        out += &format!("verdict: {}", self.verdict.label());
        if let Some(cause) = self.cause {
            out += &format!(" ({cause})");
        }
        out += "\n";
        out
    }
}

/// `goprobe verify ...`: `args` are the words after `verify`. Returns the exit code.
pub async fn run(args: VerifyCli) -> anyhow::Result<i32> {
    let report = match (args.pid, args.command.is_empty()) {
        (None, true) => host::verify(&args).await?,
        _ => target::verify(&args, target::Target::from_args(&args)).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(report.exit_code())
}

/// The workload shipped beside the goprobe binary (built by `cargo xtask`): a Go program
/// with goroutines that only asynchronous preemption can stop.
fn shipped_workload() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.join("goprobe-workload");
    path.is_file().then_some(path)
}
