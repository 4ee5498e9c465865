//! Perfetto trace output (`--perfetto FILE`): a `perfetto.protos.Trace`, the sequence of
//! `TracePacket`s with `TrackEvent`s that <https://ui.perfetto.dev> and `trace_processor`
//! read natively.
//!
//! What the trace holds:
//! - a process track (the traced pid, named after the binary) and a track per thread that
//!   produced an event, described with `ProcessDescriptor`/`ThreadDescriptor` so the UI
//!   groups them; threads are named `sysmon` (the thread running `retake`), `M<id>` once a
//!   `signalM` has named the M running on it, else `thread`;
//! - an instant per event of the chain (everything but `execute`), on the track of the
//!   thread that ran the hook, named by its kind exactly as in the JSON output
//!   (`sysmon_tick`, `preempt_request`, `signal_m`, ...), with debug annotations for its
//!   fields (goroutine, target thread, code location, path and action of a preemption);
//! - goroutine run slices `g<goid>` on thread tracks, from `runtime.execute` (recorded
//!   with `--slices`, which `--perfetto` implies) to the next event showing that goroutine
//!   leave the CPU on that thread (`gosched`, `gopreempt_m`, `preempt_park`), or the next
//!   `execute` there, or the end of the trace; the `ended_by` annotation says which. A
//!   goroutine that blocks, enters a syscall or exits is not observed leaving, so its
//!   slice runs until the thread's next `execute`: an upper bound. Without `execute`
//!   events (no `runtime.execute` probe) there are no run slices, only instants;
//! - a flow per preemption attempt joining its links in order (sysmon tick → request →
//!   signalM → tgkill → signal_generate → signal_deliver → doSigPreempt → asyncPreempt2 →
//!   reschedule/park), with the attempt's id, requester and outcome annotated on its
//!   first link after the tick (`attempt.*`). Flow id: `pid << 40 | attempt id`;
//! - a `goprobe_summary` instant on the process track at the end (counts, lost events);
//! - `ClockSnapshot`s (BOOTTIME, MONOTONIC, REALTIME read together) at the start and the
//!   end.
//!
//! Timestamps are the events' CLOCK_MONOTONIC `ts_ns`, unchanged: the sequence's
//! `TracePacketDefaults` declare `timestamp_clock_id = BUILTIN_CLOCK_MONOTONIC`, and every
//! track event packet sets `SEQ_NEEDS_INCREMENTAL_STATE` (the defaults are incremental
//! state; the first packet sets `SEQ_INCREMENTAL_STATE_CLEARED`). CLOCK_MONOTONIC is Go's
//! `nanotime`, the clock of a Go execution trace; the snapshots let trace_processor
//! convert to its default BOOTTIME domain, so the file can also be concatenated with a
//! system trace recorded by Perfetto (`cat a.pftrace b.pftrace`) and lines up with it.
//!
//! Buffering: an attempt reaches [`Output::attempt`] after all its events went through
//! [`Output::event`], and its flow and description go on them. The correlator tags each
//! event with the attempt it folded it into ([`EventView::attempt`]), so an event with a
//! tag is held with its attempt's other events (encoded, in one buffer per attempt) and
//! written when that attempt ends: the events its stamps name carry its flow id. Ticks
//! come before the request that opens an attempt and are shared by every request of one
//! `retake`: a tick is held until the next tick on its thread and the end of the attempts
//! requested since. Every other event, and run slice begins and ends, is written at once
//! (trace_processor sorts by timestamp; file order does not matter). Memory is thus the
//! open attempts' events, which the correlator expires after a minute. An event whose
//! attempt never comes (a GC `suspendG` whose goroutine another attempt preempted first)
//! is written [`ORPHAN_NS`] after it. An attempt with a link written before it ended —
//! a bug — gets a partial flow: counted in the trace's `goprobe_summary` and reported on
//! stderr. The rest, the open run slices' ends and the final descriptors and snapshot are
//! written at [`Output::summary`].
//!
//! Encoding is by hand (varints, fixed64, length-delimited nested messages with the length
//! back-patched), not with `prost`: about ten messages and thirty fields are used, prost
//! would need the Perfetto `.proto` tree and a build step, and writing straight into
//! reused buffers costs no allocation per event.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
};

