//! The vocabulary of correlation's results: attempts (a preemption from request to
//! outcome, stamped at each [`Link`] of the chain), their requesters, outcomes and hops,
//! and what each event meant. Every output renders these.

use std::ops::{Index, IndexMut};

use crate::chain::{LINK_COUNT, Link};

/// How a preempted goroutine entered the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PreemptPath {
    /// SIGURG → `doSigPreempt` injected a call → `asyncPreempt` → `asyncPreempt2`.
    Async,
    /// Prologue stack check saw `stackPreempt` → `morestack` → `newstack`.
    StackCheck,
}

impl PreemptPath {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// What the runtime did with the goroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PreemptAction {
    /// Back on a run queue (`goschedImpl` called on the preemption path).
    Reschedule,
    /// Parked in `_Gpreempted` for a `suspendG` (GC stack scan), via `preemptPark`.
    Park,
}

impl PreemptAction {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A goroutine that left the CPU because the runtime asked it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preemption {
    pub ts_ns: u64,
    pub tid: u32,
    pub goid: Option<u64>,
    pub path: PreemptPath,
    pub action: PreemptAction,
    /// Where the goroutine stopped: the interrupted PC (async path), or the prologue whose
    /// stack check failed (`g.sched.pc`, stack-check path).
    pub pc: Option<u64>,
}

/// What the correlator made of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub meaning: Meaning,
    /// The attempt it was folded into (ticks, yields and run slices belong to none).
    pub attempt: Option<u64>,
}

/// What one event meant, beyond itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    Preemption(Preemption),
    /// `goschedImpl` from `runtime.Gosched` (or `goschedguarded`): not a preemption.
    VoluntaryYield,
    /// Nothing more than the event itself.
    None,
}

/// Who asked for the preemption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Requester {
    /// sysmon's `retake`: a goroutine ran for over 10 ms.
    Sysmon,
    /// `preemptall`: stopping the world (GC phase changes, `GOMAXPROCS`, ...).
    StopTheWorld,
    /// `suspendG`: the GC scanning a running goroutine's stack.
    Gc,
    /// Anything else (a SIGURG from outside, a request made before tracing began).
    Other,
}

impl Requester {
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub const ALL: [Requester; 4] = [
        Requester::Sysmon,
        Requester::StopTheWorld,
        Requester::Gc,
        Requester::Other,
    ];
}

/// Why a delivered SIGURG did not preempt the goroutine it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Refusal {
    /// The goroutine asked to stop was no longer the one running on that M.
    TargetMoved,
    /// The goroutine found was not in `_Grunning` (status in the attempt).
    NotRunning,
    /// Running, wanted, but not at an async safe point (runtime code, an unsafe point,
    /// a syscall or cgo): see the attempt's interrupted PC.
    UnsafePoint,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Preempted asynchronously: SIGURG, injected call, `asyncPreempt2`.
    Async(PreemptAction),
    /// Preempted at a function prologue (the request's stack guard), before or instead of
    /// any signal.
    Cooperative(PreemptAction),
    /// The signal arrived and the handler injected nothing; nothing else preempted the
    /// goroutine before the next request (or the end).
    Refused(Refusal),
    /// No SIGURG was sent (async preemption is off, or the P had no M) and the goroutine
    /// was not preempted before the next request.
    NoSignal,
    /// Merged into a SIGURG already in flight to the same thread: by the runtime (a
    /// request while `m.signalPending`) or by the kernel (signal already pending).
    Coalesced,
    /// Sent but never delivered before the next signal to that thread.
    SignalLost,
    /// `tgkill` failed (a seccomp filter's EPERM, say): no SIGURG exists, and the runtime,
    /// which believes one is pending (`m.signalPending`), sends no other to that thread.
    SignalFailed,
    /// No outcome within the expiry window (thread gone, or events lost).
    Expired,
    /// Tracing ended first.
    Unfinished,
    /// `preemptone` had nothing to do: the M runs no user goroutine, or is the caller's own
    /// (stop-the-world skips itself). Counted, not shown live.
    NoTarget,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn is_preemption(self) -> bool {
        matches!(self, Self::Async(_) | Self::Cooperative(_))
    }
}

/// CLOCK_MONOTONIC timestamps of each link an attempt went through, indexed by [`Link`].
/// `Tick` is the sysmon tick the request was made in; `Request` the `preemptone` or
/// `suspendG` (or the `signalM` when nothing came before it); `Off` the reschedule or park.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamps([Option<u64>; LINK_COUNT]);

impl Index<Link> for Stamps {
    type Output = Option<u64>;

    fn index(&self, link: Link) -> &Option<u64> {
        &self.0[link as usize]
    }
}

impl IndexMut<Link> for Stamps {
    fn index_mut(&mut self, link: Link) -> &mut Option<u64> {
        &mut self.0[link as usize]
    }
}

impl Stamps {
    /// Every link with its stamp, in chain order.
    pub fn iter(&self) -> impl Iterator<Item = (Link, Option<u64>)> + '_ {
        Link::ALL.into_iter().map(|link| (link, self[link]))
    }
}

/// A hop: from one link of the chain to a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hop {
    pub from: Link,
    pub to: Link,
}

const fn hop(from: Link, to: Link) -> Hop {
    Hop { from, to }
}

