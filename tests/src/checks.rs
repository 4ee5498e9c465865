//! Assertions on the preemption chain that several test files make.

use std::collections::HashMap;

use serde_json::Value;

use crate::{Traced, u64_of};

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
pub fn assert_async_follows_sysmon_signal(traced: &Traced, release: &str) {
    let sysmon = traced.sysmon_tids();
    assert_eq!(
        sysmon.len(),
        1,
        "{release}: one sysmon thread, got {sysmon:?}"
    );
    let sysmon = sysmon[0];
    // Besides sysmon, the threads goprobe saw ask for a preemption for the GC or a
    // stop-the-world, of a goroutine on that thread: on a slow CPU a GC started during
    // set-up can scan a spinner's stack inside the window, from whichever M runs it.
    let mut requesters: HashMap<u64, Vec<u64>> = HashMap::new(); // target tid → requesters
    for attempt in &traced.attempts {
        if attempt["requester"] != "sysmon"
            && let (Some(target), Some(requester)) = (
                attempt["target_tid"].as_u64(),
                attempt["requester_tid"].as_u64(),
            )
        {
            requesters.entry(target).or_default().push(requester);
        }
    }
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
                let from_requester = sender.is_some_and(|s| {
                    s == sysmon || requesters.get(&tid).is_some_and(|r| r.contains(&s))
                });
                assert!(
                    from_requester,
                    "{release}: SIGURG delivered to tid {tid} at {} without a tgkill from \
                     sysmon (tid {sysmon}) or a GC/stop-the-world requester before it (from \
                     {sender:?}); other requesters for it: {:?}",
                    event["ts_ns"],
                    requesters.get(&tid)
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

pub fn assert_nothing_lost(traced: &Traced, release: &str) {
    assert_lost_exactly(traced, release, 0);
}

/// `lost_total` is `lost` (events the caller has accounted for), and nothing submitted
/// went unreceived or undecoded.
pub fn assert_lost_exactly(traced: &Traced, release: &str, lost: u64) {
    let summary = &traced.summary;
    assert_eq!(
        summary["lost_total"], lost,
        "{release}: lost events: {summary}"
    );
    assert_eq!(
        summary["unaccounted"], 0,
        "{release}: unaccounted: {summary}"
    );
    assert_eq!(summary["malformed"], 0, "{release}: malformed: {summary}");
}

/// The goroutines asynchronously preempted inside the fixture's workload window are
/// exactly the workers it reports, by the ids it read itself.
pub fn assert_only_workers_preempted(traced: &Traced, label: &str) {
    let mut workers = traced.worker_goids();
    workers.sort_unstable();
    let preempted: std::collections::BTreeSet<u64> = traced
        .in_window("async_preempt")
        .map(|e| u64_of(e, "goid"))
        .collect();
    assert_eq!(
        preempted.into_iter().collect::<Vec<_>>(),
        workers,
        "{label}: the goroutines preempted in the window vs the fixture's workers"
    );
}