use tracer_common::EventKind;

use super::{AttemptView, EventView, Output};
use crate::{
    chain::Link,
    correlate::{Attempt, Meaning, Outcome},
    events::{EventData, kind_name},
    summary::Summary,
    symbolize::Location,
};

/// How long (trace time) an event waits for the attempt it was tagged with at most: the
/// correlator's expiry (`correlate::EXPIRE_AFTER_NS`, 60 s, checked every 50 ms of trace
/// time) and a margin, after which that attempt has ended or never will.
pub const ORPHAN_NS: u64 = 61_000_000_000;
/// How often (trace time) held events are checked against [`ORPHAN_NS`].
const ORPHAN_CHECK_NS: u64 = 1_000_000_000;

mod proto;
#[cfg(test)]
use proto::packet::SEQUENCE_ID;
use proto::{event, field, packet, pb};

/// Whether an event of `link` may have set the attempt's `stamp` (a request with
/// nothing before its `signalM` is stamped at the `signalM`).
fn may_stamp(link: Link, stamp: Link) -> bool {
    link == stamp || (link, stamp) == (Link::SignalM, Link::Request)
}

/// Whether `attempt`'s stamps name this event: its flow joins it.
fn in_flow(attempt: &Attempt, event: &HeldEvent) -> bool {
    Link::ALL
        .into_iter()
        .any(|stamp| may_stamp(event.link, stamp) && attempt.stamps[stamp] == Some(event.ts))
}

/// Track uuid of a thread (`tid`), or of the process (`tid` 0).
pub fn track_uuid(pid: u32, tid: u32) -> u64 {
    (0x6770_u64 << 48) | ((u64::from(pid) << 24) ^ u64::from(tid))
}

/// Flow id of an attempt: unique within the trace, and unlikely to collide with another
/// trace's when files are concatenated.
pub fn flow_id(pid: u32, attempt_id: u64) -> u64 {
    (u64::from(pid) << 40) | (attempt_id & ((1 << 40) - 1))
}

/// An event held for its attempt; its encoded `TrackEvent` fields end at `end` in
/// [`Held::bodies`].
struct HeldEvent {
    ts: u64,
    tid: u32,
    link: Link,
    end: usize,
}

/// The events tagged with one attempt, held until it ends.
#[derive(Default)]
struct Held {
    bodies: Vec<u8>,
    events: Vec<HeldEvent>,
}

/// A sysmon tick, held until its `retake` is over (`sealed`: the next tick on its thread
/// came) and the attempts tagged on its thread since (`waiting`) have ended.
#[derive(Default)]
struct HeldTick {
    ts: u64,
    tid: u32,
    body: Vec<u8>,
    /// The flow ids of the attempts it starts.
    flows: Vec<u8>,
    waiting: Vec<u64>,
    sealed: bool,
}

/// The goroutine running on a thread since its `execute`.
#[derive(Clone, Copy)]
struct Running {
    goid: Option<u64>,
    g_addr: u64,
}

impl Running {
    fn is(self, goid: Option<u64>, g_addr: u64) -> bool {
        match (self.goid, goid) {
            (Some(a), Some(b)) => a == b,
            _ => self.g_addr == g_addr,
        }
    }
}

#[derive(Default)]
struct Thread {
    sysmon: bool,
    m_id: Option<i64>,
    /// The name in the last descriptor written for it.
    declared: Option<String>,
    running: Option<Running>,
}

impl Thread {
    fn name(&self) -> String {
        match (self.sysmon, self.m_id) {
            (true, _) => "sysmon".into(),
            (false, Some(m)) => format!("M{m}"),
            (false, None) => "thread".into(),
        }
    }
}

