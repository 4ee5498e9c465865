//! What every record goes through after decoding, in order: symbols, correlation,
//! aggregation, each output. Also notices losses as they happen (a gap in a CPU's
//! sequence) so the attempts they touched are marked.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    rc::Rc,
    sync::Arc,
};

use tracer_common::{EventKind, Stream};

use crate::{
    correlate::{Caller, Correlator, Finding, Hints},
    events::{Event, EventData, KernelCounters},
    gobin::GoBinary,
    output::{AttemptView, EventView, Output},
    pidns::PidNamespace,
    ringbuf::Record,
    summary::{Aggregator, IntervalReport, IntervalRow, RunInfo, Summary, Total},
    symbolize::{Location, Symbolizer},
};

pub struct Pipeline {
    /// Each traced process's own correlation and aggregation, by host pid.
    processes: BTreeMap<u32, ProcessPipeline>,
    outputs: Vec<Box<dyn Output>>,
    /// Time zero of relative timestamps: when the probes went live.
    pub start_ns: u64,
    /// The next sequence number expected from each (stream, CPU).
    next_seq: HashMap<(u32, u32), u64>,
    /// Several processes are traced (or may be, `--all`): lines name the pid, the
    /// kernel's counters go in a [`Total`] after the per-process summaries.
    multi: bool,
    /// Processes that exec'd (`--all`), with when, for the session to look at.
    execs: Vec<(u32, u64)>,
    /// What the whole run adds up to: the processes already summarised, the records the
    /// pipeline consumed itself, and those of no process.
    total: Total,
    /// The newest timestamp of a record processed: the ring has been read up to here.
    latest_ns: u64,
    /// `--interval`: each process's cumulative counts at the previous report.
    reported: HashMap<u32, IntervalRow>,
    last_report_ns: u64,
}

/// What one traced process's records go through.
pub struct ProcessPipeline {
    pub correlator: Correlator,
    pub aggregator: Aggregator,
    symbolizer: Symbolizer,
    /// Its pid namespace, when not goprobe's: its ids are turned into the host's.
    namespace: Option<PidNamespace>,
}

impl ProcessPipeline {
    /// Ids the process's namespace could not translate.
    pub fn untranslated_ids(&self) -> u64 {
        self.namespace
            .as_ref()
            .map_or(0, |namespace| namespace.untranslated)
    }
}

impl Pipeline {
    pub fn new(outputs: Vec<Box<dyn Output>>, start_ns: u64, multi: bool) -> Pipeline {
        Pipeline {
            processes: BTreeMap::new(),
            outputs,
            start_ns,
            next_seq: HashMap::new(),
            multi,
            execs: Vec::new(),
            total: Total::default(),
            latest_ns: 0,
            reported: HashMap::new(),
            last_report_ns: start_ns,
        }
    }

    /// Writes an `--interval` report: each live process's counts since the previous one.
    /// `run` gives a process's [`RunInfo`].
    pub fn report_interval(
        &mut self,
        now_ns: u64,
        mut run: impl FnMut(u32) -> RunInfo,
    ) -> io::Result<()> {
        let mut rows = Vec::new();
        let mut reported = HashMap::new();
        for (pid, process) in &self.processes {
            let now = process
                .aggregator
                .snapshot(run(*pid), KernelCounters::default());
            let (delta, total) = IntervalRow::since(&now, self.reported.get(pid));
            rows.push(delta);
            reported.insert(*pid, total);
        }
        // Exited processes' counts are forgotten with them.
        self.reported = reported;
        let report = IntervalReport {
            rel_ns: now_ns as i64 - self.start_ns as i64,
            length_ns: now_ns.saturating_sub(self.last_report_ns),
            processes: rows,
        };
        self.last_report_ns = now_ns;
        for output in &mut self.outputs {
            output.interval(&report)?;
        }
        self.flush_outputs()
    }

    /// The newest record processed so far (CLOCK_MONOTONIC ns): records are read in
    /// time order, so everything older has been seen.
    pub fn latest_ns(&self) -> u64 {
        self.latest_ns
    }

    /// Whether lines name the pid and a [`Total`] follows the summaries.
    pub fn is_multi(&self) -> bool {
        self.multi
    }

