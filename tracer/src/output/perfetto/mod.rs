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
//! [`Output::event`], and flow ids live on the events. So each instant is encoded at once
//! (its `TrackEvent` fields into an arena) but written only once it is [`HOLD_NS`] older
//! than the newest event before the one being added — past the correlator's own expiry,
//! so every attempt has ended by then — or when more than [`MAX_PENDING`] are waiting;
//! attempts append their flow ids to events still waiting. Run slice begins and ends
//! belong to no attempt and are written at once (trace_processor sorts by timestamp; file
//! order does not matter). Memory is thus bounded: about 200 bytes per waiting instant
//! (encoded fields, queue and index entries), some 50 MB at the bound. An attempt whose
//! first links were written before it ended — only when over [`MAX_PENDING`] chain events
//! arrive while it is open (more than 1.3 s at 200 000 events/s) — gets a partial flow:
//! counted in the trace's `goprobe_summary` and reported on stderr. Packets are streamed
//! to the file as they fall due; the rest, the open run slices' ends and the final
//! descriptors and snapshot are written at [`Output::summary`] (so while tracing, the file
//! lags the events by up to a minute).
//!
//! Encoding is by hand (varints, fixed64, length-delimited nested messages with the length
//! back-patched), not with `prost`: about ten messages and thirty fields are used, prost
//! would need the Perfetto `.proto` tree and a build step, and writing straight into
//! reused buffers costs no allocation per event.

