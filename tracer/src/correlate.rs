//! Correlation: turning the per-hook event stream into preemption attempts, each a chain
//! from the request to its outcome, and classifying every reschedule and park.
//!
//! Two facts make this possible with entry probes alone:
//! - events of one thread arrive in the order they happened (each is submitted before the
//!   thread runs on), and
//! - the runtime keeps at most one SIGURG in flight per M (`m.signalPending`), so a chain
//!   is identified by its target thread from `signalM` to the handler.
//!
//! An attempt starts at a request — `preemptone` (sysmon's `retake`, or stop-the-world's
//! `preemptall`), `suspendG` on a running goroutine (the GC), or a `signalM` with no request
//! before it — and ends when its goroutine leaves the CPU (asynchronously, or at a function
//! prologue: cooperatively), when a later request for the same M supersedes it, when it
//! expires, or when tracing ends. Open state is bounded by the number of threads (and, for
//! GC requests waiting on a goroutine, goroutines), and expires.

use std::collections::HashMap;

use tracer_common::EventKind;

use crate::{
    chain::Link,
    events::{Event, EventData, SignalResult},
};

mod attempt;

pub use attempt::*;

/// What the pipeline knows about an event from symbols, which the correlator does not read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// For requests and `signalM`: the (physical) function that made the call.
    pub caller: Option<Caller>,
    /// For a signal delivery or `doSigPreempt`: the interrupted PC is inside
    /// `runtime.asyncPreempt`, i.e. the call an earlier handler injected is running — so
    /// that handler did inject it, whatever happens on the thread before `asyncPreempt2`.
    pub in_async_preempt: bool,
}

impl Hints {
    pub fn caller(caller: Caller) -> Hints {
        Hints {
            caller: Some(caller),
            ..Hints::default()
        }
    }
}

/// The function a hooked runtime function returns to, as the pipeline resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Retake,
    Preemptall,
    Preemptone,
    SuspendG,
    Other,
}

impl Caller {
    pub fn from_function(name: &str) -> Caller {
        match name {
            "runtime.retake" => Caller::Retake,
            "runtime.preemptall" => Caller::Preemptall,
            "runtime.preemptone" => Caller::Preemptone,
            "runtime.suspendG" => Caller::SuspendG,
            _ => Caller::Other,
        }
    }
}

/// How long an attempt may stay open. Long, because a stop-the-world or GC request with
/// async preemption off legitimately waits seconds for a goroutine to reach a prologue.
const EXPIRE_AFTER_NS: u64 = 60_000_000_000;
/// How long after the handler an `asyncPreempt2` may still come: the injected call runs as
/// soon as the handler returns, so anything slower means it was refused.
const DECISION_WINDOW_NS: u64 = 5_000_000;
/// How often expiry runs, in trace time.
const SWEEP_EVERY_NS: u64 = 50_000_000;

/// Displaced attempts kept per thread; more means events were lost, and the oldest goes.
const MAX_DECIDING: usize = 4;

/// `_Grunning` in `g.atomicstatus` (stable since Go 1.0).
const G_RUNNING: u32 = 2;

#[derive(Default)]
struct ThreadState {
    /// `asyncPreempt2` seen on this thread, not yet followed by its reschedule/park.
    pending_async: Option<PendingAsync>,
    /// A request this thread just made (`preemptone`) whose `signalM` would come next:
    /// the target thread of the open attempt.
    awaiting_signal: Option<u32>,
    /// The target thread of this thread's last `signalM`, until its `tgkill` (or the
    /// failure of it) is seen: `signalM` calls `tgkill` at once, so any other record from
    /// this thread first means the call failed without a trace (`--syscall-hooks none`
    /// records a call only where it generates a signal).
    sending_signal: Option<u32>,
}

#[derive(Clone, Copy)]
struct PendingAsync {
    g_addr: u64,
    resume_pc: Option<u64>,
}

/// A GC `suspendG` of a running goroutine not yet turned into an attempt.
#[derive(Clone, Copy)]
struct PendingSuspend {
    /// The id its attempt will have: the `suspendG` event carries it from the start.
    id: u64,
    ts: u64,
    requester_tid: u32,
}