/// Counters about the trace itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerfettoStats {
    pub instants: u64,
    pub slices: u64,
    pub flows: u64,
    /// Attempts whose links were partly written before the attempt finished.
    pub partial_flows: u64,
}

/// What the end of the trace says about the run.
pub struct Trailer<'a> {
    pub pid: u32,
    pub binary: &'a str,
    pub annotations: &'a [(&'a str, u64)],
}

pub struct PerfettoOutput<W: Write = BufWriter<File>> {
    out: W,
    /// Events of open attempts by attempt id, and emptied ones for reuse.
    held: HashMap<u64, Held>,
    spare: Vec<Held>,
    /// Ticks waiting for their attempts, and emptied ones for reuse.
    ticks: Vec<HeldTick>,
    spare_ticks: Vec<HeldTick>,
    /// When held events were last checked against [`ORPHAN_NS`].
    orphans_checked: u64,
    threads: HashMap<u32, Thread>,
    pid: Option<u32>,
    process_declared: Option<String>,
    newest_ts: u64,
    /// Reused buffers: packet header, event fields written at once, fields added to a
    /// held event, text.
    scratch: Vec<u8>,
    body: Vec<u8>,
    extra: Vec<u8>,
    text: String,
    stats: PerfettoStats,
    finished: bool,
}

impl PerfettoOutput<BufWriter<File>> {
    pub fn create(path: &Path) -> io::Result<PerfettoOutput> {
        PerfettoOutput::new(BufWriter::with_capacity(1 << 20, File::create(path)?))
    }
}

impl<W: Write> PerfettoOutput<W> {
    /// Starts the trace on `out`: the sequence's first packet and a clock snapshot.
    pub fn new(out: W) -> io::Result<PerfettoOutput<W>> {
        let mut this = PerfettoOutput {
            out,
            held: HashMap::new(),
            spare: Vec::new(),
            ticks: Vec::new(),
            spare_ticks: Vec::new(),
            orphans_checked: 0,
            threads: HashMap::new(),
            pid: None,
            process_declared: None,
            newest_ts: 0,
            scratch: Vec::with_capacity(512),
            body: Vec::with_capacity(512),
            extra: Vec::with_capacity(512),
            text: String::new(),
            stats: PerfettoStats::default(),
            finished: false,
        };
        this.write_packet(packet::sequence_start)?;
        this.write_clock_snapshot()?;
        Ok(this)
    }

    pub fn stats(&self) -> PerfettoStats {
        self.stats
    }

    /// Gives the writer back (after [`PerfettoOutput::finish`]).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes the packet `encode` puts in the scratch buffer.
    fn write_packet(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.scratch.clear();
        encode(&mut self.scratch);
        self.out.write_all(&self.scratch)
    }

    fn write_clock_snapshot(&mut self) -> io::Result<()> {
        let ClockReading {
            boottime,
            monotonic,
            realtime,
        } = ClockReading::now();
        self.write_packet(|buf| {
            packet::clock_snapshot(
                buf,
                &[
                    (field::CLOCK_BOOTTIME, boottime),
                    (field::CLOCK_MONOTONIC, monotonic),
                    (field::CLOCK_REALTIME, realtime),
                ],
            );
        })
    }

    fn write_process_descriptor(&mut self, pid: u32, name: Option<&str>) -> io::Result<()> {
        let uuid = track_uuid(pid, 0);
        self.write_packet(|buf| packet::process_descriptor(buf, uuid, pid, name))?;
        self.process_declared = Some(name.unwrap_or_default().to_string());
        Ok(())
    }

    fn write_thread_descriptor(&mut self, pid: u32, tid: u32, name: &str) -> io::Result<()> {
        let uuids = [track_uuid(pid, tid), track_uuid(pid, 0)];
        self.write_packet(|buf| packet::thread_descriptor(buf, uuids, [pid, tid], name))
    }

    /// Writes one `TrackEvent` packet: `body` and `extra` are its encoded fields.
    fn write_event_packet(
        out: &mut W,
        scratch: &mut Vec<u8>,
        ts: u64,
        body: &[u8],
        extra: &[u8],
    ) -> io::Result<()> {
        scratch.clear();
        packet::track_event_head(scratch, ts, body.len() + extra.len());
        out.write_all(scratch)?;
        out.write_all(body)?;
        out.write_all(extra)
    }

