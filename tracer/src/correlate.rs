//! Correlation: turning the per-hook event stream into preemptions.
//!
//! Events of one thread arrive in the order they happened (each is submitted before the
//! thread runs on), so per-thread state is enough to tell how a goroutine got to be
//! rescheduled or parked: if `asyncPreempt2` ran on this thread for this goroutine just
//! before, it was an asynchronous preemption; otherwise the goroutine reached the runtime
//! through its function prologue's stack check (`morestack` → `newstack`), the
//! cooperative path.

use std::collections::HashMap;

use tracer_common::EventKind;

use crate::events::{Event, EventData};

/// How a preempted goroutine entered the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreemptPath {
    /// SIGURG → `doSigPreempt` injected a call → `asyncPreempt` → `asyncPreempt2`.
    Async,
    /// Prologue stack check saw `stackPreempt` → `morestack` → `newstack`.
    StackCheck,
}

impl PreemptPath {
    pub fn name(self) -> &'static str {
        match self {
            Self::Async => "async",
            Self::StackCheck => "stack_check",
        }
    }
}

/// What the runtime did with the goroutine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PreemptAction {
    /// Back on a run queue (`goschedImpl(gp, preempted=true)` / `gopreempt_m`).
    Reschedule,
    /// Parked in `_Gpreempted` for a `suspendG` (GC stack scan), via `preemptPark`.
    Park,
}

impl PreemptAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Reschedule => "reschedule",
            Self::Park => "park",
        }
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
    /// Where the goroutine was interrupted (async path only).
    pub resume_pc: Option<u64>,
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

#[derive(Default)]
struct ThreadState {
    /// `asyncPreempt2` seen on this thread, not yet followed by its reschedule/park.
    pending_async: Option<PendingAsync>,
    /// Go 1.21: `gopreempt_m` seen; the `goschedImpl` that follows is its continuation.
    pending_gopreempt_m: Option<u64>,
}

#[derive(Clone, Copy)]
struct PendingAsync {
    g_addr: u64,
    resume_pc: Option<u64>,
}

#[derive(Default)]
pub struct Correlator {
    threads: HashMap<u32, ThreadState>,
}

impl Correlator {
    pub fn new() -> Correlator {
        Correlator::default()
    }

