//! The preemption chain on real Go processes, checked link by link against the fixture's
//! own account of what it did.

use std::collections::HashMap;

use goprobe_integration::{Traced, env, trace_command, u64_of};
use serde_json::Value;

const SPINNER_ARGS: [&str; 6] = ["-workers", "4", "-procs", "1", "-duration", "2s"];

/// Events sorted by time (the ring buffer keeps per-thread order; across CPUs the
/// monotonic timestamps give the global one).
fn by_time(traced: &Traced) -> Vec<&Value> {
    let mut events: Vec<&Value> = traced.events.iter().collect();
    events.sort_by_key(|e| u64_of(e, "ts_ns"));
    events
}

/// Every async preemption on thread T is preceded, on T and after T's previous one, by a
/// SIGURG delivery; every delivery by a tgkill aimed at T, from sysmon, not used by an
/// earlier delivery.
fn assert_async_follows_sysmon_signal(traced: &Traced, release: &str) {
    let sysmon = traced.sysmon_tids();
    assert_eq!(
        sysmon.len(),
        1,
        "{release}: one sysmon thread, got {sysmon:?}"
    );
    let sysmon = sysmon[0];
    let mut pending_tgkill: HashMap<u64, Vec<u64>> = HashMap::new(); // target tid → senders
    let mut delivered: HashMap<u64, bool> = HashMap::new(); // tid → delivery not yet used
    let mut checked = 0;
    for event in by_time(traced) {
        let tid = u64_of(event, "tid");
        match event["kind"].as_str() {
            Some("tgkill") => pending_tgkill
                .entry(u64_of(event, "target_tid"))
                .or_default()
                .push(tid),
            Some("signal_deliver") => {
                let sender = pending_tgkill
                    .get_mut(&tid)
                    .and_then(|senders| senders.pop());
                assert_eq!(
                    sender,
                    Some(sysmon),
                    "{release}: SIGURG delivered to tid {tid} at {} without a tgkill from \
                     sysmon (tid {sysmon}) before it",
                    event["ts_ns"]
                );
                // A coalesced signal leaves older tgkills unmatched; they cannot explain a
                // later delivery.
                pending_tgkill.remove(&tid);
                delivered.insert(tid, true);
            }
            Some("async_preempt") => {
                assert_eq!(
                    delivered.insert(tid, false),
                    Some(true),
                    "{release}: async preemption on tid {tid} at {} without its own SIGURG \
                     delivery before it",
                    event["ts_ns"]
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, traced.count("async_preempt"));
}

fn assert_nothing_lost(traced: &Traced, release: &str) {
    let summary = &traced.summary;
    assert_eq!(
        summary["lost_total"], 0,
        "{release}: lost events: {summary}"
    );
    assert_eq!(
        summary["unaccounted"], 0,
        "{release}: unaccounted: {summary}"
    );
    assert_eq!(summary["malformed"], 0, "{release}: malformed: {summary}");
}

#[test]
fn spinner_async_preemptions_follow_sysmon_sigurg() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "spinner");
        let traced = trace_command(&env, &[], &fixture, &SPINNER_ARGS, &[]);
        let asyncs = traced.count("async_preempt");
        assert!(
            asyncs >= 50,
            "{release}: only {asyncs} async preemptions in 2 s"
        );
        assert_async_follows_sysmon_signal(&traced, release);
        // signalM makes exactly one tgkill.
        assert_eq!(
            traced.count("signal_m"),
            traced.count("tgkill"),
            "{release}"
        );
        assert_nothing_lost(&traced, release);
        let counts = traced.worker_counts();
        assert_eq!(counts.len(), 4, "{release}");
        assert!(
            counts.iter().all(|&c| c > 0),
            "{release}: a worker never ran: {counts:?}"
        );
        // The goroutines preempted are exactly the workers, by the ids they report.
        let mut worker_goids = traced.worker_goids();
        worker_goids.sort_unstable();
        let mut preempted: Vec<u64> = traced
            .in_window("async_preempt")
            .map(|e| u64_of(e, "goid"))
            .collect();
        preempted.sort_unstable();
        preempted.dedup();
        assert_eq!(
            preempted, worker_goids,
            "{release}: preempted goroutine ids"
        );
        // Every asyncPreempt2 is followed, on its thread, by that goroutine's reschedule
        // or park. (Cooperative preemptions can also occur: a request pending when a
        // goroutine reaches any function prologue is served there.)
        let p = &traced.summary["preemptions"];
        assert_eq!(
            u64_of(p, "async_reschedule") + u64_of(p, "async_park"),
            asyncs,
            "{release}: {p}"
        );
    }
}