use std::{
    collections::{HashMap, VecDeque},
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

/// How long (trace time) an instant waits for the attempts it belongs to before it is
/// written: the correlator's expiry (`correlate::EXPIRE_AFTER_NS`, 60 s, checked every
/// 50 ms of trace time) and a margin, after which no attempt is still open.
pub const HOLD_NS: u64 = 61_000_000_000;
/// At most this many instants wait; beyond, the oldest is written.
pub const MAX_PENDING: usize = 1 << 18;
/// Once this many bytes of the arena were written out, they are dropped from it.
const ARENA_COMPACT: usize = 1 << 20;

/// The one packet sequence this writer produces.
const SEQUENCE_ID: u64 = 1;

mod proto;
use proto::{field, pb};

/// An attempt's stamps in chain order, with the links each may have come from (a request
/// with nothing before its `signalM` is stamped at the `signalM`).
fn stamped_links(attempt: &Attempt) -> [(Option<u64>, &'static [Link]); 9] {
    let s = &attempt.stamps;
    [
        (s[Link::Tick], &[Link::Tick]),
        (s[Link::Request], &[Link::Request, Link::SignalM]),
        (s[Link::SignalM], &[Link::SignalM]),
        (s[Link::Tgkill], &[Link::Tgkill]),
        (s[Link::Generate], &[Link::Generate]),
        (s[Link::Deliver], &[Link::Deliver]),
        (s[Link::Handler], &[Link::Handler]),
        (s[Link::AsyncPreempt2], &[Link::AsyncPreempt2]),
        (s[Link::Off], &[Link::Off]),
    ]
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

/// One event (or slice begin/end) encoded and waiting to be written.
struct Pending {
    ts: u64,
    tid: u32,
    /// Absolute arena offset and length of the encoded `TrackEvent` fields.
    body: u64,
    body_len: u32,
    /// Its key in the stamp index, for chain events.
    key: Option<(u64, Link)>,
    /// Fields attempts added: flow ids, the attempt annotations. Empty (no allocation)
    /// for most events.
    extra: Vec<u8>,
    /// Carries an attempt's annotations already.
    noted: bool,
}

/// Pending events with one (timestamp, link): almost always one.
enum Slot {
    One(u64),
    Many(Vec<u64>),
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
    /// Encoded bodies of pending events (`arena[0]` is absolute offset `arena_base`).
    arena: Vec<u8>,
    arena_base: u64,
    pending: VecDeque<Pending>,
    /// [`HOLD_NS`] and [`MAX_PENDING`] (smaller in tests).
    hold_ns: u64,
    max_pending: usize,
    /// Sequence number of `pending[0]`.
    front_seq: u64,
    index: HashMap<(u64, Link), Slot>,
    threads: HashMap<u32, Thread>,
    pid: Option<u32>,
    process_declared: Option<String>,
    newest_ts: u64,
    /// Reused buffers: packet header, event fields written at once, text.
    scratch: Vec<u8>,
    body: Vec<u8>,
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
            arena: Vec::with_capacity(1 << 16),
            arena_base: 0,
            pending: VecDeque::new(),
            hold_ns: HOLD_NS,
            max_pending: MAX_PENDING,
            front_seq: 0,
            index: HashMap::new(),
            threads: HashMap::new(),
            pid: None,
            process_declared: None,
            newest_ts: 0,
            scratch: Vec::with_capacity(512),
            body: Vec::with_capacity(512),
            text: String::new(),
            stats: PerfettoStats::default(),
            finished: false,
        };
        this.write_sequence_start()?;
        this.write_clock_snapshot(&ClockReading::now())?;
        Ok(this)
    }

    pub fn stats(&self) -> PerfettoStats {
        self.stats
    }

    /// Gives the writer back (after [`PerfettoOutput::finish`]).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn write_sequence_start(&mut self) -> io::Result<()> {
        let buf = &mut self.scratch;
        buf.clear();
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        pb::uint(
            buf,
            field::PACKET_SEQUENCE_FLAGS,
            field::SEQ_INCREMENTAL_STATE_CLEARED,
        );
        pb::uint(buf, field::PACKET_FIRST_ON_SEQUENCE, 1);
        let defaults = pb::begin(buf, field::PACKET_DEFAULTS);
        pb::uint(buf, field::DEFAULTS_CLOCK_ID, field::CLOCK_MONOTONIC);
        pb::end(buf, defaults);
        pb::end(buf, packet);
        self.out.write_all(buf)
    }

    fn write_clock_snapshot(&mut self, reading: &ClockReading) -> io::Result<()> {
        let buf = &mut self.scratch;
        buf.clear();
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let snapshot = pb::begin(buf, field::PACKET_CLOCK_SNAPSHOT);
        for (id, ts) in [
            (field::CLOCK_BOOTTIME, reading.boottime),
            (field::CLOCK_MONOTONIC, reading.monotonic),
            (field::CLOCK_REALTIME, reading.realtime),
        ] {
            let clock = pb::begin(buf, field::SNAPSHOT_CLOCKS);
            pb::uint(buf, field::CLOCK_ID, id);
            pb::uint(buf, field::CLOCK_TIMESTAMP, ts);
            pb::end(buf, clock);
        }
        pb::end(buf, snapshot);
        pb::end(buf, packet);
        self.out.write_all(buf)
    }

    fn write_process_descriptor(&mut self, pid: u32, name: Option<&str>) -> io::Result<()> {
        let buf = &mut self.scratch;
        buf.clear();
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let track = pb::begin(buf, field::PACKET_TRACK_DESCRIPTOR);
        pb::uint(buf, field::TRACK_UUID, track_uuid(pid, 0));
        let process = pb::begin(buf, field::TRACK_PROCESS);
        pb::int(buf, field::PROCESS_PID, i64::from(pid));
        if let Some(name) = name {
            pb::string(buf, field::PROCESS_NAME, name);
        }
        pb::end(buf, process);
        pb::end(buf, track);
        pb::end(buf, packet);
        self.out.write_all(buf)?;
        self.process_declared = Some(name.unwrap_or_default().to_string());
        Ok(())
    }

    fn write_thread_descriptor(&mut self, pid: u32, tid: u32, name: &str) -> io::Result<()> {
        let buf = &mut self.scratch;
        buf.clear();
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let track = pb::begin(buf, field::PACKET_TRACK_DESCRIPTOR);
        pb::uint(buf, field::TRACK_UUID, track_uuid(pid, tid));
        pb::uint(buf, field::TRACK_PARENT_UUID, track_uuid(pid, 0));
        let thread = pb::begin(buf, field::TRACK_THREAD);
        pb::int(buf, field::THREAD_PID, i64::from(pid));
        pb::int(buf, field::THREAD_TID, i64::from(tid));
        pb::string(buf, field::THREAD_NAME, name);
        pb::end(buf, thread);
        pb::end(buf, track);
        pb::end(buf, packet);
        self.out.write_all(buf)
    }

    /// Writes one `TrackEvent` packet: `body` and `extra` are its encoded fields.
    fn write_event_packet(
        out: &mut W,
        scratch: &mut Vec<u8>,
        ts: u64,
        body: &[u8],
        extra: &[u8],
    ) -> io::Result<()> {
        let event_len = (body.len() + extra.len()) as u64;
        scratch.clear();
        pb::uint(scratch, field::PACKET_TIMESTAMP, ts);
        pb::uint(scratch, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        pb::uint(
            scratch,
            field::PACKET_SEQUENCE_FLAGS,
            field::SEQ_NEEDS_INCREMENTAL_STATE,
        );
        pb::tag(scratch, field::PACKET_TRACK_EVENT, pb::WIRE_LEN);
        pb::varint(scratch, event_len);
        let packet_len = scratch.len() as u64 + event_len;
        let mut head = [0u8; 1 + pb::MAX_VARINT];
        head[0] = (field::TRACE_PACKET << 3 | pb::WIRE_LEN) as u8;
        let n = 1 + pb::put_varint(&mut head[1..], packet_len);
        out.write_all(&head[..n])?;
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

    /// Writes the oldest pending event.
    fn write_front(&mut self) -> io::Result<()> {
        let Some(item) = self.pending.pop_front() else {
            return Ok(());
        };
        let seq = self.front_seq;
        self.front_seq += 1;
        if let Some(key) = item.key {
            self.unindex(key, seq);
        }
        self.declare_thread(item.tid)?;
        let start = (item.body - self.arena_base) as usize;
        let body = &self.arena[start..start + item.body_len as usize];
        Self::write_event_packet(&mut self.out, &mut self.scratch, item.ts, body, &item.extra)?;
        let written = start + item.body_len as usize;
        if written >= ARENA_COMPACT && written * 2 >= self.arena.len() {
            self.arena.drain(..written);
            self.arena_base += written as u64;
        }
        Ok(())
    }

    fn unindex(&mut self, key: (u64, Link), seq: u64) {
        let remove = match self.index.get_mut(&key) {
            Some(Slot::One(s)) => *s == seq,
            Some(Slot::Many(seqs)) => {
                seqs.retain(|s| *s != seq);
                seqs.is_empty()
            }
            None => false,
        };
        if remove {
            self.index.remove(&key);
        }
    }

    /// Writes what has waited longer than the window before the newest event. Called
    /// before an event is added: the attempts that event ends (or expires) come after it,
    /// and must still find their links.
    fn write_due(&mut self) -> io::Result<()> {
        while let Some(front) = self.pending.front() {
            if front.ts.saturating_add(self.hold_ns) >= self.newest_ts {
                break;
            }
            self.write_front()?;
        }
        Ok(())
    }

    /// Writes the oldest while more than the bound wait.
    fn write_excess(&mut self) -> io::Result<()> {
        while self.pending.len() > self.max_pending {
            self.write_front()?;
        }
        Ok(())
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
        event_header(&mut body, kind, track_uuid(self.pid.unwrap_or(0), tid));
        encode(&mut body, &mut self.text);
        let written = Self::write_event_packet(&mut self.out, &mut self.scratch, ts, &body, &[]);
        self.body = body;
        written
    }

    /// Queues a `TrackEvent` whose fields `encode` writes after the type and track.
    fn push(
        &mut self,
        ts: u64,
        tid: u32,
        key: Option<(u64, Link)>,
        encode: impl FnOnce(&mut Vec<u8>, &mut String),
    ) {
        let start = self.arena.len();
        event_header(
            &mut self.arena,
            field::TYPE_INSTANT,
            track_uuid(self.pid.unwrap_or(0), tid),
        );
        encode(&mut self.arena, &mut self.text);
        let seq = self.front_seq + self.pending.len() as u64;
        if let Some(key) = key {
            match self.index.get_mut(&key) {
                None => {
                    self.index.insert(key, Slot::One(seq));
                }
                Some(Slot::One(first)) => {
                    let first = *first;
                    self.index.insert(key, Slot::Many(vec![first, seq]));
                }
                Some(Slot::Many(seqs)) => seqs.push(seq),
            }
        }
        self.pending.push_back(Pending {
            ts,
            tid,
            body: self.arena_base + start as u64,
            body_len: (self.arena.len() - start) as u32,
            key,
            extra: Vec::new(),
            noted: false,
        });
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
                annotate_uint(buf, "goid", goid);
            }
            annotate_pointer(buf, "g", g_addr);
        })
    }

    fn end_slice(&mut self, ts: u64, tid: u32, ended_by: &str) -> io::Result<()> {
        self.write_now(ts, tid, field::TYPE_SLICE_END, |buf, _| {
            annotate_str(buf, "ended_by", ended_by);
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
        let key = Link::of(event.kind).map(|link| (event.ts_ns, link));
        self.push(event.ts_ns, event.tid, key, |buf, text| {
            pb::string(buf, field::EVENT_NAME, kind_name(event.kind));
            annotate_event(buf, text, view);
        });
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

    /// The pending event a stamp refers to, preferring the expected thread.
    fn resolve(&self, ts: u64, links: &[Link], tid: Option<u32>) -> Option<u64> {
        for link in links {
            match self.index.get(&(ts, *link)) {
                Some(Slot::One(seq)) => return Some(*seq),
                Some(Slot::Many(seqs)) => {
                    let pick = seqs
                        .iter()
                        .find(|seq| {
                            tid.is_some_and(|tid| {
                                self.pending[(**seq - self.front_seq) as usize].tid == tid
                            })
                        })
                        .or(seqs.first());
                    if pick.is_some() {
                        return pick.copied();
                    }
                }
                None => {}
            }
        }
        None
    }

    fn on_attempt(&mut self, attempt: &Attempt) {
        let pid = self.pid.unwrap_or(0);
        let mut found: [Option<(u64, Link)>; 9] = [None; 9];
        let mut count = 0;
        let mut missing = false;
        for (ts, links) in stamped_links(attempt) {
            let Some(ts) = ts else { continue };
            let tid = if links[0].on_requester() {
                Some(attempt.requester_tid)
            } else {
                attempt.target_tid
            };
            match self.resolve(ts, links, tid) {
                Some(seq) if found[..count].iter().any(|f| f.is_some_and(|f| f.0 == seq)) => {}
                Some(seq) => {
                    found[count] = Some((seq, links[0]));
                    count += 1;
                }
                None => missing = true,
            }
        }
        let found = &found[..count];
        if missing {
            self.stats.partial_flows += 1;
        }
        if count >= 2 {
            self.stats.flows += 1;
            let id = flow_id(pid, attempt.id);
            for (seq, _) in found.iter().flatten() {
                let item = &mut self.pending[(seq - self.front_seq) as usize];
                pb::fixed64(&mut item.extra, field::EVENT_FLOW_IDS, id);
            }
        }
        // The attempt's description goes on its first link after the tick (ticks are
        // shared by every request of one `retake`).
        let noted = found
            .iter()
            .flatten()
            .find(|(seq, link)| {
                *link != Link::Tick && !self.pending[(seq - self.front_seq) as usize].noted
            })
            .map(|(seq, _)| *seq);
        if let Some(seq) = noted {
            let item = &mut self.pending[(seq - self.front_seq) as usize];
            item.noted = true;
            annotate_attempt(&mut item.extra, attempt);
        }
    }

    /// Writes everything still pending, ends the open run slices, the summary instant,
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
        while !self.pending.is_empty() {
            self.write_front()?;
        }
        self.arena = Vec::new();
        self.index = HashMap::new();
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
                annotate_uint(buf, name, *value);
            }
            annotate_uint(buf, "perfetto_flows", stats.flows);
            annotate_uint(buf, "perfetto_partial_flows", stats.partial_flows);
        })?;
        self.write_clock_snapshot(&ClockReading::now())?;
        self.out.flush()?;
        if self.stats.partial_flows > 0 {
            crate::diag!(
                "goprobe: warning: perfetto: {} preemption attempts were still open after \
                 {} more events (or {} s): their first links were written before they ended, \
                 so their flows miss them",
                self.stats.partial_flows,
                self.max_pending,
                self.hold_ns / 1_000_000_000
            );
        }
        Ok(())
    }
}

