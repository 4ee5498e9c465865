//! Correlation from scripted event sequences: every outcome, every requester.

use super::*;
use crate::{
    chain::Link,
    events::{Event, EventData, SignalResult},
};

const SYSMON: u32 = 10;
const M1: u32 = 21;
const GCW: u32 = 30;

/// Builds event streams with increasing timestamps (1 µs apart unless told).
struct Script {
    ts: u64,
    c: Correlator,
    meanings: Vec<Meaning>,
    /// The attempt each event was folded into.
    tags: Vec<Option<u64>>,
}

fn g_addr(goid: u64) -> u64 {
    0xc000_0000 + goid * 0x1000
}

impl Script {
    fn new() -> Script {
        Script {
            ts: 1_000_000,
            c: Correlator::new(),
            meanings: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn at(&mut self, advance_ns: u64) -> &mut Self {
        self.ts += advance_ns;
        self
    }

    fn feed(&mut self, kind: EventKind, tid: u32, data: EventData, caller: Option<Caller>) {
        self.feed_hinted(
            kind,
            tid,
            data,
            Hints {
                caller,
                ..Hints::default()
            },
        );
    }

    fn feed_hinted(&mut self, kind: EventKind, tid: u32, data: EventData, hints: Hints) {
        self.ts += 1_000;
        let event = Event {
            kind,
            ts_ns: self.ts,
            tid,
            tgid: 1,
            cpu: 0,
            seq: 0,
            data,
        };
        let observed = self.c.observe(&event, hints);
        self.meanings.push(observed.meaning);
        self.tags.push(observed.attempt);
    }

    fn tick(&mut self) -> &mut Self {
        let now_ns = self.ts as i64;
        self.feed(
            EventKind::SysmonTick,
            SYSMON,
            EventData::SysmonTick { now_ns },
            None,
        );
        self
    }

    fn request(&mut self, target: u32, goid: u64, caller: Caller) -> &mut Self {
        let data = EventData::PreemptRequest {
            p_addr: 0xc0001000,
            caller_pc: 0x401000,
            // Fed 1 µs later: ran 12 ms by the request's own timestamp.
            schedwhen_ns: Some(self.ts as i64 + 1_000 - 12_000_000),
            m_tid: Some(target),
            goid: Some(goid),
            p_id: Some(0),
            schedtick: 7,
        };
        self.feed(EventKind::PreemptOne, SYSMON, data, Some(caller));
        self
    }

    fn signal_m(&mut self, from: u32, target: u32, goid: u64, caller: Caller) -> &mut Self {
        let data = EventData::SignalM {
            m_addr: 0xc0002000,
            caller_pc: 0x402000,
            m_tid: Some(target),
            m_id: Some(4),
            goid: Some(goid),
            p_id: Some(0),
            sig: 23,
        };
        self.feed(EventKind::SignalM, from, data, Some(caller));
        self
    }

    fn tgkill(&mut self, from: u32, target: u32) -> &mut Self {
        let data = EventData::Tgkill {
            target_tgid: 1,
            target_tid: target,
            sig: 23,
        };
        self.feed(EventKind::Tgkill, from, data, None);
        self
    }

    fn tgkill_failed(&mut self, from: u32, target: u32, errno: u32) -> &mut Self {
        let data = EventData::TgkillFailed {
            target_tgid: 1,
            target_tid: target,
            sig: 23,
            errno,
        };
        self.feed(EventKind::TgkillFailed, from, data, None);
        self
    }

    fn generate(&mut self, from: u32, target: u32, result: SignalResult) -> &mut Self {
        let data = EventData::SignalGenerate {
            target_tid: target,
            sig: 23,
            code: -6,
            group: false,
            result,
        };
        self.feed(EventKind::SignalGenerate, from, data, None);
        self
    }

    fn deliver(&mut self, target: u32) -> &mut Self {
        let data = EventData::SignalDeliver {
            user_pc: 0x4a1000,
            user_sp: 0xc000f00,
            sig: 23,
            code: -6,
        };
        self.feed(EventKind::SignalDeliver, target, data, None);
        self
    }

    fn hook(&mut self, kind: EventKind, tid: u32, goid: u64, status: u32, preempted: Option<bool>) {
        let data = EventData::Goroutine {
            g_addr: g_addr(goid),
            goid: Some(goid),
            pc: matches!(kind, EventKind::DoSigPreempt | EventKind::AsyncPreempt2)
                .then_some(0x4a1000),
            g_status: Some(status),
            preempted,
            preempt_flags: None,
        };
        self.feed(kind, tid, data, None);
    }

    fn handler(&mut self, target: u32, goid: u64) -> &mut Self {
        self.hook(EventKind::DoSigPreempt, target, goid, 2, None);
        self
    }

    /// A delivery that interrupted the injected `asyncPreempt` itself.
    fn deliver_in_async_preempt(&mut self, target: u32) -> &mut Self {
        let data = EventData::SignalDeliver {
            user_pc: 0x46f000,
            user_sp: 0xc000f00,
            sig: 23,
            code: -6,
        };
        let hints = Hints {
            in_async_preempt: true,
            ..Hints::default()
        };
        self.feed_hinted(EventKind::SignalDeliver, target, data, hints);
        self
    }

    /// A handler that interrupted the injected `asyncPreempt` itself.
    fn handler_in_async_preempt(&mut self, target: u32, goid: u64) -> &mut Self {
        let data = EventData::Goroutine {
            g_addr: g_addr(goid),
            goid: Some(goid),
            pc: Some(0x46f000),
            g_status: Some(2),
            preempted: None,
            preempt_flags: None,
        };
        let hints = Hints {
            in_async_preempt: true,
            ..Hints::default()
        };
        self.feed_hinted(EventKind::DoSigPreempt, target, data, hints);
        self
    }

    fn async_preempt(&mut self, target: u32, goid: u64) -> &mut Self {
        self.hook(EventKind::AsyncPreempt2, target, goid, 2, None);
        self
    }

    fn reschedule(&mut self, tid: u32, goid: u64) -> &mut Self {
        self.hook(EventKind::GoschedImpl, tid, goid, 2, Some(true));
        self
    }

    fn park(&mut self, tid: u32, goid: u64) -> &mut Self {
        self.hook(EventKind::PreemptPark, tid, goid, 2, None);
        self
    }

    fn suspend(&mut self, goid: u64, status: u32) -> &mut Self {
        self.hook(EventKind::SuspendG, GCW, goid, status, None);
        self
    }

    /// The full signal path from signalM to the handler, for `target`.
    fn signal_path(&mut self, from: u32, target: u32, goid: u64, caller: Caller) -> &mut Self {
        self.signal_m(from, target, goid, caller)
            .tgkill(from, target)
            .generate(from, target, SignalResult::Delivered)
            .deliver(target)
            .handler(target, goid)
    }

    fn attempts(&mut self) -> Vec<Attempt> {
        self.c
            .drain_findings()
            .filter_map(|f| match f {
                Finding::Attempt(a) => Some(*a),
                Finding::TickInterval(_) => None,
            })
            .collect()
    }

    fn only_attempt(&mut self) -> Attempt {
        let mut attempts = self.attempts();
        assert_eq!(attempts.len(), 1, "{attempts:#?}");
        attempts.remove(0)
    }
}

#[test]
fn sysmon_async_chain_has_every_stamp_and_hop() {
    let mut s = Script::new();
    s.tick()
        .request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::Sysmon);
    assert_eq!(a.outcome, Outcome::Async(PreemptAction::Reschedule));
    assert_eq!(
        (a.goid, a.preempted_goid, a.target_tid),
        (Some(18), Some(18), Some(M1))
    );
    assert_eq!(a.ran_ns, Some(12_000_000));
    assert_eq!(a.refused, None);
    let hops: Vec<(Hop, u64)> = a.hops().collect();
    assert_eq!(hops.len(), Hop::ALL.len(), "{hops:?}");
    // tick → request → signalM → tgkill → generate → deliver → handler → preempt → off,
    // 1 µs apart: tgkill→deliver spans generate (2 µs), request→off seven links (7 µs).
    assert_eq!(a.hop(Hop::TICK_TO_REQUEST), Some(1_000));
    assert_eq!(a.hop(Hop::TGKILL_TO_DELIVER), Some(2_000));
    assert_eq!(a.hop(Hop::REQUEST_TO_OFF), Some(7_000));
    assert_eq!(
        s.meanings.last(),
        Some(&Meaning::Preemption(Preemption {
            ts_ns: a.stamps[Link::Off].unwrap(),
            tid: M1,
            goid: Some(18),
            path: PreemptPath::Async,
            action: PreemptAction::Reschedule,
            pc: Some(0x4a1000),
        }))
    );
    assert_eq!(s.c.open_attempts(), 0);
    // Every event but the tick carries the attempt's id.
    assert_eq!(s.tags[0], None, "a tick belongs to no single attempt");
    assert!(
        s.tags[1..].iter().all(|tag| *tag == Some(a.id)),
        "{:?}",
        s.tags
    );
}

#[test]
fn gc_suspend_carries_the_id_of_the_attempt_it_opens() {
    let mut s = Script::new();
    s.hook(EventKind::SuspendG, SYSMON, 18, 2, None);
    let suspend_tag = s.tags[0];
    assert!(suspend_tag.is_some());
    s.hook(EventKind::PreemptPark, M1, 18, 2, None);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::Gc);
    assert_eq!(Some(a.id), suspend_tag);
    assert_eq!(s.tags[1], suspend_tag);
}