    /// Declares the process and `tid`'s thread track (`tid` 0: the process's track) if not
    /// done yet.
    fn declare_thread(&mut self, tid: u32) -> io::Result<()> {
        let Some(pid) = self.pid else {
            return Ok(());
        };
        if self.process_declared.is_none() {
            let name = process_name_from_proc(pid);
            self.write_process_descriptor(pid, name.as_deref())?;
        }
        if tid == 0 {
            return Ok(());
        }
        let thread = self.threads.entry(tid).or_default();
        if thread.declared.is_some() {
            return Ok(());
        }
        let name = thread.name();
        thread.declared = Some(name.clone());
        self.write_thread_descriptor(pid, tid, &name)
    }

    /// Writes the events `held` holds; `extra` adds fields to the `i`th.
    fn write_held(
        &mut self,
        mut held: Held,
        mut extra: impl FnMut(usize, &HeldEvent, &mut Vec<u8>),
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, event) in held.events.iter().enumerate() {
            self.extra.clear();
            extra(i, event, &mut self.extra);
            self.declare_thread(event.tid)?;
            let body = &held.bodies[start..event.end];
            Self::write_event_packet(
                &mut self.out,
                &mut self.scratch,
                event.ts,
                body,
                &self.extra,
            )?;
            start = event.end;
        }
        if held.bodies.capacity() > 0 {
            held.bodies.clear();
            held.events.clear();
            self.spare.push(held);
        }
        Ok(())
    }

    /// Writes, with no flow, the events held for these attempts.
    fn write_unclaimed(&mut self, mut ids: Vec<u64>) -> io::Result<()> {
        ids.sort_unstable();
        for id in ids {
            if let Some(held) = self.held.remove(&id) {
                self.write_held(held, |_, _, _| {})?;
            }
        }
        Ok(())
    }

    /// Writes the ticks whose `retake` is over and whose attempts have all ended.
    fn write_ready_ticks(&mut self) -> io::Result<()> {
        while let Some(i) = self
            .ticks
            .iter()
            .position(|t| t.sealed && t.waiting.is_empty())
        {
            let mut tick = self.ticks.swap_remove(i);
            self.declare_thread(tick.tid)?;
            let HeldTick {
                ts, body, flows, ..
            } = &tick;
            Self::write_event_packet(&mut self.out, &mut self.scratch, *ts, body, flows)?;
            tick.body.clear();
            tick.flows.clear();
            tick.sealed = false;
            self.spare_ticks.push(tick);
        }
        Ok(())
    }

    /// Writes, with no flow, what has waited [`ORPHAN_NS`] for an attempt that did not
    /// come. Called before an event is added: the attempts that event ends (or expires)
    /// come after it.
    fn write_orphans(&mut self) -> io::Result<()> {
        if self.newest_ts < self.orphans_checked + ORPHAN_CHECK_NS {
            return Ok(());
        }
        self.orphans_checked = self.newest_ts;
        let cutoff = self.newest_ts.saturating_sub(ORPHAN_NS);
        let old: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, held)| held.events.first().is_some_and(|e| e.ts < cutoff))
            .map(|(id, _)| *id)
            .collect();
        self.write_unclaimed(old)?;
        for tick in &mut self.ticks {
            if tick.sealed && tick.ts < cutoff {
                tick.waiting.clear();
            }
        }
        self.write_ready_ticks()
    }

    /// Writes a `TrackEvent` at once; `encode` writes its fields after the type and track.
    fn write_now(
        &mut self,
        ts: u64,
        tid: u32,
        kind: u64,
        encode: impl FnOnce(&mut Vec<u8>, &mut String),
    ) -> io::Result<()> {
        self.declare_thread(tid)?;
        let mut body = std::mem::take(&mut self.body);
        body.clear();
        event::header(&mut body, kind, track_uuid(self.pid.unwrap_or(0), tid));
        encode(&mut body, &mut self.text);
        let written = Self::write_event_packet(&mut self.out, &mut self.scratch, ts, &body, &[]);
        self.body = body;
        written
    }

    fn begin_slice(&mut self, ts: u64, tid: u32, goid: Option<u64>, g_addr: u64) -> io::Result<()> {
        self.stats.slices += 1;
        self.write_now(ts, tid, field::TYPE_SLICE_BEGIN, |buf, text| {
            text.clear();
            match goid {
                Some(goid) => write!(text, "g{goid}"),
                None => write!(text, "g?"),
            }
            .expect("writing to a String");
            pb::string(buf, field::EVENT_NAME, text);
            if let Some(goid) = goid {
                event::uint(buf, "goid", goid);
            }
            event::pointer(buf, "g", g_addr);
        })
    }

    fn end_slice(&mut self, ts: u64, tid: u32, ended_by: &str) -> io::Result<()> {
        self.write_now(ts, tid, field::TYPE_SLICE_END, |buf, _| {
            event::str(buf, "ended_by", ended_by);
        })
    }

    fn on_event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        let event = view.event;
        self.pid.get_or_insert(event.tgid);
        self.newest_ts = self.newest_ts.max(event.ts_ns);
        let thread = self.threads.entry(event.tid).or_default();
        match event.data {
            EventData::SysmonTick { .. } => thread.sysmon = true,
            EventData::SignalM {
                m_tid: Some(m_tid),
                m_id: Some(m_id),
                ..
            } => self.threads.entry(m_tid).or_default().m_id = Some(m_id),
            _ => {}
        }
        if event.kind == EventKind::Execute {
            let EventData::Goroutine { goid, g_addr, .. } = event.data else {
                return Ok(());
            };
            let thread = self.threads.entry(event.tid).or_default();
            if thread.running.replace(Running { goid, g_addr }).is_some() {
                self.end_slice(event.ts_ns, event.tid, kind_name(EventKind::Execute))?;
            }
            return self.begin_slice(event.ts_ns, event.tid, goid, g_addr);
        }
        self.stats.instants += 1;
        let track = track_uuid(self.pid.unwrap_or(0), event.tid);
        match (Link::of(event.kind), view.attempt) {
            (Some(Link::Tick), _) => {
                for tick in &mut self.ticks {
                    tick.sealed |= tick.tid == event.tid;
                }
                self.write_ready_ticks()?;
                let mut tick = self.spare_ticks.pop().unwrap_or_default();
                (tick.ts, tick.tid) = (event.ts_ns, event.tid);
                event::header(&mut tick.body, field::TYPE_INSTANT, track);
                instant_fields(&mut tick.body, &mut self.text, view);
                self.ticks.push(tick);
            }
            (Some(link), Some(id)) => {
                // A request in the `retake` of the tick held for this thread.
                if let Some(tick) = self
                    .ticks
                    .iter_mut()
                    .find(|t| t.tid == event.tid && !t.sealed)
                    && !tick.waiting.contains(&id)
                {
                    tick.waiting.push(id);
                }
                let held = (self.held)
                    .entry(id)
                    .or_insert_with(|| self.spare.pop().unwrap_or_default());
                event::header(&mut held.bodies, field::TYPE_INSTANT, track);
                instant_fields(&mut held.bodies, &mut self.text, view);
                held.events.push(HeldEvent {
                    ts: event.ts_ns,
                    tid: event.tid,
                    link,
                    end: held.bodies.len(),
                });
            }
            _ => self.write_now(event.ts_ns, event.tid, field::TYPE_INSTANT, |buf, text| {
                instant_fields(buf, text, view);
            })?,
        }
        if let (
            EventKind::GoschedImpl | EventKind::Yield | EventKind::PreemptPark,
            EventData::Goroutine { goid, g_addr, .. },
        ) = (event.kind, &event.data)
        {
            let thread = self.threads.entry(event.tid).or_default();
            if thread.running.is_some_and(|r| r.is(*goid, *g_addr)) {
                thread.running = None;
                self.end_slice(event.ts_ns, event.tid, kind_name(event.kind))?;
            }
        }
        Ok(())
    }

    fn on_attempt(&mut self, attempt: &Attempt) -> io::Result<()> {
        let held = self.held.remove(&attempt.id).unwrap_or_default();
        let stamps = &attempt.stamps;
        // The tick of the `retake` that asked for it.
        let mut tick = None;
        for (i, t) in self.ticks.iter_mut().enumerate() {
            if let Some(at) = t.waiting.iter().position(|id| *id == attempt.id) {
                t.waiting.swap_remove(at);
                if t.tid == attempt.requester_tid && stamps[Link::Tick] == Some(t.ts) {
                    tick = Some(i);
                }
            }
        }
        let covered = |stamp: Link, ts: u64| match stamp {
            Link::Tick => tick.is_some(),
            _ => (held.events.iter()).any(|e| e.ts == ts && may_stamp(e.link, stamp)),
        };
        if Link::ALL
            .into_iter()
            .any(|stamp| stamps[stamp].is_some_and(|ts| !covered(stamp, ts)))
        {
            self.stats.partial_flows += 1;
        }
        let linked = held.events.iter().filter(|e| in_flow(attempt, e)).count();
        let flow = (linked + usize::from(tick.is_some()) >= 2)
            .then(|| flow_id(self.pid.unwrap_or(0), attempt.id));
        if let Some(id) = flow {
            self.stats.flows += 1;
            if let Some(i) = tick {
                pb::fixed64(&mut self.ticks[i].flows, field::EVENT_FLOW_IDS, id);
            }
        }
        // The attempt's description goes on its first link after the tick.
        let noted = (held.events.iter().enumerate())
            .filter(|(_, e)| in_flow(attempt, e))
            .min_by_key(|(_, e)| e.link)
            .map(|(i, _)| i);
        self.write_held(held, |i, event, extra| {
            if let Some(id) = flow
                && in_flow(attempt, event)
            {
                pb::fixed64(extra, field::EVENT_FLOW_IDS, id);
            }
            if noted == Some(i) {
                annotate_attempt(extra, attempt);
            }
        })?;
        self.write_ready_ticks()
    }

    /// Writes everything still held, ends the open run slices, the summary instant,
    /// final descriptors and clock snapshot; flushes.
    pub fn finish(&mut self, trailer: &Trailer<'_>) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let pid = *self.pid.get_or_insert(trailer.pid);
        let end_ts = if self.newest_ts > 0 {
            self.newest_ts
        } else {
            ClockReading::now().monotonic
        };
        let mut open: Vec<u32> = self
            .threads
            .iter()
            .filter(|(_, t)| t.running.is_some())
            .map(|(tid, _)| *tid)
            .collect();
        open.sort_unstable();
        for tid in open {
            if let Some(thread) = self.threads.get_mut(&tid) {
                thread.running = None;
            }
            self.end_slice(end_ts, tid, "trace_end")?;
        }
        for tick in &mut self.ticks {
            tick.sealed = true;
            tick.waiting.clear();
        }
        self.write_ready_ticks()?;
        self.write_unclaimed(self.held.keys().copied().collect())?;
        let name = trailer.binary.rsplit('/').next().unwrap_or(trailer.binary);
        if self.process_declared.as_deref() != Some(name) {
            self.write_process_descriptor(pid, Some(name))?;
        }
        let mut renamed: Vec<(u32, String)> = self
            .threads
            .iter()
            .filter(|(_, t)| t.declared.as_ref().is_some_and(|d| *d != t.name()))
            .map(|(tid, t)| (*tid, t.name()))
            .collect();
        renamed.sort_unstable();
        for (tid, name) in renamed {
            self.write_thread_descriptor(pid, tid, &name)?;
            if let Some(thread) = self.threads.get_mut(&tid) {
                thread.declared = Some(name);
            }
        }
        let stats = self.stats;
        self.write_now(end_ts, 0, field::TYPE_INSTANT, |buf, _| {
            pb::string(buf, field::EVENT_NAME, "goprobe_summary");
            for (name, value) in trailer.annotations {
                event::uint(buf, name, *value);
            }
            event::uint(buf, "perfetto_flows", stats.flows);
            event::uint(buf, "perfetto_partial_flows", stats.partial_flows);
        })?;
        self.write_clock_snapshot()?;
        self.out.flush()?;
        if self.stats.partial_flows > 0 {
            crate::diag!(
                "goprobe: warning: perfetto: {} preemption attempts had links written \
                 before they ended (after {} s), so their flows miss them",
                self.stats.partial_flows,
                ORPHAN_NS / 1_000_000_000
            );
        }
        Ok(())
    }
}