#[derive(Default)]
pub struct Correlator {
    threads: HashMap<u32, ThreadState>,
    /// Open attempts by target thread (at most one SIGURG in flight per M).
    open: HashMap<u32, Attempt>,
    /// Attempts displaced from `open` by a newer request for the same thread whose handler
    /// already ran: still deciding (`asyncPreempt2` next, or not), or accepted and waiting
    /// for their reschedule/park. Oldest first, at most [`MAX_DECIDING`] per thread.
    deciding: HashMap<u32, Vec<Attempt>>,
    /// Open attempts whose target thread is not known (offsets unknown).
    suspends: HashMap<u64, PendingSuspend>,
    last_tick: Option<(u32, u64)>,
    next_id: u64,
    now_ns: u64,
    last_sweep_ns: u64,
    findings: Vec<Finding>,
    /// The attempt the event being observed was folded into.
    tag: Option<u64>,
}

impl Correlator {
    pub fn new() -> Correlator {
        Correlator::default()
    }

    /// Takes what correlation has found so far (finished attempts, tick intervals).
    pub fn drain_findings(&mut self) -> std::vec::Drain<'_, Finding> {
        self.findings.drain(..)
    }

    /// Closes every open attempt as unfinished (tracing ended).
    pub fn finish(&mut self) {
        let deciding: Vec<Attempt> = self.deciding.drain().flat_map(|(_, a)| a).collect();
        for mut attempt in deciding {
            let outcome = if attempt.stamps[Link::AsyncPreempt2].is_some() {
                Outcome::Unfinished
            } else {
                let refusal = attempt.refused.unwrap_or_else(|| refusal(&attempt));
                attempt.refused = Some(refusal);
                Outcome::Refused(refusal)
            };
            self.close(attempt, outcome);
        }
        let open: Vec<Attempt> = self.open.drain().map(|(_, attempt)| attempt).collect();
        for mut attempt in open {
            if decision_pending(&attempt) {
                attempt.refused = Some(refusal(&attempt));
            }
            let outcome = attempt.served.unwrap_or(Outcome::Unfinished);
            self.close(attempt, outcome);
        }
        let suspends: Vec<(u64, PendingSuspend)> = self.suspends.drain().collect();
        for (goid, suspend) in suspends {
            let attempt = self.gc_attempt(goid, suspend);
            self.close(attempt, Outcome::Unfinished);
        }
        self.findings.sort_by_key(|finding| match finding {
            Finding::Attempt(attempt) => attempt.start_ns(),
            Finding::TickInterval(_) => 0,
        });
    }

    /// Records were lost just now: marks every open attempt.
    pub fn mark_loss(&mut self) {
        let open = self.open.values_mut();
        let deciding = self.deciding.values_mut().flatten();
        for attempt in open.chain(deciding) {
            attempt.events_lost = true;
        }
    }

    /// Feeds one event, with what symbols say about it: what it meant, and the attempt it
    /// belongs to.
    pub fn observe(&mut self, event: &Event, hints: Hints) -> Observed {
        let meaning = self.observe_meaning(event, hints);
        Observed {
            meaning,
            attempt: self.tag.take(),
        }
    }

    fn observe_meaning(&mut self, event: &Event, hints: Hints) -> Meaning {
        let caller = hints.caller;
        self.tag = None;
        self.now_ns = self.now_ns.max(event.ts_ns);
        // Run slices and yields come from the bulk ring and take no part in the chain: a
        // thread's chain records alone decide its attempts, with `--slices` or without.
        if matches!(event.kind, EventKind::Execute | EventKind::Yield) {
            return match event.kind {
                EventKind::Yield => Meaning::VoluntaryYield,
                _ => Meaning::None,
            };
        }
        if !hints.in_async_preempt {
            self.resolve_decision_on_thread(event);
        }
        self.resolve_awaiting_signal(event);
        self.resolve_sending_signal(event);
        let meaning = match &event.data {
            EventData::SysmonTick { .. } => {
                if let Some((tid, prev)) = self.last_tick
                    && tid == event.tid
                    && let Some(interval) = event.ts_ns.checked_sub(prev)
                {
                    self.findings.push(Finding::TickInterval(interval));
                }
                self.last_tick = Some((event.tid, event.ts_ns));
                Meaning::None
            }
            EventData::PreemptRequest { .. } => {
                self.on_request(event, caller);
                Meaning::None
            }
            EventData::SignalM { .. } if event.kind == EventKind::SignalM => {
                self.on_signal_m(event, caller);
                Meaning::None
            }
            EventData::Tgkill { target_tid, .. } => {
                self.thread(event.tid).sending_signal = None;
                self.on_tgkill(event, *target_tid);
                Meaning::None
            }
            EventData::TgkillFailed { target_tid, .. } => {
                self.thread(event.tid).sending_signal = None;
                self.on_tgkill_failed(*target_tid);
                Meaning::None
            }
            EventData::SignalGenerate {
                target_tid, result, ..
            } => {
                self.on_generate(event, *target_tid, *result);
                Meaning::None
            }
            EventData::SignalDeliver { user_pc, .. } => {
                self.on_deliver(event, *user_pc);
                Meaning::None
            }
            EventData::Goroutine { .. } => self.on_goroutine(event, hints),
            EventData::SignalM { .. } | EventData::ProcessExec => Meaning::None,
        };
        if self.now_ns.saturating_sub(self.last_sweep_ns) >= SWEEP_EVERY_NS {
            self.sweep();
        }
        meaning
    }

    fn new_attempt(&mut self, requester: Requester, requester_tid: u32) -> Attempt {
        self.next_id += 1;
        Attempt::new(self.next_id, requester, requester_tid)
    }

    fn close(&mut self, mut attempt: Attempt, outcome: Outcome) {
        attempt.outcome = outcome;
        self.findings.push(Finding::Attempt(Box::new(attempt)));
    }

    /// Puts `attempt` in as the open one for `target`, closing the one it replaces.
    fn open_for(&mut self, target: u32, attempt: Attempt) {
        let Some(old) = self.open.insert(target, attempt) else {
            return;
        };
        if decision_pending(&old) || accepted(&old) {
            let displaced = self.deciding.entry(target).or_default();
            displaced.push(old);
            if displaced.len() > MAX_DECIDING {
                let oldest = displaced.remove(0);
                let outcome = superseded_outcome(&oldest);
                self.close(oldest, outcome);
            }
        } else {
            let outcome = superseded_outcome(&old);
            self.close(old, outcome);
        }
    }

    fn on_request(&mut self, event: &Event, caller: Option<Caller>) {
        let EventData::PreemptRequest {
            m_tid,
            goid,
            p_id,
            schedwhen_ns,
            ..
        } = event.data
        else {
            return;
        };
        let requester = match caller {
            Some(Caller::Retake) => Requester::Sysmon,
            Some(Caller::Preemptall) => Requester::StopTheWorld,
            _ => Requester::Other,
        };
        let mut attempt = self.new_attempt(requester, event.tid);
        self.tag = Some(attempt.id);
        attempt.target_tid = m_tid;
        attempt.goid = goid;
        attempt.p_id = p_id;
        attempt.stamps[Link::Request] = Some(event.ts_ns);
        if requester == Requester::Sysmon {
            attempt.stamps[Link::Tick] = self
                .last_tick
                .filter(|(tid, _)| *tid == event.tid)
                .map(|(_, ts)| ts);
            attempt.ran_ns =
                schedwhen_ns.and_then(|when| u64::try_from(event.ts_ns as i64 - when).ok());
        }
        match m_tid {
            // `preemptone` returns at once when the P has no M, the M runs no user
            // goroutine, or the M is the caller's own: nothing will follow.
            None => self.close(attempt, Outcome::NoSignal),
            Some(target) if target == event.tid || goid.is_none_or(|goid| goid == 0) => {
                self.close(attempt, Outcome::NoTarget);
            }
            // The same requester asking again for the same goroutine, unanswered so far:
            // a retry of the open attempt. The first request's time is kept (the delay
            // the user cares about runs from it), the latest running time too.
            Some(target)
                if self.open.get(&target).is_some_and(|open| {
                    open.requester == requester
                        && open.goid == goid
                        && open.served.is_none()
                        && (signal_in_flight(open) || no_signal_yet(open))
                }) =>
            {
                if let Some(open) = self.open.get_mut(&target) {
                    open.retries += 1;
                    open.ran_ns = attempt.ran_ns.or(open.ran_ns);
                    self.tag = Some(open.id);
                }
                self.next_id -= 1;
                self.thread(event.tid).awaiting_signal = Some(target);
            }
            // A SIGURG is already on its way to that M: the runtime sends no second one
            // (`m.signalPending`), the one in flight serves this request too.
            Some(target) if self.open.get(&target).is_some_and(signal_in_flight) => {
                self.close(attempt, Outcome::Coalesced);
            }
            Some(target) => {
                self.open_for(target, attempt);
                self.thread(event.tid).awaiting_signal = Some(target);
            }
        }
    }

    fn on_signal_m(&mut self, event: &Event, caller: Option<Caller>) {
        let EventData::SignalM {
            m_tid,
            m_id,
            goid,
            p_id,
            ..
        } = event.data
        else {
            return;
        };
        let awaited = self.thread(event.tid).awaiting_signal.take();
        let target = m_tid.or(awaited);
        self.thread(event.tid).sending_signal = target;
        // The request this thread just made, for this M: same attempt.
        if let (Some(target), Some(awaited)) = (target, awaited)
            && target == awaited
            && let Some(attempt) = self.open.get_mut(&target)
            && attempt.stamps[Link::SignalM].is_none()
        {
            attempt.stamps[Link::SignalM] = Some(event.ts_ns);
            attempt.m_id = m_id;
            self.tag = Some(attempt.id);
            return;
        }
        let requester = match caller {
            Some(Caller::SuspendG) => Requester::Gc,
            _ => Requester::Other,
        };
        let mut attempt = self.new_attempt(requester, event.tid);
        attempt.target_tid = target;
        attempt.goid = goid;
        attempt.p_id = p_id;
        attempt.m_id = m_id;
        attempt.stamps[Link::SignalM] = Some(event.ts_ns);
        attempt.stamps[Link::Request] = Some(event.ts_ns);
        if requester == Requester::Gc
            && let Some(goid) = goid
            && let Some(suspend) = self.suspends.remove(&goid)
        {
            attempt.id = suspend.id;
            attempt.stamps[Link::Request] = Some(suspend.ts);
        }
        self.tag = Some(attempt.id);
        match target {
            Some(target) => self.open_for(target, attempt),
            None => self.close(attempt, Outcome::Expired),
        }
    }

    fn on_tgkill(&mut self, event: &Event, target: u32) {
        match self.open.get_mut(&target) {
            Some(attempt)
                if attempt.stamps[Link::SignalM].is_some()
                    && attempt.stamps[Link::Tgkill].is_none() =>
            {
                attempt.stamps[Link::Tgkill] = Some(event.ts_ns);
                self.tag = Some(attempt.id);
            }
            _ => {
                // A SIGURG nobody in the runtime asked for (or whose request we missed).
                let mut attempt = self.new_attempt(Requester::Other, event.tid);
                self.tag = Some(attempt.id);
                attempt.target_tid = Some(target);
                attempt.stamps[Link::Tgkill] = Some(event.ts_ns);
                self.open_for(target, attempt);
            }
        }
    }

    /// The attempt whose signalM led to this tgkill ends here: there is no signal.
    fn on_tgkill_failed(&mut self, target: u32) {
        if let Some(attempt) = self.open.get(&target)
            && attempt.stamps[Link::SignalM].is_some()
            && attempt.stamps[Link::Tgkill].is_none()
            && let Some(attempt) = self.open.remove(&target)
        {
            self.tag = Some(attempt.id);
            self.close(attempt, Outcome::SignalFailed);
        }
    }

    fn on_generate(&mut self, event: &Event, target: u32, result: SignalResult) {
        let Some(attempt) = self.open.get_mut(&target) else {
            return;
        };
        if attempt.stamps[Link::Generate].is_some() {
            return;
        }
        attempt.stamps[Link::Generate] = Some(event.ts_ns);
        self.tag = Some(attempt.id);
        if result == SignalResult::AlreadyPending
            && let Some(attempt) = self.open.remove(&target)
        {
            self.close(attempt, Outcome::Coalesced);
        }
    }

    fn on_deliver(&mut self, event: &Event, user_pc: u64) {
        let target = event.tid;
        let fresh = match self.open.get_mut(&target) {
            Some(attempt) if attempt.stamps[Link::Deliver].is_none() => {
                attempt.stamps[Link::Deliver] = Some(event.ts_ns);
                attempt.interrupted_pc = Some(user_pc);
                self.tag = Some(attempt.id);
                false
            }
            _ => true,
        };
        if fresh {
            let mut attempt = self.new_attempt(Requester::Other, 0);
            self.tag = Some(attempt.id);
            attempt.target_tid = Some(target);
            attempt.stamps[Link::Deliver] = Some(event.ts_ns);
            attempt.interrupted_pc = Some(user_pc);
            self.open_for(target, attempt);
        }
    }

    fn on_goroutine(&mut self, event: &Event, hints: Hints) -> Meaning {
        let EventData::Goroutine {
            g_addr,
            goid,
            pc,
            g_status,
            preempted,
            ..
        } = event.data
        else {
            return Meaning::None;
        };
        match event.kind {
            EventKind::DoSigPreempt => {
                // A second handler with no asyncPreempt2 since: the earlier one refused —
                // unless this signal interrupted the very call the earlier one injected.
                if !hints.in_async_preempt {
                    self.refuse_deciding(event.tid);
                }
                if let Some(attempt) = self.open.get_mut(&event.tid)
                    && attempt.stamps[Link::Handler].is_none()
                {
                    attempt.stamps[Link::Handler] = Some(event.ts_ns);
                    attempt.handler_g_status = g_status;
                    self.tag = Some(attempt.id);
                    if hints.in_async_preempt {
                        // Inside the injected call: never an async safe point.
                        attempt.refused = Some(Refusal::UnsafePoint);
                    }
                    if pc.is_some() {
                        attempt.interrupted_pc = pc;
                    }
                    if let Some(outcome) = attempt.served {
                        // Preempted cooperatively already; this handler just consumes the
                        // signal (it finds another goroutine, or g0).
                        if let Some(attempt) = self.open.remove(&event.tid) {
                            self.close(attempt, outcome);
                        }
                    } else {
                        attempt.preempted_goid = goid;
                    }
                }
                Meaning::None
            }
            EventKind::SuspendG => {
                // Only a running goroutine has to be preempted; the others are scanned
                // where they stand.
                if g_status == Some(G_RUNNING)
                    && let Some(goid) = goid
                {
                    // suspendG asks again when the goroutine moved to another M before
                    // stopping: the same request, timed from the first ask.
                    let next_id = self.next_id + 1;
                    let pending = self.suspends.entry(goid).or_insert(PendingSuspend {
                        id: next_id,
                        ts: event.ts_ns,
                        requester_tid: event.tid,
                    });
                    self.tag = Some(pending.id);
                    if pending.id == next_id {
                        self.next_id = next_id;
                    }
                }
                Meaning::None
            }
            EventKind::AsyncPreempt2 => {
                let thread = self.thread(event.tid);
                thread.pending_async = Some(PendingAsync {
                    g_addr,
                    resume_pc: pc,
                });
                // The injected call belongs to the attempt whose handler injected it: the
                // newest one still deciding (a handler that ran inside the injected code
                // was refused at once), else the open one.
                let tid = event.tid;
                let attempt = match self
                    .deciding
                    .get_mut(&tid)
                    .and_then(|list| list.iter_mut().rev().find(|a| decision_pending(a)))
                {
                    Some(deciding) => Some(deciding),
                    None => self.open.get_mut(&tid),
                };
                if let Some(attempt) = attempt
                    && attempt.stamps[Link::AsyncPreempt2].is_none()
                {
                    attempt.stamps[Link::AsyncPreempt2] = Some(event.ts_ns);
                    attempt.preempted_goid = goid.or(attempt.preempted_goid);
                    attempt.refused = None;
                    self.tag = Some(attempt.id);
                }
                Meaning::None
            }
            EventKind::PreemptPark => self.preempted(event, g_addr, goid, pc, PreemptAction::Park),
            EventKind::GoschedImpl => match preempted {
                // Its probes sit on the preemption path's calls; at the entry (a release
                // with no such call found) the kernel sends only `preempted` ones.
                Some(true) | None => {
                    self.preempted(event, g_addr, goid, pc, PreemptAction::Reschedule)
                }
                Some(false) => Meaning::VoluntaryYield,
            },
            EventKind::Yield => Meaning::VoluntaryYield,
            _ => Meaning::None,
        }
    }

    /// A goroutine left the CPU on request: classify the path, close its attempt.
    fn preempted(
        &mut self,
        event: &Event,
        g_addr: u64,
        goid: Option<u64>,
        sched_pc: Option<u64>,
        action: PreemptAction,
    ) -> Meaning {
        let pending = self
            .thread(event.tid)
            .pending_async
            .take()
            .filter(|pending| pending.g_addr == g_addr);
        let path = if pending.is_some() {
            PreemptPath::Async
        } else {
            PreemptPath::StackCheck
        };
        let outcome = match path {
            PreemptPath::Async => Outcome::Async(action),
            PreemptPath::StackCheck => Outcome::Cooperative(action),
        };
        let stop_pc = match path {
            PreemptPath::Async => pending.and_then(|pending| pending.resume_pc),
            PreemptPath::StackCheck => sched_pc,
        };
        let meaning = Meaning::Preemption(Preemption {
            ts_ns: event.ts_ns,
            tid: event.tid,
            goid,
            path,
            action,
            pc: stop_pc,
        });
        if path == PreemptPath::Async
            && let Some(mut attempt) = self.take_accepted(event.tid)
        {
            attempt.stamps[Link::Off] = Some(event.ts_ns);
            self.tag = Some(attempt.id);
            self.close(attempt, outcome);
            return meaning;
        }
        // The attempt this ends: on this thread (async, or a request for the goroutine
        // running here), else any attempt for this goroutine, else a GC suspend waiting
        // for it.
        let here = self.open.get(&event.tid).is_some_and(|attempt| {
            path == PreemptPath::Async || goid.is_some() && attempt.goid == goid
        });
        let key = if here {
            Some(event.tid)
        } else {
            goid.and_then(|goid| {
                self.open
                    .iter()
                    .find(|(_, attempt)| attempt.goid == Some(goid))
                    .map(|(tid, _)| *tid)
            })
        };
        // Preempted at a prologue while its SIGURG is in flight, or about to be sent (the
        // requester is between `preemptone` and `signalM`): the outcome is known, but the
        // attempt stays open to own that signal.
        let served_in_flight = key.is_some_and(|key| {
            path == PreemptPath::StackCheck
                && self.open.get(&key).is_some_and(|a| {
                    a.served.is_none()
                        && (signal_in_flight(a)
                            || self
                                .threads
                                .get(&a.requester_tid)
                                .is_some_and(|t| t.awaiting_signal == Some(key)))
                })
        });
        if served_in_flight && let Some(attempt) = key.and_then(|key| self.open.get_mut(&key)) {
            attempt.stamps[Link::Off] = Some(event.ts_ns);
            self.tag = Some(attempt.id);
            attempt.preempted_goid = goid.or(attempt.preempted_goid);
            attempt.interrupted_pc = stop_pc.or(attempt.interrupted_pc);
            attempt.served = Some(outcome);
            if let Some(goid) = goid {
                self.suspends.remove(&goid);
            }
        } else if let Some(mut attempt) = key.and_then(|key| self.open.remove(&key)) {
            attempt.stamps[Link::Off] = Some(event.ts_ns);
            self.tag = Some(attempt.id);
            attempt.preempted_goid = goid.or(attempt.preempted_goid);
            if path == PreemptPath::StackCheck {
                attempt.interrupted_pc = stop_pc.or(attempt.interrupted_pc);
            }
            self.close(attempt, outcome);
            if let Some(goid) = goid {
                self.suspends.remove(&goid);
            }
        } else if let Some(goid) = goid
            && let Some(suspend) = self.suspends.remove(&goid)
        {
            let mut attempt = self.gc_attempt(goid, suspend);
            attempt.target_tid = Some(event.tid);
            attempt.stamps[Link::Off] = Some(event.ts_ns);
            self.tag = Some(attempt.id);
            attempt.preempted_goid = Some(goid);
            attempt.interrupted_pc = stop_pc;
            self.close(attempt, outcome);
        }
        meaning
    }

    fn gc_attempt(&mut self, goid: u64, suspend: PendingSuspend) -> Attempt {
        let mut attempt = self.new_attempt(Requester::Gc, suspend.requester_tid);
        attempt.id = suspend.id;
        attempt.goid = Some(goid);
        attempt.stamps[Link::Request] = Some(suspend.ts);
        attempt
    }

    /// After the handler ran on a thread, the next event there tells whether it injected
    /// the call: `asyncPreempt2` comes first if it did.
    fn resolve_decision_on_thread(&mut self, event: &Event) {
        if event.kind == EventKind::AsyncPreempt2 || event.kind == EventKind::DoSigPreempt {
            return;
        }
        self.refuse_deciding(event.tid);
        if let Some(attempt) = self.open.get_mut(&event.tid)
            && attempt.stamps[Link::Handler].is_some()
            && attempt.stamps[Link::AsyncPreempt2].is_none()
            && attempt.refused.is_none()
        {
            attempt.refused = Some(refusal(attempt));
        }
    }

    /// Closes the displaced attempts still deciding on `tid` as refused; accepted ones
    /// (their `asyncPreempt2` ran) stay, waiting for their reschedule or park.
    fn refuse_deciding(&mut self, tid: u32) {
        let Some(list) = self.deciding.get_mut(&tid) else {
            return;
        };
        let (keep, refused): (Vec<Attempt>, Vec<Attempt>) = list
            .drain(..)
            .partition(|a| a.stamps[Link::AsyncPreempt2].is_some());
        *list = keep;
        if list.is_empty() {
            self.deciding.remove(&tid);
        }
        for mut attempt in refused {
            let refusal = attempt.refused.unwrap_or_else(|| refusal(&attempt));
            attempt.refused = Some(refusal);
            self.close(attempt, Outcome::Refused(refusal));
        }
    }

    /// Removes the oldest displaced attempt on `tid` whose `asyncPreempt2` ran.
    fn take_accepted(&mut self, tid: u32) -> Option<Attempt> {
        let list = self.deciding.get_mut(&tid)?;
        let at = list.iter().position(accepted)?;
        let attempt = list.remove(at);
        if list.is_empty() {
            self.deciding.remove(&tid);
        }
        Some(attempt)
    }

    /// A request whose `signalM` did not come right after it sent no signal; if its
    /// goroutine was already preempted at a prologue, it is done.
    fn resolve_awaiting_signal(&mut self, event: &Event) {
        if event.kind == EventKind::SignalM {
            return;
        }
        let Some(target) = self
            .threads
            .get_mut(&event.tid)
            .and_then(|thread| thread.awaiting_signal.take())
        else {
            return;
        };
        if let Some(attempt) = self.open.get(&target)
            && let Some(outcome) = attempt.served
            && !signal_in_flight(attempt)
            && let Some(attempt) = self.open.remove(&target)
        {
            self.close(attempt, outcome);
        }
    }

    /// A `signalM` of this thread not followed by its `tgkill`: the call failed (errno
    /// unknown), and the attempt ends there.
    fn resolve_sending_signal(&mut self, event: &Event) {
        if matches!(
            event.kind,
            EventKind::SignalM | EventKind::Tgkill | EventKind::TgkillFailed
        ) {
            return;
        }
        let Some(target) = self
            .threads
            .get_mut(&event.tid)
            .and_then(|thread| thread.sending_signal.take())
        else {
            return;
        };
        let tag = self.tag;
        self.on_tgkill_failed(target);
        self.tag = tag;
    }

    fn thread(&mut self, tid: u32) -> &mut ThreadState {
        self.threads.entry(tid).or_default()
    }

    /// Decides stale decisions and expires what waited too long.
    fn sweep(&mut self) {
        self.last_sweep_ns = self.now_ns;
        let now = self.now_ns;
        for attempt in self.open.values_mut() {
            if let Some(handler) = attempt.stamps[Link::Handler]
                && attempt.stamps[Link::AsyncPreempt2].is_none()
                && attempt.refused.is_none()
                && now.saturating_sub(handler) > DECISION_WINDOW_NS
            {
                attempt.refused = Some(refusal(attempt));
            }
        }
        let undecided: Vec<u32> = self
            .deciding
            .iter()
            .filter(|(_, list)| {
                list.iter().any(|a| {
                    a.stamps[Link::AsyncPreempt2].is_none()
                        && a.stamps[Link::Handler]
                            .is_some_and(|h| now.saturating_sub(h) > DECISION_WINDOW_NS)
                })
            })
            .map(|(tid, _)| *tid)
            .collect();
        for tid in undecided {
            self.refuse_deciding(tid);
        }
        // Accepted attempts whose reschedule/park never came (lost events).
        let mut stale = Vec::new();
        for list in self.deciding.values_mut() {
            let (old, keep): (Vec<Attempt>, Vec<Attempt>) = list
                .drain(..)
                .partition(|a| now.saturating_sub(a.start_ns()) > EXPIRE_AFTER_NS);
            *list = keep;
            stale.extend(old);
        }
        self.deciding.retain(|_, list| !list.is_empty());
        for attempt in stale {
            self.close(attempt, Outcome::Expired);
        }
        let expired: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, attempt)| now.saturating_sub(attempt.start_ns()) > EXPIRE_AFTER_NS)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            if let Some(attempt) = self.open.remove(&tid) {
                self.close(attempt, Outcome::Expired);
            }
        }
        let stale: Vec<u64> = self
            .suspends
            .iter()
            .filter(|(_, suspend)| now.saturating_sub(suspend.ts) > EXPIRE_AFTER_NS)
            .map(|(goid, _)| *goid)
            .collect();
        for goid in stale {
            self.suspends.remove(&goid);
        }
    }

    /// Attempts open now (for tests and memory checks).
    pub fn open_attempts(&self) -> usize {
        self.open.len() + self.deciding.values().map(Vec::len).sum::<usize>() + self.suspends.len()
    }
}

