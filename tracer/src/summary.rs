//! Aggregation: built while events stream, bounded in memory, and turned at the end into
//! the [`Summary`] every output format renders.

use std::collections::{BTreeMap, HashMap};

use tracer_common::EventKind;

use crate::{
    correlate::{
        Attempt, Finding, Hop, Meaning, Outcome, PreemptAction, PreemptPath, Refusal, Requester,
    },
    events::{Event, EventData},
    events::{KernelCounters, PerKind},
    histogram::{Distribution, Stats},
    symbolize::{Location, Symbolizer},
};

/// How many rows the location and goroutine tables keep.
pub const TOP_N: usize = 10;

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

/// Per-goroutine counts: the fairness view of seed Tasks 3 and 4.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoroutineStats {
    pub async_preemptions: u64,
    pub cooperative_preemptions: u64,
    pub parks: u64,
    /// Preemption requests naming this goroutine, retries included.
    pub requests: u64,
    /// Requests whose signal the handler refused.
    pub refused: u64,
    /// Time running when asked to stop (sysmon requests): sum, count and max, in ns.
    pub ran_sum_ns: u64,
    pub ran_count: u64,
    pub ran_max_ns: u64,
}

impl GoroutineStats {
    pub fn preemptions(&self) -> u64 {
        self.async_preemptions + self.cooperative_preemptions
    }

    pub fn ran_mean_ns(&self) -> Option<u64> {
        self.ran_sum_ns.checked_div(self.ran_count)
    }
}

#[derive(Default)]
pub struct Aggregator {
    pub(crate) received: PerKind,
    pub(crate) per_thread: BTreeMap<u32, PerKind>,
    pub(crate) preemptions: PreemptionCounts,
    pub(crate) malformed: u64,
    pub(crate) outcomes: BTreeMap<(Requester, Outcome), u64>,
    pub(crate) refusals: BTreeMap<Refusal, u64>,
    pub(crate) hops: BTreeMap<Hop, Distribution>,
    pub(crate) ran_before_request: Distribution,
    pub(crate) tick_intervals: Distribution,
    pub(crate) gc_delays: Distribution,
    pub(crate) stw_delays: Distribution,
    pub(crate) async_locations: HashMap<u64, u64>,
    pub(crate) cooperative_locations: HashMap<u64, u64>,
    pub(crate) refused_locations: HashMap<u64, u64>,
    pub(crate) goroutines: HashMap<u64, GoroutineStats>,
    pub(crate) tgkill_failures: BTreeMap<u32, u64>,
}

impl Aggregator {
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    pub fn add(&mut self, event: &Event, meaning: &Meaning) {
        let kind = event.kind as usize;
        self.received.0[kind] += 1;
        self.per_thread.entry(event.tid).or_default().0[kind] += 1;
        if let EventData::TgkillFailed { errno, .. } = event.data {
            *self.tgkill_failures.entry(errno).or_default() += 1;
        }
        match meaning {
            Meaning::Preemption(p) => {
                self.preemptions.add(p.path, p.action);
                if let Some(pc) = p.pc {
                    let locations = match p.path {
                        PreemptPath::Async => &mut self.async_locations,
                        PreemptPath::StackCheck => &mut self.cooperative_locations,
                    };
                    *locations.entry(pc).or_default() += 1;
                }
                if let Some(goid) = p.goid {
                    let g = self.goroutines.entry(goid).or_default();
                    match (p.path, p.action) {
                        (_, PreemptAction::Park) => g.parks += 1,
                        (PreemptPath::Async, _) => g.async_preemptions += 1,
                        (PreemptPath::StackCheck, _) => g.cooperative_preemptions += 1,
                    }
                }
            }
            Meaning::VoluntaryYield | Meaning::None => {}
        }
    }

    pub fn add_finding(&mut self, finding: &Finding) {
        match finding {
            Finding::TickInterval(ns) => self.tick_intervals.add(*ns),
            Finding::Attempt(attempt) => self.add_attempt(attempt),
        }
    }