impl Hop {
    pub const TICK_TO_REQUEST: Hop = hop(Link::Tick, Link::Request);
    pub const REQUEST_TO_SIGNAL: Hop = hop(Link::Request, Link::SignalM);
    pub const SIGNAL_TO_TGKILL: Hop = hop(Link::SignalM, Link::Tgkill);
    /// tgkill → delivery on the target thread: the kernel's part.
    pub const TGKILL_TO_DELIVER: Hop = hop(Link::Tgkill, Link::Deliver);
    pub const DELIVER_TO_HANDLER: Hop = hop(Link::Deliver, Link::Handler);
    pub const HANDLER_TO_PREEMPT: Hop = hop(Link::Handler, Link::AsyncPreempt2);
    pub const PREEMPT_TO_OFF: Hop = hop(Link::AsyncPreempt2, Link::Off);
    /// Request → goroutine off the CPU, whatever the path: the preemption latency.
    pub const REQUEST_TO_OFF: Hop = hop(Link::Request, Link::Off);

    pub const ALL: [Hop; 8] = [
        Hop::TICK_TO_REQUEST,
        Hop::REQUEST_TO_SIGNAL,
        Hop::SIGNAL_TO_TGKILL,
        Hop::TGKILL_TO_DELIVER,
        Hop::DELIVER_TO_HANDLER,
        Hop::HANDLER_TO_PREEMPT,
        Hop::PREEMPT_TO_OFF,
        Hop::REQUEST_TO_OFF,
    ];

    /// `tick→request`, …; the total is `request→off (total)`.
    pub fn name(self) -> String {
        let total = if self == Hop::REQUEST_TO_OFF {
            " (total)"
        } else {
            ""
        };
        format!("{}→{}{total}", self.from.name(), self.to.name())
    }

    /// Stable key for JSON and metrics: `tick_to_request`, ….
    pub fn key(self) -> String {
        format!("{}_to_{}", self.from.key(), self.to.key())
    }
}

/// One preemption attempt, from request to outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub id: u64,
    pub requester: Requester,
    /// Thread that asked (sysmon's, or the GC worker's).
    pub requester_tid: u32,
    /// Thread of the M running the goroutine.
    pub target_tid: Option<u32>,
    /// The goroutine asked to stop.
    pub goid: Option<u64>,
    /// The goroutine that actually stopped (differs when the target moved on).
    pub preempted_goid: Option<u64>,
    pub p_id: Option<i32>,
    pub m_id: Option<i64>,
    /// How long the goroutine had been running when last asked: request time minus
    /// `p.sysmontick.schedwhen` (a lower bound; sysmon requests only).
    pub ran_ns: Option<u64>,
    /// Further requests from the same requester for the same goroutine while this one
    /// had no answer yet (sysmon every tick, stop-the-world every ~100 µs): one attempt.
    pub retries: u32,
    pub stamps: Stamps,
    /// Where the thread was when the signal was handled (or delivered).
    pub interrupted_pc: Option<u64>,
    /// `g.atomicstatus` of the goroutine the handler found.
    pub handler_g_status: Option<u32>,
    /// The handler ran and injected nothing (the final outcome may still be cooperative).
    pub refused: Option<Refusal>,
    pub outcome: Outcome,
    /// Preempted cooperatively while its SIGURG was still in flight: the outcome is known,
    /// the attempt stays open until the handler consumes the signal.
    pub served: Option<Outcome>,
    /// Records were lost while this attempt was open: a link may be missing and the
    /// outcome may be wrong.
    pub events_lost: bool,
}

impl Attempt {
    /// A new attempt with nothing observed yet.
    pub fn new(id: u64, requester: Requester, requester_tid: u32) -> Attempt {
        Attempt {
            id,
            requester,
            requester_tid,
            target_tid: None,
            goid: None,
            preempted_goid: None,
            p_id: None,
            m_id: None,
            ran_ns: None,
            retries: 0,
            stamps: Stamps::default(),
            interrupted_pc: None,
            handler_g_status: None,
            refused: None,
            outcome: Outcome::Unfinished,
            served: None,
            events_lost: false,
        }
    }

    /// Each hop's duration, where both ends were observed (the total only for a
    /// preemption).
    pub fn hops(&self) -> impl Iterator<Item = (Hop, u64)> + '_ {
        Hop::ALL.into_iter().filter_map(move |hop| {
            if hop == Hop::REQUEST_TO_OFF && !self.outcome.is_preemption() {
                return None;
            }
            let d = self.stamps[hop.to]?.checked_sub(self.stamps[hop.from]?)?;
            Some((hop, d))
        })
    }

    pub fn hop(&self, hop: Hop) -> Option<u64> {
        self.hops().find(|(h, _)| *h == hop).map(|(_, d)| d)
    }

    /// When the attempt began: its first stamp from the request on.
    pub fn start_ns(&self) -> u64 {
        Link::ALL[Link::Request as usize..=Link::Handler as usize]
            .iter()
            .find_map(|&link| self.stamps[link])
            .unwrap_or(0)
    }
}

/// What correlation found, beyond per-event meanings.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// A finished attempt.
    Attempt(Box<Attempt>),
    /// Interval between two consecutive sysmon ticks.
    TickInterval(u64),
}
