//! The verdict on one process: its release and layout, its configuration and signal
//! state from `/proc`, and what the preemption chain showed while it was traced.

use clap::Parser as _;
use tracer_common::EventKind;

use super::{Check, Report, Status, VerifyCli};
use crate::{
    cli::Cli,
    correlate::{Hop, Outcome, Requester},
    histogram::human_ns,
    summary::Summary,
    target::ProcessFacts,
};

/// What to verify.
pub enum Target {
    Pid(u32),
    Command(Vec<String>),
}

impl Target {
    pub fn from_args(args: &VerifyCli) -> Target {
        match args.pid {
            Some(pid) => Target::Pid(pid.get()),
            None => Target::Command(args.command.clone()),
        }
    }
}

/// Traces the target for `--duration` (all output discarded) and judges it.
pub async fn verify(args: &VerifyCli, target: Target) -> anyhow::Result<Report> {
    // `exit`: a refused tgkill's errno tells seccomp (EPERM) from a thread that exited.
    let mut argv: Vec<String> = [
        "goprobe",
        "-q",
        "--syscall-hooks",
        "exit",
        "-o",
        "/dev/null",
        "-d",
    ]
    .map(String::from)
    .into();
    argv.push(args.duration.clone());
    match &target {
        Target::Pid(pid) => argv.extend(["--pid".to_string(), pid.to_string()]),
        Target::Command(command) => {
            argv.push("--".into());
            argv.extend(command.iter().cloned());
        }
    }
    // The tracing CLI's own checks (duration, pid) apply; a usage error exits 2.
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|err| err.exit());
    let finished = crate::run::session(cli).await?;
    let summary = finished
        .summaries
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("tracing ended without a summary"))?;
    Ok(judge(&summary))
}

/// Every check on a traced process, from its summary.
pub fn judge(s: &Summary) -> Report {
    let run = &s.run;
    let subject = format!(
        "pid {} ({}, {}), observed {:.1} s",
        run.pid,
        run.binary,
        run.go_version,
        run.duration_ns as f64 / 1e9
    );
    let mut checks = vec![release(s)];
    let facts = run.process.clone();
    let async_off = facts
        .as_ref()
        .is_some_and(ProcessFacts::async_preemption_off);
    checks.push(configuration(facts.as_ref(), async_off));
    if let Some(facts) = &facts {
        checks.push(sigurg(facts));
        checks.push(seccomp(facts));
    } else {
        checks.push(Check::new(
            "process",
            Status::Warn,
            "the process had exited before its /proc facts could be read",
        ));
    }
    checks.extend(behaviour(s, facts.as_ref(), async_off));
    Report::new(subject, checks)
}

fn release(s: &Summary) -> Check {
    let probes = &s.run.probes;
    let attached = probes.iter().filter(|p| p.attached).count();
    let failed: Vec<&str> = probes
        .iter()
        .filter(|p| p.status.starts_with("failed"))
        .map(|p| p.link)
        .collect();
    let found = format!(
        "{}: supported; {attached} probes attached",
        s.run.go_version
    );
    if failed.is_empty() {
        Check::new("go release", Status::Pass, found)
    } else {
        Check::new(
            "go release",
            Status::Warn,
            format!("{found}; failed: {}", failed.join(", ")),
        )
        .fix("run goprobe --list-probes on the binary to see why")
    }
}

fn configuration(facts: Option<&ProcessFacts>, async_off: bool) -> Check {
    let godebug = facts.and_then(|f| f.godebug.as_deref()).unwrap_or("unset");
    let procs = facts
        .and_then(|f| f.gomaxprocs.as_deref())
        .unwrap_or("unset (one per CPU)");
    let found = format!("GODEBUG {godebug}; GOMAXPROCS {procs}");
    if async_off {
        Check::new(
            "asyncpreemptoff",
            Status::Fail,
            format!(
                "{found}: asynchronous preemption is off by configuration (sysmon still asks; \
                 only function prologues stop a goroutine, and a SIGURG from outside still \
                 preempts, go#38531)"
            ),
        )
        .fix("remove asyncpreemptoff=1 from the program's GODEBUG")
    } else {
        Check::new("configuration", Status::Pass, found)
    }
}