    fn add_attempt(&mut self, a: &Attempt) {
        *self.outcomes.entry((a.requester, a.outcome)).or_default() += 1;
        for (hop, ns) in a.hops() {
            self.hops.entry(hop).or_default().add(ns);
        }
        if let Some(total) = a.hop(Hop::REQUEST_TO_OFF) {
            match a.requester {
                Requester::Gc => self.gc_delays.add(total),
                Requester::StopTheWorld => self.stw_delays.add(total),
                _ => {}
            }
        }
        if let Some(ran) = a.ran_ns {
            self.ran_before_request.add(ran);
        }
        if let Outcome::Refused(refusal) = a.outcome {
            *self.refusals.entry(refusal).or_default() += 1;
            if let Some(pc) = a.interrupted_pc {
                *self.refused_locations.entry(pc).or_default() += 1;
            }
        }
        if let Some(goid) = a.goid {
            let g = self.goroutines.entry(goid).or_default();
            g.requests += 1 + u64::from(a.retries);
            if matches!(a.outcome, Outcome::Refused(_)) {
                g.refused += 1;
            }
            if let Some(ran) = a.ran_ns {
                g.ran_sum_ns += ran;
                g.ran_count += 1;
                g.ran_max_ns = g.ran_max_ns.max(ran);
            }
        }
    }

    pub fn add_malformed(&mut self) {
        self.malformed += 1;
    }

    /// The live state as a [`Summary`], for what renders while tracing (Prometheus):
    /// every counter, and the distributions with their buckets only (percentiles from the
    /// buckets). Top locations and
    /// goroutines are left empty: they need symbols and a sort, and are rendered only at
    /// the end.
    pub fn snapshot(&self, run: RunInfo, kernel: KernelCounters) -> Summary {
        Summary {
            voluntary_yields: run.voluntary_yields,
            run,
            received: self.received.clone(),
            per_thread: BTreeMap::new(),
            preemptions: self.preemptions.clone(),
            malformed: self.malformed,
            kernel,
            outcomes: self.outcomes.clone(),
            refusals: self.refusals.clone(),
            hops: self
                .hops
                .iter()
                .filter_map(|(hop, d)| Some((*hop, d.without_samples().stats()?)))
                .collect(),
            hop_distributions: self
                .hops
                .iter()
                .map(|(hop, d)| (*hop, d.without_samples()))
                .collect(),
            ran_before_request: self.ran_before_request.without_samples(),
            tick_intervals: self.tick_intervals.without_samples(),
            gc_delays: self.gc_delays.without_samples(),
            stw_delays: self.stw_delays.without_samples(),
            async_locations: Vec::new(),
            cooperative_locations: Vec::new(),
            refused_locations: Vec::new(),
            goroutines: Vec::new(),
            goroutine_count: self.goroutines.len(),
            tgkill_failures: self.tgkill_failures.clone(),
        }
    }

    pub fn finish(
        self,
        run: RunInfo,
        kernel: KernelCounters,
        symbolizer: &mut Symbolizer,
    ) -> Summary {
        let mut top = |counts: HashMap<u64, u64>| -> Vec<LocationCount> {
            // Merge PCs of the same source line.
            let mut by_line: HashMap<(String, String, u32), u64> = HashMap::new();
            let mut unknown = 0;
            for (pc, n) in counts {
                match symbolizer.locate(pc) {
                    Some(loc) => {
                        *by_line
                            .entry((loc.function.clone(), loc.file.clone(), loc.line))
                            .or_default() += n;
                    }
                    None => unknown += n,
                }
            }
            let mut rows: Vec<LocationCount> = by_line
                .into_iter()
                .map(|((function, file, line), count)| LocationCount {
                    location: Some(Location {
                        function,
                        file,
                        line,
                        inlined_into: None,
                    }),
                    count,
                })
                .collect();
            if unknown > 0 {
                rows.push(LocationCount {
                    location: None,
                    count: unknown,
                });
            }
            rows.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| a.location.cmp(&b.location))
            });
            rows.truncate(TOP_N);
            rows
        };
        let async_locations = top(self.async_locations);
        let cooperative_locations = top(self.cooperative_locations);
        let refused_locations = top(self.refused_locations);
        let mut goroutines: Vec<(u64, GoroutineStats)> = self.goroutines.into_iter().collect();
        goroutines.sort_by(|a, b| {
            (b.1.preemptions() + b.1.requests)
                .cmp(&(a.1.preemptions() + a.1.requests))
                .then(a.0.cmp(&b.0))
        });
        let goroutine_count = goroutines.len();
        goroutines.truncate(TOP_N * 2);
        Summary {
            voluntary_yields: run.voluntary_yields,
            run,
            received: self.received,
            per_thread: self.per_thread,
            preemptions: self.preemptions,
            malformed: self.malformed,
            kernel,
            outcomes: self.outcomes,
            refusals: self.refusals,
            hops: self
                .hops
                .iter()
                .filter_map(|(hop, d)| Some((*hop, d.stats()?)))
                .collect(),
            hop_distributions: self.hops,
            ran_before_request: self.ran_before_request,
            tick_intervals: self.tick_intervals,
            gc_delays: self.gc_delays,
            stw_delays: self.stw_delays,
            async_locations,
            cooperative_locations,
            refused_locations,
            goroutines,
            goroutine_count,
            tgkill_failures: self.tgkill_failures,
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
    pub probes: Vec<ProbeLine>,
    pub end_reason: String,
    /// Voluntary yields the kernel counted, when they were observed (`--yields`).
    pub voluntary_yields: Option<u64>,
    /// The target's `/proc` facts at the end of tracing, if it was still running.
    pub process: Option<crate::target::ProcessFacts>,
    /// Its pid namespace and container, when not the host's.
    pub container: crate::container::ContainerInfo,
    /// Namespace thread ids that could not be turned into host ids (their thread had
    /// exited before goprobe looked): records left with the namespace's id.
    pub untranslated_ids: u64,
    /// The run traced several processes (or `--all`): the kernel's counters (lost,
    /// submitted) are in the [`Total`], not in each process's summary.
    pub shares_run: bool,
}