/// The first fields of every `TrackEvent`: its type and track.
fn event_header(buf: &mut Vec<u8>, kind: u64, track: u64) {
    pb::uint(buf, field::EVENT_TYPE, kind);
    pb::uint(buf, field::EVENT_TRACK_UUID, track);
}

fn annotation(buf: &mut Vec<u8>, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
    let start = pb::begin(buf, field::EVENT_DEBUG_ANNOTATIONS);
    pb::string(buf, field::ANNOTATION_NAME, name);
    value(buf);
    pb::end(buf, start);
}

fn annotate_uint(buf: &mut Vec<u8>, name: &str, value: u64) {
    annotation(buf, name, |buf| {
        pb::uint(buf, field::ANNOTATION_UINT, value)
    });
}

fn annotate_int(buf: &mut Vec<u8>, name: &str, value: i64) {
    annotation(buf, name, |buf| pb::int(buf, field::ANNOTATION_INT, value));
}

fn annotate_pointer(buf: &mut Vec<u8>, name: &str, value: u64) {
    annotation(buf, name, |buf| {
        pb::uint(buf, field::ANNOTATION_POINTER, value);
    });
}

fn annotate_bool(buf: &mut Vec<u8>, name: &str, value: bool) {
    annotation(buf, name, |buf| {
        pb::uint(buf, field::ANNOTATION_BOOL, u64::from(value));
    });
}