    /// The processes that exec'd since the last call.
    pub fn take_execs(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.execs)
    }

    /// Routes the records of process `pid` (host pid) to a pipeline of its own.
    pub fn add_process(
        &mut self,
        pid: u32,
        binary: Arc<GoBinary>,
        bias: u64,
        namespace: Option<PidNamespace>,
    ) {
        self.processes.insert(
            pid,
            ProcessPipeline {
                correlator: Correlator::new(),
                aggregator: Aggregator::new(),
                symbolizer: Symbolizer::new(binary, bias),
                namespace,
            },
        );
    }

    /// The live processes' pipelines, in pid order.
    pub fn processes(&self) -> impl Iterator<Item = (u32, &ProcessPipeline)> {
        self.processes.iter().map(|(pid, process)| (*pid, process))
    }

    pub fn process_of(&self, pid: u32) -> Option<&ProcessPipeline> {
        self.processes.get(&pid)
    }

    pub fn process(&mut self, record: Record) -> io::Result<()> {
        match record {
            Record::Event(mut event) => {
                self.latest_ns = self.latest_ns.max(event.ts_ns);
                let loss = self.check_sequence(&event);
                if loss {
                    // A lost record may belong to any process.
                    for process in self.processes.values_mut() {
                        process.correlator.mark_loss();
                    }
                }
                if event.kind == EventKind::ProcessExec {
                    self.total.consumed.add(event.kind);
                    self.execs.push((event.tgid, event.ts_ns));
                    return Ok(());
                }
                let Some(pid) = self.route(&event) else {
                    self.total.unrouted += 1;
                    return Ok(());
                };
                let multi = self.multi;
                let Pipeline {
                    processes,
                    outputs,
                    start_ns,
                    ..
                } = self;
                let process = processes.get_mut(&pid).expect("routed to a traced process");
                if let Some(namespace) = &mut process.namespace {
                    to_host_ids(namespace, pid, &mut event);
                }
                let (location, caller) = locations(&mut process.symbolizer, &event);
                let hints = Hints {
                    // The physical function: `preemptM` is inlined into its callers, so
                    // the innermost frame at signalM's return address is not who asked.
                    caller: caller.as_ref().map(|caller| {
                        Caller::from_function(
                            caller.inlined_into.as_deref().unwrap_or(&caller.function),
                        )
                    }),
                    // A signal interrupting the call an earlier handler injected.
                    in_async_preempt: matches!(
                        event.kind,
                        EventKind::DoSigPreempt | EventKind::SignalDeliver
                    ) && location
                        .as_ref()
                        .is_some_and(|loc| loc.function == "runtime.asyncPreempt"),
                };
                let observed = process.correlator.observe(&event, hints);
                process.aggregator.add(&event, &observed.meaning);
                let view = EventView {
                    event: &event,
                    meaning: &observed.meaning,
                    attempt: observed.attempt,
                    location,
                    caller,
                    rel_ns: event.ts_ns as i64 - *start_ns as i64,
                    multi,
                };
                for output in outputs.iter_mut() {
                    output.event(&view)?;
                }
                flush_findings(pid, process, outputs, *start_ns, multi)
            }
            Record::Malformed(err) => {
                // Charged to the first process: it cannot be told whose it was.
                match self.processes.values_mut().next() {
                    Some(process) => process.aggregator.add_malformed(),
                    None => self.total.malformed += 1,
                }
                crate::diag!("goprobe: warning: malformed record: {err}");
                Ok(())
            }
        }
    }

    /// The traced process a record belongs to: the one it happened in, or for a tgkill
    /// sent from outside, the one it targets.
    fn route(&self, event: &Event) -> Option<u32> {
        if self.processes.contains_key(&event.tgid) {
            return Some(event.tgid);
        }
        match &event.data {
            EventData::Tgkill { target_tgid, .. } | EventData::TgkillFailed { target_tgid, .. }
                if self.processes.contains_key(target_tgid) =>
            {
                Some(*target_tgid)
            }
            _ => None,
        }
    }

    /// Whether a CPU's chain sequence has a gap: records were lost there since its
    /// previous one. The attempts open now may miss a link because of it.
    fn check_sequence(&mut self, event: &Event) -> bool {
        let stream = event.kind.stream();
        let expected = self
            .next_seq
            .insert((stream as u32, event.cpu), event.seq + 1);
        stream == Stream::Chain && expected.is_some_and(|next| event.seq > next)
    }

    pub fn flush_outputs(&mut self) -> io::Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|output| output.flush())
    }

    /// Ends one process's tracing before the run ends (it exited or exec'd): closes what
    /// is open, renders its summary to every output and forgets its state, so a long
    /// run's memory does not grow with the processes that came and went.
    pub fn finish_process(&mut self, pid: u32, info: RunInfo) -> io::Result<()> {
        let Some(process) = self.processes.remove(&pid) else {
            return Ok(());
        };
        let summary = self.summarise(pid, process, info, KernelCounters::default())?;
        self.total.add(&summary);
        // Out now, not with the next records (there may be none for long): whoever reads
        // the output as it grows sees the process end when goprobe does.
        self.flush_outputs()
    }

    fn summarise(
        &mut self,
        pid: u32,
        mut process: ProcessPipeline,
        info: RunInfo,
        kernel: KernelCounters,
    ) -> io::Result<Summary> {
        process.correlator.finish();
        flush_findings(
            pid,
            &mut process,
            &mut self.outputs,
            self.start_ns,
            self.multi,
        )?;
        let ProcessPipeline {
            aggregator,
            mut symbolizer,
            ..
        } = process;
        let summary = aggregator.finish(info, kernel, &mut symbolizer);
        for output in &mut self.outputs {
            output.summary(&summary)?;
        }
        Ok(summary)
    }

    /// Closes what is still open in every process, renders each process's summary to
    /// every output, and returns them in pid order. `run` gives each process's
    /// [`RunInfo`]. The kernel's counters are the whole run's: with one process they are
    /// in its summary; with several each summary has only its own received counts, and
    /// the [`Total`] after them has the kernel's.
    pub fn finish(
        mut self,
        mut run: impl FnMut(u32, &ProcessPipeline) -> RunInfo,
        kernel: KernelCounters,
    ) -> io::Result<Vec<Summary>> {
        let processes = std::mem::take(&mut self.processes);
        let mut summaries = Vec::new();
        for (pid, process) in processes {
            let info = run(pid, &process);
            let counters = if self.multi {
                KernelCounters::default()
            } else {
                kernel.clone()
            };
            let summary = self.summarise(pid, process, info, counters)?;
            self.total.add(&summary);
            summaries.push(summary);
        }
        if self.multi {
            self.total.kernel = kernel;
            for output in &mut self.outputs {
                output.total(&self.total)?;
            }
        }
        for output in &mut self.outputs {
            output.flush()?;
        }
        Ok(summaries)
    }
}