#[test]
fn losses_mark_the_open_attempts_only() {
    let mut s = Script::new();
    s.tick().request(M1, 18, Caller::Retake);
    s.c.mark_loss();
    s.request(M1 + 1, 19, Caller::Retake);
    s.c.finish();
    let attempts = s.attempts();
    let lost: Vec<_> = attempts.iter().map(|a| (a.goid, a.events_lost)).collect();
    assert!(lost.contains(&(Some(18), true)), "{lost:?}");
    assert!(lost.contains(&(Some(19), false)), "{lost:?}");
}

#[test]
fn refused_at_unsafe_point_then_superseded() {
    let mut s = Script::new();
    s.tick()
        .request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone);
    // Something else happens on the thread: no injected call.
    s.hook(EventKind::GoschedImpl, M1, 18, 2, Some(false));
    assert!(
        s.attempts().is_empty(),
        "still open: a cooperative outcome may follow"
    );
    s.at(10_000_000).tick().request(M1, 18, Caller::Retake);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Refused(Refusal::UnsafePoint));
    assert_eq!(a.interrupted_pc, Some(0x4a1000));
    assert_eq!(a.hop(Hop::REQUEST_TO_OFF), None);
}

#[test]
fn refused_then_preempted_at_a_prologue_is_cooperative() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert_eq!(a.refused, Some(Refusal::UnsafePoint));
    assert!(a.hop(Hop::REQUEST_TO_OFF).is_some());
}