fn annotate_str(buf: &mut Vec<u8>, name: &str, value: &str) {
    annotation(buf, name, |buf| {
        pb::string(buf, field::ANNOTATION_STRING, value);
    });
}

fn annotate_location(buf: &mut Vec<u8>, text: &mut String, name: &str, loc: &Location) {
    text.clear();
    write!(text, "{loc}").expect("writing to a String");
    annotate_str(buf, name, text);
}

/// The event's fields, as in the JSON output (`null`s left out).
fn annotate_event(buf: &mut Vec<u8>, text: &mut String, view: &EventView<'_>) {
    let event = view.event;
    let caller = |buf: &mut Vec<u8>| {
        if let Some(caller) = &view.caller {
            annotate_str(buf, "caller", &caller.function);
        }
    };
    match &event.data {
        EventData::SysmonTick { now_ns } => annotate_int(buf, "now_ns", *now_ns),
        EventData::PreemptRequest {
            m_tid,
            goid,
            p_id,
            schedtick,
            schedwhen_ns,
            ..
        } => {
            if let Some(goid) = goid {
                annotate_uint(buf, "goid", *goid);
            }
            if let Some(p_id) = p_id {
                annotate_int(buf, "p_id", i64::from(*p_id));
            }
            if let Some(m_tid) = m_tid {
                annotate_uint(buf, "m_tid", u64::from(*m_tid));
            }
            annotate_uint(buf, "schedtick", u64::from(*schedtick));
            if let Some(when) = schedwhen_ns {
                annotate_int(buf, "running_ns", event.ts_ns as i64 - when);
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
                annotate_uint(buf, "goid", *goid);
            }
            if let Some(m_id) = m_id {
                annotate_int(buf, "m_id", *m_id);
            }
            if let Some(m_tid) = m_tid {
                annotate_uint(buf, "m_tid", u64::from(*m_tid));
            }
            if let Some(p_id) = p_id {
                annotate_int(buf, "p_id", i64::from(*p_id));
            }
            annotate_uint(buf, "sig", u64::from(*sig));
            caller(buf);
        }
        EventData::Tgkill {
            target_tid, sig, ..
        } => {
            annotate_uint(buf, "target_tid", u64::from(*target_tid));
            annotate_uint(buf, "sig", u64::from(*sig));
        }
        EventData::SignalGenerate {
            target_tid,
            sig,
            result,
            ..
        } => {
            annotate_uint(buf, "target_tid", u64::from(*target_tid));
            annotate_uint(buf, "sig", u64::from(*sig));
            annotate_str(buf, "result", result.name());
        }
        EventData::SignalDeliver { user_pc, sig, .. } => {
            annotate_uint(buf, "sig", u64::from(*sig));
            annotate_pointer(buf, "pc", *user_pc);
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
                annotate_uint(buf, "goid", *goid);
            }
            if let Some(pc) = pc {
                annotate_pointer(buf, "pc", *pc);
            }
            if let Some(loc) = &view.location {
                annotate_location(buf, text, "location", loc);
            }
            if let Some(status) = g_status {
                annotate_uint(buf, "g_status", u64::from(*status));
            }
            if let Some(preempted) = preempted {
                annotate_bool(buf, "preempted", *preempted);
            }
            match view.meaning {
                Meaning::Preemption(p) => {
                    annotate_str(buf, "path", p.path.name());
                    annotate_str(buf, "action", p.action.name());
                }
                Meaning::VoluntaryYield => annotate_str(buf, "action", "yield"),
                Meaning::None => {}
            }
        }
    }
    annotate_uint(buf, "cpu", u64::from(event.cpu));
}

fn annotate_attempt(buf: &mut Vec<u8>, attempt: &Attempt) {
    annotate_uint(buf, "attempt.id", attempt.id);
    annotate_str(buf, "attempt.requester", attempt.requester.name());
    annotate_str(buf, "attempt.outcome", attempt.outcome.name());
    match attempt.outcome {
        Outcome::Async(action) | Outcome::Cooperative(action) => {
            annotate_str(buf, "attempt.action", action.name());
        }
        Outcome::Refused(refusal) => annotate_str(buf, "attempt.refusal", refusal.name()),
        _ => {}
    }
    if let Some(goid) = attempt.goid {
        annotate_uint(buf, "attempt.goid", goid);
    }
    if let Some(tid) = attempt.target_tid {
        annotate_uint(buf, "attempt.target_tid", u64::from(tid));
    }
    if let Some(total) = attempt.hop(crate::correlate::Hop::REQUEST_TO_OFF) {
        annotate_uint(buf, "attempt.request_to_off_ns", total);
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
        self.write_due()?;
        self.on_event(view)?;
        self.write_excess()
    }

    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()> {
        self.on_attempt(view.attempt);
        Ok(())
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
        // Pending events wait for their attempts; what was written can go out.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests;