/// Hands what correlation found in one process to its aggregation and every output.
fn flush_findings(
    pid: u32,
    process: &mut ProcessPipeline,
    outputs: &mut [Box<dyn Output>],
    start_ns: u64,
    multi: bool,
) -> io::Result<()> {
    let ProcessPipeline {
        correlator,
        aggregator,
        symbolizer,
        ..
    } = process;
    for finding in correlator.drain_findings() {
        aggregator.add_finding(&finding);
        if let Finding::Attempt(attempt) = &finding {
            let view = AttemptView {
                pid,
                attempt,
                location: attempt.interrupted_pc.and_then(|pc| symbolizer.locate(pc)),
                rel_ns: attempt.start_ns() as i64 - start_ns as i64,
                multi,
            };
            for output in outputs.iter_mut() {
                output.attempt(&view)?;
            }
        }
    }
    Ok(())
}

/// The namespace ids in `event` as host ids: `m.procid`, and the target of a tgkill the
/// process sent (one sent from outside names it by the sender's ids, left as they are).
fn to_host_ids(namespace: &mut PidNamespace, pid: u32, event: &mut Event) {
    match &mut event.data {
        EventData::PreemptRequest { m_tid, .. } | EventData::SignalM { m_tid, .. } => {
            if let Some(tid) = m_tid {
                *tid = namespace.host_tid(*tid);
            }
        }
        EventData::Tgkill {
            target_tgid,
            target_tid,
            ..
        }
        | EventData::TgkillFailed {
            target_tgid,
            target_tid,
            ..
        } if event.tgid == pid => {
            (*target_tgid, *target_tid) = namespace.host_tgkill_target(*target_tgid, *target_tid);
        }
        _ => {}
    }
}

fn locations(
    symbolizer: &mut Symbolizer,
    event: &Event,
) -> (Option<Rc<Location>>, Option<Rc<Location>>) {
    match &event.data {
        EventData::SignalDeliver { user_pc, .. } => (symbolizer.locate(*user_pc), None),
        EventData::Goroutine { pc: Some(pc), .. } => (symbolizer.locate(*pc), None),
        EventData::PreemptRequest { caller_pc, .. } | EventData::SignalM { caller_pc, .. } => {
            (None, symbolizer.locate_caller(*caller_pc))
        }
        _ => (None, None),
    }
}