#[test]
fn decision_times_out_without_further_events_on_the_thread() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone);
    // Only sysmon keeps ticking; the target thread stays silent past the window.
    for _ in 0..12 {
        s.at(10_000_000).tick();
    }
    s.c.finish();
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Unfinished);
    assert_eq!(a.refused, Some(Refusal::UnsafePoint));
}

#[test]
fn handler_finding_another_goroutine_is_target_moved() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::Delivered)
        .deliver(M1)
        .handler(M1, 0);
    s.at(1_000).request(M1, 19, Caller::Retake);
    // The handler returns to the scheduler on M1: no injected call.
    s.hook(EventKind::GoschedImpl, M1, 19, 2, Some(false));
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Refused(Refusal::TargetMoved));
    assert_eq!(a.preempted_goid, Some(0));
}

#[test]
fn request_without_signal_served_at_a_prologue() {
    // asyncpreemptoff=1: preemptone, no signalM; the goroutine stops in a prologue.
    let mut s = Script::new();
    s.tick().request(M1, 18, Caller::Retake).tick();
    s.at(3_000_000).reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert_eq!(a.stamps[Link::SignalM], None);
    assert_eq!(a.hop(Hop::REQUEST_TO_OFF), Some(3_000_000 + 2_000));
}

#[test]
fn request_without_signal_superseded_is_no_signal() {
    let mut s = Script::new();
    s.tick().request(M1, 18, Caller::Retake).tick();
    // Another goroutine runs on that M now: a new attempt.
    s.at(10_000_000).request(M1, 19, Caller::Retake);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::NoSignal);
    assert_eq!(
        s.c.open_attempts(),
        1,
        "one open attempt per M, however many requests"
    );
}