fn annotate_location(buf: &mut Vec<u8>, text: &mut String, name: &str, loc: &Location) {
    text.clear();
    write!(text, "{loc}").expect("writing to a String");
    event::str(buf, name, text);
}

/// An instant's fields after the type and track: its name and annotations.
fn instant_fields(buf: &mut Vec<u8>, text: &mut String, view: &EventView<'_>) {
    pb::string(buf, field::EVENT_NAME, kind_name(view.event.kind));
    annotate_event(buf, text, view);
}

/// The event's fields, as in the JSON output (`null`s left out).
fn annotate_event(buf: &mut Vec<u8>, text: &mut String, view: &EventView<'_>) {
    let event = view.event;
    let caller = |buf: &mut Vec<u8>| {
        if let Some(caller) = &view.caller {
            event::str(buf, "caller", &caller.function);
        }
    };
    match &event.data {
        EventData::SysmonTick { now_ns } => event::int(buf, "now_ns", *now_ns),
        EventData::ProcessExec => {}
        EventData::PreemptRequest {
            m_tid,
            goid,
            p_id,
            schedtick,
            schedwhen_ns,
            ..
        } => {
            if let Some(goid) = goid {
                event::uint(buf, "goid", *goid);
            }
            if let Some(p_id) = p_id {
                event::int(buf, "p_id", i64::from(*p_id));
            }
            if let Some(m_tid) = m_tid {
                event::uint(buf, "m_tid", u64::from(*m_tid));
            }
            event::uint(buf, "schedtick", u64::from(*schedtick));
            if let Some(when) = schedwhen_ns {
                event::int(buf, "running_ns", event.ts_ns as i64 - when);
            }
            caller(buf);
        }
        EventData::SignalM {
            m_tid,
            m_id,
            goid,
            p_id,
            sig,
            ..
        } => {
            if let Some(goid) = goid {
                event::uint(buf, "goid", *goid);
            }
            if let Some(m_id) = m_id {
                event::int(buf, "m_id", *m_id);
            }
            if let Some(m_tid) = m_tid {
                event::uint(buf, "m_tid", u64::from(*m_tid));
            }
            if let Some(p_id) = p_id {
                event::int(buf, "p_id", i64::from(*p_id));
            }
            event::uint(buf, "sig", u64::from(*sig));
            caller(buf);
        }
        EventData::Tgkill {
            target_tid, sig, ..
        } => {
            event::uint(buf, "target_tid", u64::from(*target_tid));
            event::uint(buf, "sig", u64::from(*sig));
        }
        EventData::TgkillFailed {
            target_tid, errno, ..
        } => {
            event::uint(buf, "target_tid", u64::from(*target_tid));
            event::str(buf, "error", &crate::events::errno_name(*errno));
        }
        EventData::SignalGenerate {
            target_tid,
            sig,
            result,
            ..
        } => {
            event::uint(buf, "target_tid", u64::from(*target_tid));
            event::uint(buf, "sig", u64::from(*sig));
            event::str(buf, "result", result.name());
        }
        EventData::SignalDeliver { user_pc, sig, .. } => {
            event::uint(buf, "sig", u64::from(*sig));
            event::pointer(buf, "pc", *user_pc);
            if let Some(loc) = &view.location {
                annotate_location(buf, text, "location", loc);
            }
        }
        EventData::Goroutine {
            goid,
            pc,
            g_status,
            preempted,
            ..
        } => {
            if let Some(goid) = goid {
                event::uint(buf, "goid", *goid);
            }
            if let Some(pc) = pc {
                event::pointer(buf, "pc", *pc);
            }
            if let Some(loc) = &view.location {
                annotate_location(buf, text, "location", loc);
            }
            if let Some(status) = g_status {
                event::uint(buf, "g_status", u64::from(*status));
            }
            if let Some(preempted) = preempted {
                event::bool(buf, "preempted", *preempted);
            }
            match view.meaning {
                Meaning::Preemption(p) => {
                    event::str(buf, "path", p.path.name());
                    event::str(buf, "action", p.action.name());
                }
                Meaning::VoluntaryYield => event::str(buf, "action", "yield"),
                Meaning::None => {}
            }
        }
    }
    event::uint(buf, "cpu", u64::from(event.cpu));
}