#[test]
fn spinner_with_asyncpreemptoff_gets_no_sigurg() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "spinner");
        let traced = trace_command(
            &env,
            &[],
            &fixture,
            &SPINNER_ARGS,
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        assert!(
            traced.stderr.contains("asyncpreemptoff=1"),
            "{release}: goprobe should point out that async preemption is off: {}",
            traced.stderr
        );
        assert_eq!(traced.count("async_preempt"), 0, "{release}");
        let sysmon = traced.sysmon_tids();
        let from_sysmon = traced
            .events_of("tgkill")
            .filter(|e| sysmon.contains(&u64_of(e, "tid")))
            .count();
        assert_eq!(
            from_sysmon, 0,
            "{release}: sysmon sent SIGURG with async preemption off"
        );
        // sysmon still asks (preemptone) — it just never signals.
        assert!(
            traced.count("preempt_request") > 0,
            "{release}: no preemption requests"
        );
        assert_nothing_lost(&traced, release);
        // Seed Task 4: one worker keeps the only P.
        let counts = traced.worker_counts();
        let running = counts.iter().filter(|&&c| c > 0).count();
        assert_eq!(
            running, 1,
            "{release}: expected one worker to hog the P: {counts:?}"
        );
    }
}

#[test]
fn coop_with_asyncpreemptoff_is_preempted_at_function_prologues() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "coop");
        let traced = trace_command(
            &env,
            &[],
            &fixture,
            &SPINNER_ARGS,
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        let preemptions = &traced.summary["preemptions"];
        assert_eq!(preemptions["async"], 0, "{release}: {preemptions}");
        let cooperative = preemptions["cooperative"].as_u64().unwrap();
        assert!(
            cooperative >= 50,
            "{release}: only {cooperative} cooperative preemptions"
        );
        assert_nothing_lost(&traced, release);
        // Seed Task 5: the call in the loop makes it fair again.
        let counts = traced.worker_counts();
        assert!(
            counts.iter().all(|&c| c > 0),
            "{release}: a worker never ran: {counts:?}"
        );
        // And the events agree with the summary: each cooperative reschedule is a
        // goschedImpl call (or preemptPark) on the stack-check path.
        let stack_check = traced
            .events
            .iter()
            .filter(|e| e["path"] == "stack_check")
            .count() as u64;
        assert_eq!(stack_check, cooperative, "{release}");
        // Where: the prologue of the function called in the loop (seed Task 5).
        let top = &traced.summary["top_cooperative_locations"][0]["location"];
        assert_eq!(top["function"], "main.tick", "{release}: {top}");
    }
}

/// With the newest release, every link of the chain that the binary exposes is seen at
/// least once in a workload that has sysmon, async and GC preemptions and voluntary
/// yields.
#[test]
fn demo_exercises_every_attached_link() {
    let env = env();
    let release = env.newest();
    let fixture = env.fixture(release, "default", "demo");
    let traced = trace_command(&env, &["--yields"], &fixture, &[], &[]);
    let mut seen = 0;
    for probe in traced.summary["probes"].as_array().expect("probes") {
        if probe["attached"] != true {
            continue;
        }
        let (link, target) = (
            probe["link"].as_str().unwrap(),
            probe["target"].as_str().unwrap(),
        );
        if target == "syscalls:sys_exit_tgkill" {
            // Failed SIGURGs only: a healthy process has none (tests/tests/verify.rs
            // makes them under seccomp).
            assert_eq!(traced.count("tgkill_failed"), 0, "{}", traced.summary);
            continue;
        }
        let kind = match (link, target) {
            (_, "runtime.retake") => "sysmon_tick",
            (_, "runtime.preemptone") => "preempt_request",
            (_, "runtime.signalM") => "signal_m",
            (_, "syscalls:sys_enter_tgkill") => "tgkill",
            (_, "raw:signal_generate" | "signal:signal_generate") => "signal_generate",
            (_, "raw:signal_deliver" | "signal:signal_deliver") => "signal_deliver",
            (_, "runtime.doSigPreempt") => "do_sig_preempt",
            (_, "runtime.asyncPreempt2") => "async_preempt",
            ("yield", "calls to runtime.goschedImpl") => "yield",
            (_, "calls to runtime.goschedImpl") => "gosched",
            (_, "runtime.preemptPark") => "preempt_park",
            (_, "runtime.suspendG") => "suspend_g",
            (_, "runtime.execute") => "execute",
            other => panic!("{release}: unexpected attached probe {other:?}"),
        };
        seen += 1;
        assert!(
            traced.count(kind) > 0,
            "{release}: {target} attached but no {kind} event: {}",
            traced.summary
        );
    }
    assert!(seen >= 11, "{release}: only {seen} probes attached");
    // The kernel's exact count of yields, and one record per yield on the bulk ring.
    let yields = traced.summary["preemptions"]["voluntary_yields"]
        .as_u64()
        .expect("yields counted with --yields");
    assert_eq!(yields, traced.count("yield"), "{release}: yield records");
    assert_nothing_lost(&traced, release);
}