#[test]
fn request_while_a_signal_is_in_flight_is_coalesced_by_the_runtime() {
    // Stop-the-world asks while sysmon's signal is on its way: coalesced.
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::Delivered);
    s.at(10_000_000)
        .tick()
        .request(M1, 18, Caller::Preemptall)
        .tick();
    let coalesced = s.only_attempt();
    assert_eq!(coalesced.outcome, Outcome::Coalesced);
    // The signal in flight still serves the first request.
    s.deliver(M1)
        .handler(M1, 18)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let first = s.only_attempt();
    assert_eq!(first.outcome, Outcome::Async(PreemptAction::Reschedule));
    assert!(first.stamps[Link::SignalM].is_some() && first.stamps[Link::Deliver].is_some());
}

#[test]
fn cooperative_before_delivery_waits_for_the_signal_to_be_consumed() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .reschedule(M1, 18);
    assert!(
        s.attempts().is_empty(),
        "open until the in-flight signal lands"
    );
    s.generate(SYSMON, M1, SignalResult::Delivered)
        .deliver(M1)
        .handler(M1, 0);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert_eq!(a.preempted_goid, Some(18));
    assert!(a.stamps[Link::Handler].is_some());
    assert_eq!(s.c.open_attempts(), 0);
}

#[test]
fn requests_with_nothing_to_preempt_are_no_target() {
    let mut s = Script::new();
    // Stop-the-world's own M, and an M between goroutines (curg nil → goid unknown).
    s.request(SYSMON, 18, Caller::Preemptall);
    s.request(M1, 0, Caller::Retake);
    let outcomes: Vec<Outcome> = s.attempts().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::NoTarget, Outcome::NoTarget]);
    assert_eq!(s.c.open_attempts(), 0);
}

#[test]
fn new_request_between_handler_and_async_preempt2_does_not_steal_the_decision() {
    // Stop-the-world asks again while the target returns from the handler.
    let mut s = Script::new();
    s.request(M1, 18, Caller::Preemptall)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .request(M1, 18, Caller::Preemptall)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Async(PreemptAction::Reschedule));
    assert_eq!(a.refused, None);
    // The new request is open, and refused when its own signal finds g0.
    s.signal_path(SYSMON, M1, 0, Caller::Preemptone);
    s.tick();
    s.c.finish();
    let b = s.only_attempt();
    assert_eq!(b.refused, Some(Refusal::TargetMoved));
}

#[test]
fn displaced_attempt_refused_by_the_next_event_on_its_thread() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Preemptall)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .request(M1, 18, Caller::Preemptall);
    s.hook(EventKind::GoschedImpl, M1, 18, 2, Some(false));
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Refused(Refusal::UnsafePoint));
}

#[test]
fn cooperative_between_preemptone_and_signal_m_keeps_the_signal() {
    // The goroutine hits a prologue after preemptone set its flags, before signalM.
    let mut s = Script::new();
    s.request(M1, 18, Caller::Preemptall).reschedule(M1, 18);
    s.signal_path(SYSMON, M1, 0, Caller::Preemptone);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::StopTheWorld);
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert!(a.stamps[Link::SignalM].is_some() && a.stamps[Link::Handler].is_some());
    assert_eq!(s.c.open_attempts(), 0);
}

#[test]
fn cooperative_then_no_signal_closes_when_the_requester_moves_on() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake).reschedule(M1, 18);
    assert!(s.attempts().is_empty());
    s.tick();
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert_eq!(a.stamps[Link::SignalM], None);
}

#[test]
fn second_signal_inside_the_injected_call_does_not_refuse_the_first() {
    // sysmon's 20 µs start-up ticks: a new request and signal reach the thread while it
    // still runs the asyncPreempt the first handler injected.
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::Delivered)
        .deliver_in_async_preempt(M1)
        .handler_in_async_preempt(M1, 18)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let first = s.only_attempt();
    assert_eq!(first.outcome, Outcome::Async(PreemptAction::Reschedule));
    assert_eq!(first.refused, None);
    // The second handler found the injected code: refused, closed by the next request.
    s.tick().request(M1, 18, Caller::Retake);
    let second = s.only_attempt();
    assert_eq!(second.outcome, Outcome::Refused(Refusal::UnsafePoint));
    assert_eq!(second.interrupted_pc, Some(0x46f000));
}