fn sigurg(facts: &ProcessFacts) -> Check {
    let blocked = facts.sigurg_blocked.len() as u32;
    let mut found = format!(
        "SIGURG caught {}, ignored {}, blocked in {blocked} of {} threads",
        facts.sigurg_caught, facts.sigurg_ignored, facts.threads
    );
    if blocked > 0 {
        let threads: Vec<String> = facts
            .sigurg_blocked
            .iter()
            .take(8)
            .map(|t| format!("tid {} ({})", t.tid, t.name))
            .collect();
        let more = if blocked > 8 { ", …" } else { "" };
        found += &format!(" ({}{more})", threads.join(", "));
    }
    if facts.sigurg_ignored || !facts.sigurg_caught {
        Check::new(
            "sigurg",
            Status::Fail,
            found + ": the runtime's handler is not in place",
        )
        .fix("do not ignore or reset SIGURG (signal.Ignore, a parent's SIG_IGN, cgo code)")
    } else if facts.threads > 0 && blocked == facts.threads {
        Check::new("sigurg", Status::Fail, found + ": no thread can receive it")
            .fix("unblock SIGURG (a cgo library or the parent's signal mask blocks it)")
    } else if blocked > 0 {
        Check::new(
            "sigurg",
            Status::Warn,
            found
                + ": a goroutine running on such a thread is never preempted asynchronously \
                   (the signal stays pending, and the runtime sends that thread no other)",
        )
        .fix(
            "unblock SIGURG on those threads (pthread_sigmask or sigprocmask in cgo code, or \
             on a thread locked with runtime.LockOSThread)",
        )
    } else {
        Check::new("sigurg", Status::Pass, found)
    }
}

fn seccomp(facts: &ProcessFacts) -> Check {
    let mode = match facts.seccomp {
        Some(0) => "none",
        Some(1) => "strict",
        Some(2) => "filter",
        _ => "unknown",
    };
    Check::new("seccomp", Status::Info, format!("seccomp mode {mode}"))
}

/// Requests (retries included) with no signal at all that mean preemption is stuck.
const STUCK_REQUESTS: u64 = 10;