#[derive(Clone, Debug)]
pub struct ProbeLine {
    pub link: &'static str,
    pub program: &'static str,
    pub target: String,
    /// "attached …", "absent: …", "not used: …", "failed: …".
    pub status: String,
    pub attached: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocationCount {
    /// `None` when the PC could not be symbolised.
    pub location: Option<Location>,
    pub count: u64,
}

pub struct Summary {
    pub run: RunInfo,
    pub received: PerKind,
    pub per_thread: BTreeMap<u32, PerKind>,
    pub preemptions: PreemptionCounts,
    /// `None` when yields were not observed (no `--yields`).
    pub voluntary_yields: Option<u64>,
    pub malformed: u64,
    pub kernel: KernelCounters,
    /// Finished attempts by requester and outcome.
    pub outcomes: BTreeMap<(Requester, Outcome), u64>,
    pub refusals: BTreeMap<Refusal, u64>,
    pub hops: BTreeMap<Hop, Stats>,
    /// Every hop's values (what `hops` summarises).
    pub hop_distributions: BTreeMap<Hop, Distribution>,
    /// How long goroutines had run when sysmon asked them to stop.
    pub ran_before_request: Distribution,
    pub tick_intervals: Distribution,
    /// Request → off CPU for GC (`suspendG`) requests.
    pub gc_delays: Distribution,
    /// Request → off CPU for stop-the-world (`preemptall`) requests.
    pub stw_delays: Distribution,
    pub async_locations: Vec<LocationCount>,
    /// Functions whose prologue stack check preempted the goroutine.
    pub cooperative_locations: Vec<LocationCount>,
    pub refused_locations: Vec<LocationCount>,
    /// The most requested or preempted goroutines, most first.
    pub goroutines: Vec<(u64, GoroutineStats)>,
    /// All goroutines seen.
    pub goroutine_count: usize,
    /// Failed `tgkill(SIGURG)` calls by errno.
    pub tgkill_failures: BTreeMap<u32, u64>,
}

/// `--interval`: what each live process did since the previous report.
pub struct IntervalReport {
    /// Nanoseconds since tracing started.
    pub rel_ns: i64,
    /// The interval's length.
    pub length_ns: u64,
    pub processes: Vec<IntervalRow>,
}

/// One process in an [`IntervalReport`]; counts are the interval's.
pub struct IntervalRow {
    pub pid: u32,
    pub binary: String,
    pub asynchronous: u64,
    pub cooperative: u64,
    pub attempts: u64,
    /// Attempts by outcome name, in the interval.
    pub by_outcome: BTreeMap<&'static str, u64>,
    /// p99 of request → off CPU since tracing began (not only this interval).
    pub request_to_off_p99_ns: Option<u64>,
}

impl IntervalRow {
    /// `now`'s counts minus `before`'s (a process's previous row, cumulative).
    pub fn since(now: &Summary, before: Option<&IntervalRow>) -> (IntervalRow, IntervalRow) {
        let total = IntervalRow {
            pid: now.run.pid,
            binary: now.run.binary.clone(),
            asynchronous: now.async_preemptions(),
            cooperative: now.preemptions.cooperative(),
            attempts: now.attempts(),
            by_outcome: now.by_outcome(),
            request_to_off_p99_ns: now
                .hops
                .get(&crate::correlate::Hop::REQUEST_TO_OFF)
                .map(|stats| stats.p99),
        };
        let minus = |a: u64, b: Option<u64>| a.saturating_sub(b.unwrap_or(0));
        let delta = IntervalRow {
            pid: total.pid,
            binary: total.binary.clone(),
            asynchronous: minus(total.asynchronous, before.map(|b| b.asynchronous)),
            cooperative: minus(total.cooperative, before.map(|b| b.cooperative)),
            attempts: minus(total.attempts, before.map(|b| b.attempts)),
            by_outcome: total
                .by_outcome
                .iter()
                .map(|(outcome, n)| {
                    let was = before.and_then(|b| b.by_outcome.get(outcome).copied());
                    (*outcome, minus(*n, was))
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
            request_to_off_p99_ns: total.request_to_off_p99_ns,
        };
        (delta, total)
    }
}

/// At most this many processes get a row in the [`Total`]: a node daemon sees processes
/// come and go for weeks, and a row per process would grow without end. The counts of
/// the others are still in the totals.
pub const MAX_TOTAL_ROWS: usize = 1000;

/// The whole run when it traced several processes: one row per process (the first
/// [`MAX_TOTAL_ROWS`]), and the kernel's counters (which are per kind, not per process).
#[derive(Default)]
pub struct Total {
    pub processes: Vec<ProcessRow>,
    /// Processes summarised beyond [`MAX_TOTAL_ROWS`], without a row.
    pub rows_left_out: u64,
    pub received: PerKind,
    pub malformed: u64,
    pub kernel: KernelCounters,
    /// Records that belonged to no traced process.
    pub unrouted: u64,
    /// Records the run itself consumed (execs, for `--all`).
    pub consumed: PerKind,
}

/// One process in the [`Total`].
pub struct ProcessRow {
    pub pid: u32,
    pub binary: String,
    pub go_version: String,
    pub container: crate::container::ContainerInfo,
    pub end_reason: String,
    pub events: u64,
    pub asynchronous: u64,
    pub cooperative: u64,
    pub attempts: u64,
}

impl ProcessRow {
    pub fn of(s: &Summary) -> ProcessRow {
        ProcessRow {
            pid: s.run.pid,
            binary: s.run.binary.clone(),
            go_version: s.run.go_version.clone(),
            container: s.run.container.clone(),
            end_reason: s.run.end_reason.clone(),
            events: s.received.total(),
            asynchronous: s.async_preemptions(),
            cooperative: s.preemptions.cooperative(),
            attempts: s.attempts(),
        }
    }
}

impl Total {
    /// Adds a process's summary: its row and its counts.
    pub fn add(&mut self, s: &Summary) {
        if self.processes.len() < MAX_TOTAL_ROWS {
            self.processes.push(ProcessRow::of(s));
        } else {
            self.rows_left_out += 1;
        }
        for (total, n) in self.received.0.iter_mut().zip(s.received.0) {
            *total += n;
        }
        self.malformed += s.malformed;
    }

    pub fn lost_total(&self) -> u64 {
        self.kernel.lost_total()
    }

    /// Records the kernel submitted that no process's pipeline decoded.
    pub fn unaccounted(&self) -> u64 {
        self.kernel.submitted.total().saturating_sub(
            self.received.total() + self.consumed.total() + self.malformed + self.unrouted,
        )
    }
}

impl Summary {
    /// A hop's distribution, empty when it was never seen.
    pub fn hop(&self, hop: Hop) -> &Distribution {
        static UNSEEN: std::sync::LazyLock<Distribution> =
            std::sync::LazyLock::new(Distribution::default);
        self.hop_distributions.get(&hop).unwrap_or(&UNSEEN)
    }

    /// `EPERM 3, ESRCH 1`: the failed tgkill(SIGURG) calls by errno, for text.
    pub fn tgkill_failure_counts(&self) -> String {
        self.tgkill_failures
            .iter()
            .map(|(errno, n)| format!("{} {n}", crate::events::errno_name(*errno)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn lost_total(&self) -> u64 {
        self.kernel.lost_total()
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

    pub fn attempts(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// Attempts by outcome name (async, cooperative, refused, ...), over all requesters.
    pub fn by_outcome(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((_, outcome), n) in &self.outcomes {
            *out.entry(outcome.name()).or_default() += n;
        }
        out
    }

    pub fn by_requester(&self, requester: Requester) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for ((r, outcome), n) in &self.outcomes {
            if *r == requester {
                *out.entry(outcome.name()).or_default() += n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_lists_a_bounded_number_of_processes_but_counts_them_all() {
        let mut total = Total::default();
        let aggregator = Aggregator::new();
        for pid in 0..MAX_TOTAL_ROWS as u32 + 5 {
            let run = RunInfo {
                pid,
                ..RunInfo::default()
            };
            total.add(&aggregator.snapshot(run, KernelCounters::default()));
        }
        assert_eq!(total.processes.len(), MAX_TOTAL_ROWS);
        assert_eq!(total.rows_left_out, 5);
    }
}