#[test]
fn signal_after_async_preempt2_does_not_refuse_it() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .request(M1, 18, Caller::Retake)
        .async_preempt(M1, 18)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .reschedule(M1, 18);
    let first = s.only_attempt();
    assert_eq!(first.outcome, Outcome::Async(PreemptAction::Reschedule));
}

#[test]
fn repeated_requests_for_the_same_goroutine_are_retries_of_one_attempt() {
    // asyncpreemptoff=1: sysmon asks every tick, nothing answers; finally the goroutine
    // stops at a prologue two seconds after the first request.
    let mut s = Script::new();
    s.tick().request(M1, 18, Caller::Retake).tick();
    for _ in 0..199 {
        s.at(10_000_000).request(M1, 18, Caller::Retake).tick();
    }
    assert!(s.attempts().is_empty());
    s.reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Reschedule));
    assert_eq!(a.retries, 199);
    assert!(a.hop(Hop::REQUEST_TO_OFF).unwrap() > 1_990_000_000, "{a:?}");
    assert_eq!(
        a.ran_ns,
        Some(12_000_000),
        "the latest request's running time"
    );
}

#[test]
fn retries_while_the_signal_is_in_flight_join_the_attempt() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Preemptall)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .request(M1, 18, Caller::Preemptall)
        .request(M1, 18, Caller::Preemptall)
        .generate(SYSMON, M1, SignalResult::Delivered)
        .deliver(M1)
        .handler(M1, 18)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Async(PreemptAction::Reschedule));
    assert_eq!(a.retries, 2);
}

#[test]
fn kernel_coalesced_signal() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::AlreadyPending);
    assert_eq!(s.only_attempt().outcome, Outcome::Coalesced);
}

/// A seccomp filter's EPERM: no `tgkill` entry, only the failed exit; the attempt ends
/// there, tagged, and a later request to the same M is a new attempt.
#[test]
fn failed_tgkill_ends_the_attempt() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill_failed(SYSMON, M1, 1);
    let attempts = s.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, Outcome::SignalFailed);
    assert_eq!(s.tags.last().copied().flatten(), Some(attempts[0].id));
    // A failure with no signalM before it (one we did not see) touches nothing.
    s.tgkill_failed(SYSMON, M1 + 1, 1);
    assert!(s.attempts().is_empty());
}

/// `--syscall-hooks none`: a failed call leaves no record, so the sender's next record
/// after its `signalM` (here sysmon's next tick) is what ends the attempt as failed.
#[test]
fn tgkill_unseen_after_signal_m_is_a_failure() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone);
    assert!(
        s.attempts().is_empty(),
        "undecided until the sender moves on"
    );
    s.at(10_000_000).tick();
    let attempts = s.attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, Outcome::SignalFailed);
    // With the tgkill seen, the sender's next record changes nothing.
    s.at(20_000_000)
        .request(M1, 19, Caller::Retake)
        .signal_m(SYSMON, M1, 19, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::Delivered)
        .tick();
    assert!(s.attempts().is_empty());
}

#[test]
fn signal_never_delivered_is_lost_when_the_next_one_comes() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake)
        .signal_m(SYSMON, M1, 18, Caller::Preemptone)
        .tgkill(SYSMON, M1)
        .generate(SYSMON, M1, SignalResult::Delivered);
    // The runtime signals that M again only after a handler cleared signalPending: a new
    // signalM means the old delivery happened unseen.
    s.at(20_000_000).signal_m(GCW, M1, 18, Caller::SuspendG);
    assert_eq!(s.only_attempt().outcome, Outcome::SignalLost);
}

#[test]
fn gc_suspend_with_signal_parks_asynchronously() {
    let mut s = Script::new();
    s.suspend(18, 2)
        .signal_path(GCW, M1, 18, Caller::SuspendG)
        .async_preempt(M1, 18)
        .park(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::Gc);
    assert_eq!(a.requester_tid, GCW);
    assert_eq!(a.outcome, Outcome::Async(PreemptAction::Park));
    // The request is the suspendG, before the signal.
    assert!(a.stamps[Link::Request] < a.stamps[Link::SignalM]);
    assert_eq!(a.hop(Hop::REQUEST_TO_SIGNAL), Some(1_000));
}

