//! What every record goes through after decoding, in order: symbols, correlation,
//! aggregation, each output. Also notices losses as they happen (a gap in a CPU's
//! sequence) so the attempts they touched are marked.

use std::{collections::HashMap, io, rc::Rc, sync::Arc};

use tracer_common::{EventKind, Stream};

use crate::{
    correlate::{Caller, Correlator, Finding, Hints},
    events::{Event, EventData, KernelCounters},
    gobin::GoBinary,
    output::{AttemptView, EventView, Output},
    pidns::PidNamespace,
    ringbuf::Record,
    summary::{Aggregator, RunInfo, Summary},
    symbolize::{Location, Symbolizer},
};

pub struct Pipeline {
    pub correlator: Correlator,
    pub aggregator: Aggregator,
    symbolizer: Symbolizer,
    outputs: Vec<Box<dyn Output>>,
    /// Time zero of relative timestamps: when the probes went live.
    pub start_ns: u64,
    /// The traced process.
    pid: u32,
    /// Its pid namespace, when not goprobe's: its ids are turned into the host's.
    namespace: Option<PidNamespace>,
    /// The next sequence number expected from each (stream, CPU).
    next_seq: HashMap<(u32, u32), u64>,
}

impl Pipeline {
    pub fn new(
        pid: u32,
        binary: Arc<GoBinary>,
        bias: u64,
        outputs: Vec<Box<dyn Output>>,
        start_ns: u64,
        namespace: Option<PidNamespace>,
    ) -> Pipeline {
        Pipeline {
            correlator: Correlator::new(),
            aggregator: Aggregator::new(),
            symbolizer: Symbolizer::new(binary, bias),
            outputs,
            start_ns,
            pid,
            namespace,
            next_seq: HashMap::new(),
        }
    }

    /// Ids the process's namespace translated, and those it could not.
    pub fn namespace(&self) -> Option<&PidNamespace> {
        self.namespace.as_ref()
    }

    pub fn process(&mut self, record: Record) -> io::Result<()> {
        match record {
            Record::Event(mut event) => {
                self.check_sequence(&event);
                if let Some(namespace) = &mut self.namespace {
                    to_host_ids(namespace, self.pid, &mut event);
                }
                let (location, caller) = locations(&mut self.symbolizer, &event);
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
                let observed = self.correlator.observe(&event, hints);
                self.aggregator.add(&event, &observed.meaning);
                let view = EventView {
                    event: &event,
                    meaning: &observed.meaning,
                    attempt: observed.attempt,
                    location,
                    caller,
                    rel_ns: event.ts_ns as i64 - self.start_ns as i64,
                };
                for output in &mut self.outputs {
                    output.event(&view)?;
                }
                self.flush_findings()
            }
            Record::Malformed(err) => {
                self.aggregator.add_malformed();
                crate::diag!("goprobe: warning: malformed record: {err}");
                Ok(())
            }
        }
    }

    /// A gap in a CPU's chain sequence: records were lost there since its previous one.
    /// The attempts open now may miss a link because of it.
    fn check_sequence(&mut self, event: &Event) {
        let stream = event.kind.stream();
        let expected = self
            .next_seq
            .insert((stream as u32, event.cpu), event.seq + 1);
        if stream == Stream::Chain && expected.is_some_and(|next| event.seq > next) {
            self.correlator.mark_loss();
        }
    }

    /// Hands what correlation found to aggregation and output.
    fn flush_findings(&mut self) -> io::Result<()> {
        let Pipeline {
            correlator,
            aggregator,
            symbolizer,
            outputs,
            start_ns,
            pid,
            ..
        } = self;
        for finding in correlator.drain_findings() {
            aggregator.add_finding(&finding);
            if let Finding::Attempt(attempt) = &finding {
                let view = AttemptView {
                    pid: *pid,
                    attempt,
                    location: attempt.interrupted_pc.and_then(|pc| symbolizer.locate(pc)),
                    rel_ns: attempt.start_ns() as i64 - *start_ns as i64,
                };
                for output in outputs.iter_mut() {
                    output.attempt(&view)?;
                }
            }
        }
        Ok(())
    }

    pub fn flush_outputs(&mut self) -> io::Result<()> {
        self.outputs
            .iter_mut()
            .try_for_each(|output| output.flush())
    }

    /// Closes what is still open, renders the summary to every output and returns it.
    pub fn finish(mut self, run: RunInfo, kernel: KernelCounters) -> io::Result<Summary> {
        self.correlator.finish();
        self.flush_findings()?;
        let Pipeline {
            aggregator,
            mut symbolizer,
            mut outputs,
            ..
        } = self;
        let summary = aggregator.finish(run, kernel, &mut symbolizer);
        for output in &mut outputs {
            output.summary(&summary)?;
            output.flush()?;
        }
        Ok(summary)
    }
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