/// Why the handler injected nothing, from what it found.
fn refusal(attempt: &Attempt) -> Refusal {
    if attempt.goid.is_some() && attempt.preempted_goid != attempt.goid {
        Refusal::TargetMoved
    } else if attempt
        .handler_g_status
        .is_some_and(|status| status != G_RUNNING)
    {
        Refusal::NotRunning
    } else {
        Refusal::UnsafePoint
    }
}

/// The handler ran; whether it injected the call is not known yet.
fn decision_pending(attempt: &Attempt) -> bool {
    let s = &attempt.stamps;
    s[Link::Handler].is_some() && s[Link::AsyncPreempt2].is_none() && attempt.refused.is_none()
}

/// Its `asyncPreempt2` ran: only the reschedule or park is still to come.
fn accepted(attempt: &Attempt) -> bool {
    attempt.stamps[Link::AsyncPreempt2].is_some() && attempt.stamps[Link::Off].is_none()
}

/// Nothing has happened since the request: no signal sent, no handler.
fn no_signal_yet(attempt: &Attempt) -> bool {
    let s = &attempt.stamps;
    s[Link::SignalM].is_none()
        && s[Link::Tgkill].is_none()
        && s[Link::Deliver].is_none()
        && s[Link::Handler].is_none()
}

/// A SIGURG was sent for this attempt and the handler has not consumed it yet.
fn signal_in_flight(attempt: &Attempt) -> bool {
    let s = &attempt.stamps;
    (s[Link::SignalM].is_some() || s[Link::Tgkill].is_some()) && s[Link::Handler].is_none()
}

/// The outcome of an attempt replaced by a newer one for the same M.
fn superseded_outcome(old: &Attempt) -> Outcome {
    let s = &old.stamps;
    if let Some(outcome) = old.served {
        outcome
    } else if let Some(refusal) = old.refused {
        Outcome::Refused(refusal)
    } else if s[Link::Handler].is_some() {
        Outcome::Refused(refusal(old))
    } else if s[Link::SignalM].is_some() || s[Link::Tgkill].is_some() {
        Outcome::SignalLost
    } else {
        Outcome::NoSignal
    }
}

#[cfg(test)]
mod tests;
