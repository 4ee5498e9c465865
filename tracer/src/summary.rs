//! Aggregation: counts by kind, by thread and by preemption path, built while events
//! stream, and the final [`Summary`] every output format renders.

use std::collections::BTreeMap;

use tracer_common::EventKind;

use crate::{
    correlate::{Meaning, PreemptAction, PreemptPath},
    events::Event,
    loader::{KernelCounters, PerKind},
};

/// Preemptions by path and action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreemptionCounts {
    pub async_reschedule: u64,
    pub async_park: u64,
    pub stack_check_reschedule: u64,
    pub stack_check_park: u64,
}

impl PreemptionCounts {
    fn add(&mut self, path: PreemptPath, action: PreemptAction) {
        let slot = match (path, action) {
            (PreemptPath::Async, PreemptAction::Reschedule) => &mut self.async_reschedule,
            (PreemptPath::Async, PreemptAction::Park) => &mut self.async_park,
            (PreemptPath::StackCheck, PreemptAction::Reschedule) => {
                &mut self.stack_check_reschedule
            }
            (PreemptPath::StackCheck, PreemptAction::Park) => &mut self.stack_check_park,
        };
        *slot += 1;
    }

    pub fn cooperative(&self) -> u64 {
        self.stack_check_reschedule + self.stack_check_park
    }
}

#[derive(Default)]
pub struct Aggregator {
    received: PerKind,
    per_thread: BTreeMap<u32, PerKind>,
    preemptions: PreemptionCounts,
    voluntary_yields: u64,
    malformed: u64,
    first_ts_ns: Option<u64>,
    last_ts_ns: Option<u64>,
}

impl Aggregator {
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    pub fn add(&mut self, event: &Event, meaning: &Meaning) {
        let kind = event.kind as usize;
        self.received.0[kind] += 1;
        self.per_thread.entry(event.tid).or_default().0[kind] += 1;
        self.first_ts_ns.get_or_insert(event.ts_ns);
        self.last_ts_ns = Some(event.ts_ns);
        match meaning {
            Meaning::Preemption(p) => self.preemptions.add(p.path, p.action),
            Meaning::VoluntaryYield => self.voluntary_yields += 1,
            Meaning::None => {}
        }
    }

    pub fn add_malformed(&mut self) {
        self.malformed += 1;
    }

    pub fn finish(self, run: RunInfo, kernel: KernelCounters) -> Summary {
        Summary {
            run,
            received: self.received,
            per_thread: self.per_thread,
            preemptions: self.preemptions,
            voluntary_yields: self.voluntary_yields,
            malformed: self.malformed,
            kernel,
            first_ts_ns: self.first_ts_ns,
            last_ts_ns: self.last_ts_ns,
        }
    }
}

/// Facts about the run, known outside the event stream.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub pid: u32,
    pub binary: String,
    pub go_version: String,
    pub duration_ns: u64,
    /// (link, program, what it is attached to, outcome) per probe in the plan.
    pub probes: Vec<ProbeLine>,
    pub end_reason: String,
}

#[derive(Clone, Debug)]
pub struct ProbeLine {
    pub link: &'static str,
    pub program: &'static str,
    pub target: String,
    /// "attached", "absent: …", "not used: …", "failed: …".
    pub status: String,
    pub attached: bool,
}

pub struct Summary {
    pub run: RunInfo,
    pub received: PerKind,
    pub per_thread: BTreeMap<u32, PerKind>,
    pub preemptions: PreemptionCounts,
    pub voluntary_yields: u64,
    pub malformed: u64,
    pub kernel: KernelCounters,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

impl Summary {
    pub fn lost_total(&self) -> u64 {
        self.kernel.lost.total()
    }

    /// Records the kernel says it submitted but userspace never decoded (should be 0).
    pub fn unaccounted(&self) -> u64 {
        self.kernel
            .submitted
            .total()
            .saturating_sub(self.received.total() + self.malformed)
    }

    pub fn async_preemptions(&self) -> u64 {
        self.received.get(EventKind::AsyncPreempt2)
    }
}