    pub fn observe(&mut self, event: &Event) -> Meaning {
        let EventData::Goroutine {
            g_addr,
            goid,
            pc,
            preempted,
            ..
        } = event.data
        else {
            return Meaning::None;
        };
        let thread = self.threads.entry(event.tid).or_default();
        let preemption = |thread: &mut ThreadState, action| {
            let pending = thread
                .pending_async
                .take()
                .filter(|pending| pending.g_addr == g_addr);
            Meaning::Preemption(Preemption {
                ts_ns: event.ts_ns,
                tid: event.tid,
                goid,
                path: if pending.is_some() {
                    PreemptPath::Async
                } else {
                    PreemptPath::StackCheck
                },
                action,
                resume_pc: pending.and_then(|pending| pending.resume_pc),
            })
        };
        match event.kind {
            EventKind::AsyncPreempt2 => {
                thread.pending_async = Some(PendingAsync {
                    g_addr,
                    resume_pc: pc,
                });
                thread.pending_gopreempt_m = None;
                Meaning::None
            }
            EventKind::PreemptPark => preemption(thread, PreemptAction::Park),
            EventKind::GopreemptM => {
                thread.pending_gopreempt_m = Some(g_addr);
                preemption(thread, PreemptAction::Reschedule)
            }
            EventKind::GoschedImpl => match preempted {
                Some(true) => preemption(thread, PreemptAction::Reschedule),
                Some(false) => Meaning::VoluntaryYield,
                // Go 1.21: no flag; `gopreempt_m` just before on this thread means this is
                // its call, already counted.
                None if thread.pending_gopreempt_m.take() == Some(g_addr) => Meaning::None,
                None => Meaning::VoluntaryYield,
            },
            _ => Meaning::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(kind: EventKind, tid: u32, g_addr: u64, preempted: Option<bool>) -> Event {
        Event {
            kind,
            ts_ns: 1,
            tid,
            tgid: 1,
            cpu: 0,
            data: EventData::Goroutine {
                g_addr,
                goid: Some(g_addr / 0x100),
                pc: (kind == EventKind::AsyncPreempt2).then_some(0x4a0000),
                g_status: Some(2),
                preempted,
                preempt_flags: None,
            },
        }
    }

    fn path_of(meaning: Meaning) -> (PreemptPath, PreemptAction) {
        let Meaning::Preemption(p) = meaning else {
            panic!("expected a preemption, got {meaning:?}");
        };
        (p.path, p.action)
    }

    #[test]
    fn async_then_reschedule_on_the_same_thread() {
        let mut c = Correlator::new();
        assert_eq!(
            c.observe(&hook(EventKind::AsyncPreempt2, 5, 0xc000, None)),
            Meaning::None
        );
        let meaning = c.observe(&hook(EventKind::GoschedImpl, 5, 0xc000, Some(true)));
        assert_eq!(
            path_of(meaning),
            (PreemptPath::Async, PreemptAction::Reschedule)
        );
        let Meaning::Preemption(p) = meaning else {
            unreachable!()
        };
        assert_eq!(p.resume_pc, Some(0x4a0000));
        assert_eq!(p.goid, Some(0xc0));
        // The pending async is consumed: a second reschedule is a stack-check one.
        let again = c.observe(&hook(EventKind::GoschedImpl, 5, 0xc000, Some(true)));
        assert_eq!(path_of(again).0, PreemptPath::StackCheck);
    }

    #[test]
    fn async_on_another_thread_does_not_count() {
        let mut c = Correlator::new();
        c.observe(&hook(EventKind::AsyncPreempt2, 5, 0xc000, None));
        let other = c.observe(&hook(EventKind::GoschedImpl, 6, 0xc000, Some(true)));
        assert_eq!(path_of(other).0, PreemptPath::StackCheck);
        let other_g = c.observe(&hook(EventKind::PreemptPark, 5, 0xd000, None));
        assert_eq!(
            path_of(other_g),
            (PreemptPath::StackCheck, PreemptAction::Park)
        );
    }

    #[test]
    fn park_after_async() {
        let mut c = Correlator::new();
        c.observe(&hook(EventKind::AsyncPreempt2, 5, 0xc000, None));
        let park = c.observe(&hook(EventKind::PreemptPark, 5, 0xc000, None));
        assert_eq!(path_of(park), (PreemptPath::Async, PreemptAction::Park));
    }

    #[test]
    fn voluntary_gosched_is_not_a_preemption() {
        let mut c = Correlator::new();
        assert_eq!(
            c.observe(&hook(EventKind::GoschedImpl, 5, 0xc000, Some(false))),
            Meaning::VoluntaryYield
        );
    }

    #[test]
    fn go121_gopreempt_m_then_gosched_counts_once() {
        let mut c = Correlator::new();
        c.observe(&hook(EventKind::AsyncPreempt2, 5, 0xc000, None));
        let first = c.observe(&hook(EventKind::GopreemptM, 5, 0xc000, None));
        assert_eq!(
            path_of(first),
            (PreemptPath::Async, PreemptAction::Reschedule)
        );
        assert_eq!(
            c.observe(&hook(EventKind::GoschedImpl, 5, 0xc000, None)),
            Meaning::None
        );
        // A later goschedImpl without gopreempt_m is runtime.Gosched.
        assert_eq!(
            c.observe(&hook(EventKind::GoschedImpl, 5, 0xc000, None)),
            Meaning::VoluntaryYield
        );
        // Stack-check path in 1.21: gopreempt_m without asyncPreempt2.
        let coop = c.observe(&hook(EventKind::GopreemptM, 5, 0xc000, None));
        assert_eq!(path_of(coop).0, PreemptPath::StackCheck);
    }
}