#[test]
fn gc_suspend_without_signal_waits_for_a_prologue() {
    // Seed Task 9 with asyncpreemptoff=1: the GC waits until the spinner reaches one.
    let mut s = Script::new();
    s.suspend(18, 2);
    s.suspend(40, 4); // waiting goroutine: scanned in place, no preemption
    s.at(2_000_000_000).park(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::Gc);
    assert_eq!(a.outcome, Outcome::Cooperative(PreemptAction::Park));
    // suspend(18), suspend(40), then 2 s + 1 µs to the park.
    assert_eq!(a.hop(Hop::REQUEST_TO_OFF), Some(2_000_000_000 + 2_000));
    // The waiting goroutine was never a pending request.
    assert_eq!(s.c.open_attempts(), 0);
}

#[test]
fn stop_the_world_requester_from_preemptall() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Preemptall)
        .signal_path(SYSMON, M1, 18, Caller::Preemptone)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::StopTheWorld);
    assert_eq!(a.stamps[Link::Tick], None);
    assert_eq!(a.ran_ns, None);
}

#[test]
fn unsolicited_delivery_opens_an_other_attempt() {
    let mut s = Script::new();
    s.deliver(M1)
        .handler(M1, 18)
        .async_preempt(M1, 18)
        .reschedule(M1, 18);
    let a = s.only_attempt();
    assert_eq!(a.requester, Requester::Other);
    assert_eq!(a.outcome, Outcome::Async(PreemptAction::Reschedule));
}

#[test]
fn tick_intervals() {
    let mut s = Script::new();
    s.tick().at(20_000).tick().at(10_000_000).tick();
    let intervals: Vec<u64> =
        s.c.drain_findings()
            .filter_map(|f| match f {
                Finding::TickInterval(i) => Some(i),
                Finding::Attempt(_) => None,
            })
            .collect();
    assert_eq!(intervals, [21_000, 10_001_000]);
}

#[test]
fn open_attempts_expire() {
    let mut s = Script::new();
    s.tick().request(M1, 18, Caller::Retake).tick();
    for _ in 0..70 {
        s.at(1_000_000_000).tick();
    }
    let a = s.only_attempt();
    assert_eq!(a.outcome, Outcome::Expired);
    assert_eq!(s.c.open_attempts(), 0);
}

#[test]
fn finish_closes_everything_as_unfinished() {
    let mut s = Script::new();
    s.request(M1, 18, Caller::Retake).suspend(50, 2);
    s.c.finish();
    let outcomes: Vec<Outcome> = s.attempts().iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Unfinished, Outcome::Unfinished]);
}

#[test]
fn voluntary_gosched_is_not_a_preemption() {
    let mut s = Script::new();
    s.hook(EventKind::GoschedImpl, M1, 18, 2, Some(false));
    assert_eq!(s.meanings, [Meaning::VoluntaryYield]);
}

#[test]
fn async_on_another_thread_is_not_this_preemption() {
    let mut s = Script::new();
    s.async_preempt(M1, 18).reschedule(M1 + 1, 18);
    let Some(Meaning::Preemption(p)) = s.meanings.last().copied() else {
        panic!("{:?}", s.meanings);
    };
    assert_eq!(p.path, PreemptPath::StackCheck);
}

#[test]
fn reschedules_are_preemptions_and_yields_are_not() {
    // The reschedule probe sits on the preemption path's calls (the kernel marks them
    // preempted, Go 1.21 included); yields come from their own call sites.
    let mut s = Script::new();
    s.async_preempt(M1, 18);
    s.hook(EventKind::GoschedImpl, M1, 18, 2, Some(true));
    s.hook(EventKind::Yield, M1, 18, 2, Some(false));
    s.hook(EventKind::GoschedImpl, M1, 18, 2, Some(true));
    let kinds: Vec<_> = s
        .meanings
        .iter()
        .map(|m| match m {
            Meaning::Preemption(p) => p.path.name(),
            Meaning::VoluntaryYield => "yield",
            Meaning::None => "none",
        })
        .collect();
    assert_eq!(kinds, ["none", "async", "yield", "stack_check"]);
}