/// Requests, signals and outcomes seen while tracing.
fn behaviour(s: &Summary, facts: Option<&ProcessFacts>, async_off: bool) -> Vec<Check> {
    let n = |kind| s.received.get(kind);
    let asked = |requester| {
        s.outcomes
            .iter()
            .filter(|((r, o), _)| *r == requester && *o != Outcome::NoTarget)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let (sysmon, stw, gc) = (
        asked(Requester::Sysmon),
        asked(Requester::StopTheWorld),
        asked(Requester::Gc),
    );
    let requests = sysmon + stw + gc;
    let signal_m = n(EventKind::SignalM) + n(EventKind::PreemptM);
    let (tgkill, delivered, handled) = (
        n(EventKind::Tgkill),
        n(EventKind::SignalDeliver),
        n(EventKind::DoSigPreempt),
    );
    let asyncs = s.preemptions.async_reschedule + s.preemptions.async_park;
    let cooperative = s.preemptions.cooperative();
    let refused: u64 = s.refusals.values().sum();
    let mut checks = vec![Check::new(
        "requests",
        if requests > 0 {
            Status::Pass
        } else {
            Status::Warn
        },
        format!("{requests} attempts to preempt (sysmon {sysmon}, stop-the-world {stw}, GC {gc})"),
    )];
    if requests == 0 {
        checks[0].found += ": nothing ran long enough to be asked to stop";
        checks[0].fix = Some(
            "verify under load (goprobe verify -- CMD with a CPU-bound workload), or run \
             `goprobe verify` alone for the host check"
                .into(),
        );
    }
    let failed = if s.tgkill_failures.is_empty() {
        String::new()
    } else {
        format!(" (failed: {})", s.tgkill_failure_counts())
    };
    let signals = format!(
        "SIGURG: signalM {signal_m}, tgkill {tgkill}{failed}, delivered {delivered}, \
         handled {handled}"
    );
    let seccomp_filter = facts.is_some_and(|f| f.seccomp == Some(2));
    // ESRCH is a thread that exited between the runtime's choice and the call: benign.
    let denied: u64 = s
        .tgkill_failures
        .iter()
        .filter(|(errno, _)| **errno != libc::ESRCH as u32)
        .map(|(_, n)| n)
        .sum();
    // sysmon asks every 10 ms; the runtime sends one SIGURG per M until its handler runs
    // (m.signalPending), so a signal that never arrives shows as requests repeated with
    // no signal at all, or signalM with no tgkill.
    let raw_requests = n(EventKind::PreemptOne);
    let stuck = !async_off && tgkill == 0 && (signal_m > 0 || raw_requests >= STUCK_REQUESTS);
    checks.push(if denied > 0 {
        let cause = match (
            s.tgkill_failures.contains_key(&(libc::EPERM as u32)),
            seccomp_filter,
        ) {
            (true, true) => "the process's seccomp filter (Seccomp: 2) denies tgkill with EPERM",
            (true, false) => "EPERM without a seccomp filter: an LSM (SELinux, AppArmor) denies it",
            _ => "the kernel refused it",
        };
        Check::new(
            "tgkill",
            Status::Fail,
            format!(
                "{signals}: the runtime's SIGURG was refused: {cause}; the runtime then \
                 believes a signal is pending and sends that thread no other, so its tight \
                 loops are never preempted (and can hang GC and main)"
            ),
        )
        .fix("allow tgkill (and rt_sigreturn) in the seccomp profile")
    } else if stuck {
        let cause = if seccomp_filter {
            "a seccomp filter (Seccomp: 2) most likely denies tgkill"
        } else {
            "tgkill never entered the kernel"
        };
        Check::new(
            "tgkill",
            Status::Fail,
            format!(
                "{signals}, {raw_requests} requests: no SIGURG reached the kernel: {cause}; \
                 the signal stays pending in the runtime, so tight loops are never \
                 preempted (and can hang GC and main)"
            ),
        )
        .fix("allow tgkill (and rt_sigreturn) in the seccomp profile")
    } else if tgkill > 0 && delivered == 0 {
        Check::new(
            "delivery",
            Status::Fail,
            format!("{signals}: sent but never delivered"),
        )
        .fix("check the threads' signal masks (SigBlk) and anything else that traps SIGURG")
    } else if async_off || signal_m == 0 {
        Check::new("signals", Status::Info, signals)
    } else {
        Check::new("signals", Status::Pass, signals)
    });
    let latency = s
        .hops
        .get(&Hop::REQUEST_TO_OFF)
        .map(|st| {
            format!(
                "; request→off p50 {} p99 {}",
                human_ns(st.p50),
                human_ns(st.p99)
            )
        })
        .unwrap_or_default();
    let longest = s
        .ran_before_request
        .stats()
        .map(|st| format!("; ran up to {} before being asked", human_ns(st.max)))
        .unwrap_or_default();
    let top = s
        .async_locations
        .first()
        .and_then(|row| row.location.as_ref())
        .map(|loc| {
            format!(
                "; most at {} ({}:{})",
                loc.function,
                short(&loc.file),
                loc.line
            )
        })
        .unwrap_or_default();
    let found = format!(
        "async {asyncs}, cooperative {cooperative}, refused {refused}{latency}{longest}{top}"
    );
    checks.push(if asyncs > 0 {
        Check::new("preemption", Status::Pass, found)
    } else if requests == 0 || async_off {
        Check::new("preemption", Status::Info, found)
    } else {
        Check::new(
            "preemption",
            Status::Warn,
            found + ": asked, but never preempted asynchronously",
        )
        .fix("trace it (goprobe --pid) to see where each attempt ended")
    });
    checks
}

fn short(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}