fn annotate_attempt(buf: &mut Vec<u8>, attempt: &Attempt) {
    event::uint(buf, "attempt.id", attempt.id);
    event::str(buf, "attempt.requester", attempt.requester.name());
    event::str(buf, "attempt.outcome", attempt.outcome.name());
    match attempt.outcome {
        Outcome::Async(action) | Outcome::Cooperative(action) => {
            event::str(buf, "attempt.action", action.name());
        }
        Outcome::Refused(refusal) => event::str(buf, "attempt.refusal", refusal.name()),
        _ => {}
    }
    if let Some(goid) = attempt.goid {
        event::uint(buf, "attempt.goid", goid);
    }
    if let Some(tid) = attempt.target_tid {
        event::uint(buf, "attempt.target_tid", u64::from(tid));
    }
    if let Some(total) = attempt.hop(crate::correlate::Hop::REQUEST_TO_OFF) {
        event::uint(buf, "attempt.request_to_off_ns", total);
    }
}

/// The traced binary's name, before the summary gives it (`/proc/PID/exe`).
fn process_name_from_proc(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// BOOTTIME, MONOTONIC and REALTIME read as close together as the three calls allow:
/// of a few tries, the one whose MONOTONIC reads bracket the others most tightly.
struct ClockReading {
    boottime: u64,
    monotonic: u64,
    realtime: u64,
}

impl ClockReading {
    fn now() -> ClockReading {
        let mut best: Option<(u64, ClockReading)> = None;
        for _ in 0..5 {
            let before = clock_ns(libc::CLOCK_MONOTONIC);
            let boottime = clock_ns(libc::CLOCK_BOOTTIME);
            let realtime = clock_ns(libc::CLOCK_REALTIME);
            let after = clock_ns(libc::CLOCK_MONOTONIC);
            let spread = after - before;
            if best.as_ref().is_none_or(|(s, _)| spread < *s) {
                let reading = ClockReading {
                    boottime,
                    monotonic: before + spread / 2,
                    realtime,
                };
                best = Some((spread, reading));
            }
        }
        best.expect("five readings").1
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; the clocks read exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl<W: Write> Output for PerfettoOutput<W> {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        self.write_orphans()?;
        self.on_event(view)
    }

    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()> {
        self.on_attempt(view.attempt)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        let p = &summary.preemptions;
        let annotations = [
            ("events", summary.received.total()),
            ("lost_events", summary.lost_total()),
            ("attempts", summary.attempts()),
            ("async_preemptions", summary.async_preemptions()),
            ("cooperative_preemptions", p.cooperative()),
            ("voluntary_yields", summary.voluntary_yields.unwrap_or(0)),
            ("duration_ns", summary.run.duration_ns),
        ];
        self.finish(&Trailer {
            pid: summary.run.pid,
            binary: &summary.run.binary,
            annotations: &annotations,
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        // Held events wait for their attempts; what was written can go out.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests;
