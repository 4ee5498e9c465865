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

/// Field numbers and enum values, from the official protos as shipped in PyPI's `perfetto`
/// 0.59.1 (`perfetto.protos.perfetto.trace.perfetto_trace_pb2`, read with
/// `<Message>.DESCRIPTOR.fields_by_name`). Wire type in brackets.
mod field {
    /// `Trace.packet` [len], repeated `TracePacket`.
    pub const TRACE_PACKET: u32 = 1;

    /// `TracePacket.clock_snapshot` [len] `ClockSnapshot`.
    pub const PACKET_CLOCK_SNAPSHOT: u32 = 6;
    /// `TracePacket.timestamp` [varint] uint64, in the clock of `timestamp_clock_id`.
    pub const PACKET_TIMESTAMP: u32 = 8;
    /// `TracePacket.trusted_packet_sequence_id` [varint] uint32.
    pub const PACKET_SEQUENCE_ID: u32 = 10;
    /// `TracePacket.track_event` [len] `TrackEvent`.
    pub const PACKET_TRACK_EVENT: u32 = 11;
    /// `TracePacket.sequence_flags` [varint] uint32 (`SequenceFlags`).
    pub const PACKET_SEQUENCE_FLAGS: u32 = 13;
    /// `TracePacket.trace_packet_defaults` [len] `TracePacketDefaults`.
    pub const PACKET_DEFAULTS: u32 = 59;
    /// `TracePacket.track_descriptor` [len] `TrackDescriptor`.
    pub const PACKET_TRACK_DESCRIPTOR: u32 = 60;
    /// `TracePacket.first_packet_on_sequence` [varint] bool.
    pub const PACKET_FIRST_ON_SEQUENCE: u32 = 87;

    /// `TracePacketDefaults.timestamp_clock_id` [varint] uint32.
    pub const DEFAULTS_CLOCK_ID: u32 = 58;

    /// `ClockSnapshot.clocks` [len] repeated `ClockSnapshot.Clock`.
    pub const SNAPSHOT_CLOCKS: u32 = 1;
    /// `ClockSnapshot.Clock.clock_id` [varint] uint32 (`BuiltinClock`).
    pub const CLOCK_ID: u32 = 1;
    /// `ClockSnapshot.Clock.timestamp` [varint] uint64.
    pub const CLOCK_TIMESTAMP: u32 = 2;

    /// `TrackDescriptor.uuid` [varint] uint64.
    pub const TRACK_UUID: u32 = 1;
    /// `TrackDescriptor.process` [len] `ProcessDescriptor`.
    pub const TRACK_PROCESS: u32 = 3;
    /// `TrackDescriptor.thread` [len] `ThreadDescriptor`.
    pub const TRACK_THREAD: u32 = 4;
    /// `TrackDescriptor.parent_uuid` [varint] uint64.
    pub const TRACK_PARENT_UUID: u32 = 5;

    /// `ProcessDescriptor.pid` [varint] int32.
    pub const PROCESS_PID: u32 = 1;
    /// `ProcessDescriptor.process_name` [len] string.
    pub const PROCESS_NAME: u32 = 6;

    /// `ThreadDescriptor.pid` [varint] int32.
    pub const THREAD_PID: u32 = 1;
    /// `ThreadDescriptor.tid` [varint] int64.
    pub const THREAD_TID: u32 = 2;
    /// `ThreadDescriptor.thread_name` [len] string.
    pub const THREAD_NAME: u32 = 5;

    /// `TrackEvent.debug_annotations` [len] repeated `DebugAnnotation`.
    pub const EVENT_DEBUG_ANNOTATIONS: u32 = 4;
    /// `TrackEvent.type` [varint] enum `TrackEvent.Type`.
    pub const EVENT_TYPE: u32 = 9;
    /// `TrackEvent.track_uuid` [varint] uint64.
    pub const EVENT_TRACK_UUID: u32 = 11;
    /// `TrackEvent.name` [len] string.
    pub const EVENT_NAME: u32 = 23;
    /// `TrackEvent.flow_ids` [i64] repeated fixed64 (not packed: proto2).
    pub const EVENT_FLOW_IDS: u32 = 47;

    /// `DebugAnnotation.bool_value` [varint] bool.
    pub const ANNOTATION_BOOL: u32 = 2;
    /// `DebugAnnotation.uint_value` [varint] uint64.
    pub const ANNOTATION_UINT: u32 = 3;
    /// `DebugAnnotation.int_value` [varint] int64.
    pub const ANNOTATION_INT: u32 = 4;
    /// `DebugAnnotation.string_value` [len] string.
    pub const ANNOTATION_STRING: u32 = 6;
    /// `DebugAnnotation.pointer_value` [varint] uint64 (shown in hex).
    pub const ANNOTATION_POINTER: u32 = 7;
    /// `DebugAnnotation.name` [len] string.
    pub const ANNOTATION_NAME: u32 = 10;

    /// `TracePacket.SequenceFlags.SEQ_INCREMENTAL_STATE_CLEARED`.
    pub const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
    /// `TracePacket.SequenceFlags.SEQ_NEEDS_INCREMENTAL_STATE`.
    pub const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;

    /// `TrackEvent.Type.TYPE_SLICE_BEGIN`.
    pub const TYPE_SLICE_BEGIN: u64 = 1;
    /// `TrackEvent.Type.TYPE_SLICE_END`.
    pub const TYPE_SLICE_END: u64 = 2;
    /// `TrackEvent.Type.TYPE_INSTANT`.
    pub const TYPE_INSTANT: u64 = 3;

    /// `BuiltinClock.BUILTIN_CLOCK_REALTIME`.
    pub const CLOCK_REALTIME: u64 = 1;
    /// `BuiltinClock.BUILTIN_CLOCK_MONOTONIC`.
    pub const CLOCK_MONOTONIC: u64 = 3;
    /// `BuiltinClock.BUILTIN_CLOCK_BOOTTIME`.
    pub const CLOCK_BOOTTIME: u64 = 6;
}

/// Protobuf wire format: just what the messages above need.
mod pb {
    pub const WIRE_VARINT: u32 = 0;
    pub const WIRE_I64: u32 = 1;
    pub const WIRE_LEN: u32 = 2;

    /// Longest varint: a u64 in 7-bit groups.
    pub const MAX_VARINT: usize = 10;

    pub fn varint(buf: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            buf.push(value as u8 | 0x80);
            value >>= 7;
        }
        buf.push(value as u8);
    }

    /// Bytes `varint` writes for `value`.
    pub fn varint_len(value: u64) -> usize {
        let bits = 64 - (value | 1).leading_zeros() as usize;
        bits.div_ceil(7)
    }

    /// Writes `value` as a varint at the start of `out`, which must be long enough;
    /// returns the bytes written.
    pub fn put_varint(out: &mut [u8], mut value: u64) -> usize {
        let mut i = 0;
        while value >= 0x80 {
            out[i] = value as u8 | 0x80;
            value >>= 7;
            i += 1;
        }
        out[i] = value as u8;
        i + 1
    }

    pub fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
        varint(buf, u64::from(field << 3 | wire));
    }

    pub fn uint(buf: &mut Vec<u8>, field: u32, value: u64) {
        tag(buf, field, WIRE_VARINT);
        varint(buf, value);
    }

    /// `int32`/`int64`: two's complement, so a negative value takes ten bytes.
    pub fn int(buf: &mut Vec<u8>, field: u32, value: i64) {
        uint(buf, field, value as u64);
    }

    pub fn fixed64(buf: &mut Vec<u8>, field: u32, value: u64) {
        tag(buf, field, WIRE_I64);
        buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bytes(buf: &mut Vec<u8>, field: u32, value: &[u8]) {
        tag(buf, field, WIRE_LEN);
        varint(buf, value.len() as u64);
        buf.extend_from_slice(value);
    }

    pub fn string(buf: &mut Vec<u8>, field: u32, value: &str) {
        bytes(buf, field, value.as_bytes());
    }

    /// Starts a nested message: writes the tag and a one-byte length placeholder, returns
    /// where the message's content starts (for [`end`]).
    #[must_use]
    pub fn begin(buf: &mut Vec<u8>, field: u32) -> usize {
        tag(buf, field, WIRE_LEN);
        buf.push(0);
        buf.len()
    }

    /// Ends the nested message begun at `start`: fills in its length, moving the content
    /// up when the length needs more than the one byte reserved.
    pub fn end(buf: &mut Vec<u8>, start: usize) {
        let len = buf.len() - start;
        let need = varint_len(len as u64);
        if need > 1 {
            buf.resize(buf.len() + need - 1, 0);
            buf.copy_within(start..start + len, start + need - 1);
        }
        put_varint(&mut buf[start - 1..], len as u64);
    }
}

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
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::{
        correlate::{Caller, Correlator, Finding, PreemptAction},
        events::Event,
    };

    /// A decoded protobuf field: the minimal reader these tests check the writer with.
    #[derive(Clone, Debug, PartialEq)]
    enum Val {
        Varint(u64),
        Fixed64(u64),
        Bytes(Vec<u8>),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = buf[*pos];
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
        }
        panic!("varint longer than ten bytes");
    }

    /// Parses one message's fields; panics on anything malformed.
    fn parse(buf: &[u8]) -> Vec<(u32, Val)> {
        let mut pos = 0;
        let mut fields = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Val::Varint(read_varint(buf, &mut pos)),
                1 => {
                    let bytes: [u8; 8] = buf[pos..pos + 8].try_into().unwrap();
                    pos += 8;
                    Val::Fixed64(u64::from_le_bytes(bytes))
                }
                2 => {
                    let len = read_varint(buf, &mut pos) as usize;
                    assert!(pos + len <= buf.len(), "length {len} overruns the message");
                    pos += len;
                    Val::Bytes(buf[pos - len..pos].to_vec())
                }
                wire => panic!("unexpected wire type {wire} for field {field}"),
            };
            assert!(field > 0, "field number 0");
            fields.push((field, value));
        }
        fields
    }

    /// A parsed message with lookups by field number.
    #[derive(Clone, Debug)]
    struct Msg(Vec<(u32, Val)>);

    impl Msg {
        fn of(buf: &[u8]) -> Msg {
            Msg(parse(buf))
        }

        fn all(&self, field: u32) -> impl Iterator<Item = &Val> {
            self.0
                .iter()
                .filter(move |(f, _)| *f == field)
                .map(|(_, v)| v)
        }

        fn uint(&self, field: u32) -> Option<u64> {
            self.all(field).last().map(|v| match v {
                Val::Varint(v) => *v,
                other => panic!("field {field} is {other:?}"),
            })
        }

        fn msg(&self, field: u32) -> Option<Msg> {
            self.all(field).last().map(|v| match v {
                Val::Bytes(b) => Msg::of(b),
                other => panic!("field {field} is {other:?}"),
            })
        }

        fn msgs(&self, field: u32) -> Vec<Msg> {
            self.all(field)
                .map(|v| match v {
                    Val::Bytes(b) => Msg::of(b),
                    other => panic!("field {field} is {other:?}"),
                })
                .collect()
        }

        fn string(&self, field: u32) -> Option<String> {
            self.all(field).last().map(|v| match v {
                Val::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("field {field} is {other:?}"),
            })
        }

        fn fixed64s(&self, field: u32) -> Vec<u64> {
            self.all(field)
                .map(|v| match v {
                    Val::Fixed64(v) => *v,
                    other => panic!("field {field} is {other:?}"),
                })
                .collect()
        }

        /// A `TrackEvent`'s debug annotation by name.
        fn annotation(&self, name: &str) -> Option<Msg> {
            self.msgs(field::EVENT_DEBUG_ANNOTATIONS)
                .into_iter()
                .find(|a| a.string(field::ANNOTATION_NAME).as_deref() == Some(name))
        }
    }

    fn packets(trace: &[u8]) -> Vec<Msg> {
        let top = parse(trace);
        assert!(
            top.iter().all(|(f, _)| *f == field::TRACE_PACKET),
            "a Trace holds only packets"
        );
        Msg(top).msgs(field::TRACE_PACKET)
    }

    #[test]
    fn varints() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (value, bytes) in cases {
            let mut buf = Vec::new();
            pb::varint(&mut buf, value);
            assert_eq!(buf, bytes, "varint({value})");
            assert_eq!(pb::varint_len(value), bytes.len(), "varint_len({value})");
            let mut out = [0u8; pb::MAX_VARINT];
            assert_eq!(pb::put_varint(&mut out, value), bytes.len());
            assert_eq!(&out[..bytes.len()], bytes);
        }
        for shift in 0..64 {
            for value in [1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) + 1] {
                let mut buf = Vec::new();
                pb::varint(&mut buf, value);
                assert_eq!(pb::varint_len(value), buf.len(), "varint_len({value})");
                assert_eq!(read_varint(&buf, &mut 0), value);
            }
        }
    }

    #[test]
    fn scalar_fields() {
        let mut buf = Vec::new();
        pb::uint(&mut buf, 1, 150);
        assert_eq!(buf, [0x08, 0x96, 0x01]);
        buf.clear();
        pb::int(&mut buf, 4, -1);
        assert_eq!(buf.len(), 1 + 10, "negative int64: ten-byte varint");
        assert_eq!(parse(&buf), [(4, Val::Varint(u64::MAX))]);
        buf.clear();
        pb::fixed64(&mut buf, field::EVENT_FLOW_IDS, 0x0102_0304_0506_0708);
        // Field 47, wire type 1: key 377 = [0xf9, 0x02].
        assert_eq!(buf, [0xf9, 0x02, 8, 7, 6, 5, 4, 3, 2, 1]);
        buf.clear();
        pb::string(&mut buf, 2, "testing");
        assert_eq!(buf, b"\x12\x07testing");
        buf.clear();
        pb::uint(&mut buf, field::PACKET_FIRST_ON_SEQUENCE, 1);
        assert_eq!(buf, [0xb8, 0x05, 1], "field 87: two-byte key");
    }

    #[test]
    fn nested_lengths_are_back_patched() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let content: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = vec![0xaa];
            let outer = pb::begin(&mut buf, 5);
            let inner = pb::begin(&mut buf, 7);
            buf.extend_from_slice(&content);
            pb::end(&mut buf, inner);
            pb::uint(&mut buf, 1, 9);
            pb::end(&mut buf, outer);
            assert_eq!(buf[0], 0xaa);
            let top = parse(&buf[1..]);
            assert_eq!(top.len(), 1);
            let Val::Bytes(outer) = &top[0].1 else {
                panic!("outer is not a message")
            };
            let fields = parse(outer);
            assert_eq!(fields, [(7, Val::Bytes(content)), (1, Val::Varint(9))]);
            let mut expected = Vec::new();
            pb::varint(&mut expected, len as u64);
            assert_eq!(
                outer[1..1 + expected.len()],
                expected[..],
                "minimal length encoding for {len}"
            );
        }
    }

    #[test]
    fn track_uuids_and_flow_ids_are_distinct() {
        assert_ne!(track_uuid(100, 0), track_uuid(100, 100));
        assert_ne!(track_uuid(100, 101), track_uuid(101, 100));
        assert_eq!(flow_id(100, 7), (100 << 40) | 7);
        assert_ne!(flow_id(100, 7), flow_id(101, 7));
    }

    const PID: u32 = 100;
    const SYSMON: u32 = 10;
    const M4: u32 = 21;
    const OTHER: u32 = 22;

    fn g_addr(goid: u64) -> u64 {
        0xc000_0000 + goid * 0x1000
    }

    /// Feeds scripted events through a real correlator into a Perfetto writer, as the
    /// pipeline does.
    struct Run {
        ts: u64,
        correlator: Correlator,
        out: PerfettoOutput<Vec<u8>>,
        events: Vec<Event>,
        attempts: Vec<Attempt>,
    }

    impl Run {
        fn new() -> Run {
            Run {
                ts: 5_000_000_000,
                correlator: Correlator::new(),
                out: PerfettoOutput::new(Vec::new()).unwrap(),
                events: Vec::new(),
                attempts: Vec::new(),
            }
        }

        fn feed(&mut self, kind: EventKind, tid: u32, data: EventData, caller: Option<Caller>) {
            self.ts += 1_000;
            let event = Event {
                kind,
                ts_ns: self.ts,
                tid,
                tgid: PID,
                cpu: 1,
                seq: 0,
                data,
            };
            let hints = crate::correlate::Hints {
                caller,
                ..Default::default()
            };
            let observed = self.correlator.observe(&event, hints);
            let meaning = observed.meaning;
            let location = matches!(event.kind, EventKind::AsyncPreempt2).then(|| {
                Rc::new(Location {
                    function: "main.spin".into(),
                    file: "/src/spinner/main.go".into(),
                    line: 29,
                    inlined_into: None,
                })
            });
            let view = EventView {
                event: &event,
                meaning: &meaning,
                attempt: observed.attempt,
                location,
                caller: None,
                rel_ns: 0,
            };
            self.out.event(&view).unwrap();
            self.drain();
            self.events.push(event);
        }

        fn drain(&mut self) {
            let findings: Vec<Finding> = self.correlator.drain_findings().collect();
            for finding in findings {
                if let Finding::Attempt(attempt) = finding {
                    let view = AttemptView {
                        pid: PID,
                        attempt: &attempt,
                        location: None,
                        rel_ns: 0,
                    };
                    self.out.attempt(&view).unwrap();
                    self.attempts.push(*attempt);
                }
            }
        }

        fn goroutine(&mut self, kind: EventKind, tid: u32, goid: u64, preempted: Option<bool>) {
            let data = EventData::Goroutine {
                g_addr: g_addr(goid),
                goid: Some(goid),
                pc: matches!(kind, EventKind::DoSigPreempt | EventKind::AsyncPreempt2)
                    .then_some(0x4a1000),
                g_status: Some(2),
                preempted,
                preempt_flags: None,
            };
            self.feed(kind, tid, data, None);
        }

        fn tick(&mut self) {
            self.feed(
                EventKind::SysmonTick,
                SYSMON,
                EventData::SysmonTick { now_ns: 1 },
                None,
            );
        }

        fn request(&mut self, target: u32, goid: u64) {
            self.feed(
                EventKind::PreemptOne,
                SYSMON,
                EventData::PreemptRequest {
                    p_addr: 0xc0001000,
                    caller_pc: 0x401000,
                    schedwhen_ns: Some(self.ts as i64 - 12_000_000),
                    m_tid: Some(target),
                    goid: Some(goid),
                    p_id: Some(0),
                    schedtick: 7,
                },
                Some(Caller::Retake),
            );
        }

        /// sysmon preempts `goid` on M4 asynchronously: the whole chain.
        fn async_chain(&mut self, goid: u64) {
            self.tick();
            self.request(M4, goid);
            self.feed(
                EventKind::SignalM,
                SYSMON,
                EventData::SignalM {
                    m_addr: 0xc0002000,
                    caller_pc: 0x402000,
                    m_tid: Some(M4),
                    m_id: Some(4),
                    goid: Some(goid),
                    p_id: Some(0),
                    sig: 23,
                },
                Some(Caller::Preemptone),
            );
            self.feed(
                EventKind::Tgkill,
                SYSMON,
                EventData::Tgkill {
                    target_tgid: PID,
                    target_tid: M4,
                    sig: 23,
                },
                None,
            );
            self.feed(
                EventKind::SignalGenerate,
                SYSMON,
                EventData::SignalGenerate {
                    target_tid: M4,
                    sig: 23,
                    code: -6,
                    group: false,
                    result: crate::events::SignalResult::Delivered,
                },
                None,
            );
            self.feed(
                EventKind::SignalDeliver,
                M4,
                EventData::SignalDeliver {
                    user_pc: 0x4a1000,
                    user_sp: 0xc000f00,
                    sig: 23,
                    code: -6,
                },
                None,
            );
            self.goroutine(EventKind::DoSigPreempt, M4, goid, None);
            self.goroutine(EventKind::AsyncPreempt2, M4, goid, None);
            self.goroutine(EventKind::GoschedImpl, M4, goid, Some(true));
        }

        fn finish(mut self) -> (Vec<Msg>, Vec<Event>, Vec<Attempt>, PerfettoStats) {
            self.correlator.finish();
            self.drain();
            self.out
                .finish(&Trailer {
                    pid: PID,
                    binary: "/tmp/bin/spinner",
                    annotations: &[("events", self.events.len() as u64)],
                })
                .unwrap();
            let stats = self.out.stats();
            let trace = self.out.into_inner();
            (packets(&trace), self.events, self.attempts, stats)
        }
    }

    /// (timestamp, `TrackEvent`) of every track event packet, in file order.
    fn track_events(packets: &[Msg]) -> Vec<(u64, Msg)> {
        packets
            .iter()
            .filter_map(|p| {
                let event = p.msg(field::PACKET_TRACK_EVENT)?;
                assert_eq!(
                    p.uint(field::PACKET_SEQUENCE_FLAGS),
                    Some(field::SEQ_NEEDS_INCREMENTAL_STATE)
                );
                assert_eq!(p.uint(field::PACKET_SEQUENCE_ID), Some(SEQUENCE_ID));
                Some((p.uint(field::PACKET_TIMESTAMP).expect("timestamp"), event))
            })
            .collect()
    }

    fn name(event: &Msg) -> String {
        event.string(field::EVENT_NAME).unwrap_or_default()
    }

    #[test]
    fn sequence_start_and_clock_snapshots() {
        let (packets, ..) = Run::new().finish();
        let first = &packets[0];
        assert_eq!(first.uint(field::PACKET_SEQUENCE_ID), Some(SEQUENCE_ID));
        assert_eq!(
            first.uint(field::PACKET_SEQUENCE_FLAGS),
            Some(field::SEQ_INCREMENTAL_STATE_CLEARED)
        );
        assert_eq!(first.uint(field::PACKET_FIRST_ON_SEQUENCE), Some(1));
        let defaults = first.msg(field::PACKET_DEFAULTS).expect("defaults");
        assert_eq!(
            defaults.uint(field::DEFAULTS_CLOCK_ID),
            Some(field::CLOCK_MONOTONIC)
        );
        let snapshots: Vec<Msg> = packets
            .iter()
            .filter_map(|p| p.msg(field::PACKET_CLOCK_SNAPSHOT))
            .collect();
        assert_eq!(snapshots.len(), 2, "one at the start, one at the end");
        assert!(packets[1].msg(field::PACKET_CLOCK_SNAPSHOT).is_some());
        for snapshot in &snapshots {
            let clocks: HashMap<u64, u64> = snapshot
                .msgs(field::SNAPSHOT_CLOCKS)
                .iter()
                .map(|c| {
                    (
                        c.uint(field::CLOCK_ID).unwrap(),
                        c.uint(field::CLOCK_TIMESTAMP).unwrap(),
                    )
                })
                .collect();
            let mono = clocks[&field::CLOCK_MONOTONIC];
            assert!(clocks[&field::CLOCK_BOOTTIME] + 1_000_000 >= mono);
            assert!(clocks[&field::CLOCK_REALTIME] > 1_600_000_000_000_000_000);
        }
        // No events: just the process, named after the binary, and the summary on it.
        let events = track_events(&packets);
        assert_eq!(events.len(), 1);
        assert_eq!(name(&events[0].1), "goprobe_summary");
        assert_eq!(
            events[0].1.uint(field::EVENT_TRACK_UUID),
            Some(track_uuid(PID, 0))
        );
    }

    #[test]
    fn instants_slices_flows_and_tracks() {
        let mut run = Run::new();
        run.goroutine(EventKind::Execute, M4, 18, None);
        run.goroutine(EventKind::Execute, OTHER, 30, None);
        run.async_chain(18);
        run.goroutine(EventKind::Execute, M4, 19, None);
        run.goroutine(EventKind::Execute, M4, 20, None);
        run.goroutine(EventKind::GoschedImpl, OTHER, 30, Some(false));
        let (packets, events, attempts, stats) = run.finish();
        let async_attempts: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.outcome == Outcome::Async(PreemptAction::Reschedule))
            .collect();
        assert_eq!(async_attempts.len(), 1, "{attempts:#?}");
        let attempt = async_attempts[0];

        // Tracks: the process, named after the binary, and each thread under it.
        let mut threads = HashMap::new();
        let mut process_names = Vec::new();
        for p in &packets {
            let Some(track) = p.msg(field::PACKET_TRACK_DESCRIPTOR) else {
                continue;
            };
            let uuid = track.uint(field::TRACK_UUID).unwrap();
            if let Some(process) = track.msg(field::TRACK_PROCESS) {
                assert_eq!(uuid, track_uuid(PID, 0));
                assert_eq!(process.uint(field::PROCESS_PID), Some(u64::from(PID)));
                process_names.push(process.string(field::PROCESS_NAME));
            } else {
                let thread = track.msg(field::TRACK_THREAD).expect("thread track");
                let tid = thread.uint(field::THREAD_TID).unwrap() as u32;
                assert_eq!(uuid, track_uuid(PID, tid));
                assert_eq!(
                    track.uint(field::TRACK_PARENT_UUID),
                    Some(track_uuid(PID, 0))
                );
                assert_eq!(thread.uint(field::THREAD_PID), Some(u64::from(PID)));
                threads.insert(tid, thread.string(field::THREAD_NAME).unwrap());
            }
        }
        assert_eq!(process_names.last(), Some(&Some("spinner".to_string())));
        assert_eq!(threads.len(), 3);
        assert_eq!(threads[&SYSMON], "sysmon");
        assert_eq!(threads[&M4], "M4");
        assert_eq!(threads[&OTHER], "thread");

        let track_events = track_events(&packets);
        // One instant per event but execute, at its timestamp, on its thread's track.
        let instants: Vec<&(u64, Msg)> = track_events
            .iter()
            .filter(|(_, e)| e.uint(field::EVENT_TYPE) == Some(field::TYPE_INSTANT))
            .filter(|(_, e)| e.uint(field::EVENT_TRACK_UUID) != Some(track_uuid(PID, 0)))
            .collect();
        let expected: Vec<(u64, String, u64)> = events
            .iter()
            .filter(|e| e.kind != EventKind::Execute)
            .map(|e| {
                (
                    e.ts_ns,
                    kind_name(e.kind).to_string(),
                    track_uuid(PID, e.tid),
                )
            })
            .collect();
        let got: Vec<(u64, String, u64)> = instants
            .iter()
            .map(|(ts, e)| (*ts, name(e), e.uint(field::EVENT_TRACK_UUID).unwrap()))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(stats.instants, expected.len() as u64);

        // Slices: g18 from its execute to its preemption, g19 until g20's execute, g30
        // until its yield, g20 until the end.
        let mut slices = Vec::new();
        let mut open: HashMap<u64, (u64, String)> = HashMap::new();
        for (ts, e) in &track_events {
            let track = e.uint(field::EVENT_TRACK_UUID).unwrap();
            match e.uint(field::EVENT_TYPE) {
                Some(field::TYPE_SLICE_BEGIN) => {
                    assert!(open.insert(track, (*ts, name(e))).is_none(), "nested slice");
                }
                Some(field::TYPE_SLICE_END) => {
                    let (begin, name) = open.remove(&track).expect("end without begin");
                    let ended_by = e.annotation("ended_by").unwrap();
                    let ended_by = ended_by.string(field::ANNOTATION_STRING).unwrap();
                    slices.push((track, name, begin, *ts, ended_by));
                }
                _ => {}
            }
        }
        assert!(open.is_empty(), "every slice ends");
        let ts_of = |kind: EventKind, tid: u32, nth: usize| {
            events
                .iter()
                .filter(|e| e.kind == kind && e.tid == tid)
                .nth(nth)
                .unwrap()
                .ts_ns
        };
        let last = events.last().unwrap().ts_ns;
        let (m4, other) = (track_uuid(PID, M4), track_uuid(PID, OTHER));
        let slice = |track, name: &str, begin, end, by: &str| {
            (track, name.to_string(), begin, end, by.to_string())
        };
        assert_eq!(
            slices,
            [
                slice(
                    m4,
                    "g18",
                    ts_of(EventKind::Execute, M4, 0),
                    ts_of(EventKind::GoschedImpl, M4, 0),
                    "gosched"
                ),
                slice(
                    m4,
                    "g19",
                    ts_of(EventKind::Execute, M4, 1),
                    ts_of(EventKind::Execute, M4, 2),
                    "execute"
                ),
                slice(
                    other,
                    "g30",
                    ts_of(EventKind::Execute, OTHER, 0),
                    ts_of(EventKind::GoschedImpl, OTHER, 0),
                    "gosched"
                ),
                slice(
                    m4,
                    "g20",
                    ts_of(EventKind::Execute, M4, 2),
                    last,
                    "trace_end"
                ),
            ]
        );
        assert_eq!(stats.slices, 4);

        // The flow: every link of the async attempt, in order, and nothing else.
        let id = flow_id(PID, attempt.id);
        let linked: Vec<String> = track_events
            .iter()
            .filter(|(_, e)| e.fixed64s(field::EVENT_FLOW_IDS).contains(&id))
            .map(|(_, e)| name(e))
            .collect();
        assert_eq!(
            linked,
            [
                "sysmon_tick",
                "preempt_request",
                "signal_m",
                "tgkill",
                "signal_generate",
                "signal_deliver",
                "do_sig_preempt",
                "async_preempt",
                "gosched"
            ]
        );
        assert_eq!(stats.flows, 1);
        assert_eq!(stats.partial_flows, 0);
        // The attempt is described on its request; asyncPreempt2 has its location.
        let request = &instants[1].1;
        assert_eq!(name(request), "preempt_request");
        let outcome = request
            .annotation("attempt.outcome")
            .expect("attempt noted");
        assert_eq!(
            outcome.string(field::ANNOTATION_STRING).as_deref(),
            Some("async")
        );
        let (_, preempt) = instants
            .iter()
            .find(|(_, e)| name(e) == "async_preempt")
            .unwrap();
        let location = preempt.annotation("location").unwrap();
        assert_eq!(
            location.string(field::ANNOTATION_STRING).as_deref(),
            Some("main.spin (main.go:29)")
        );
        let goid = preempt.annotation("goid").unwrap();
        assert_eq!(goid.uint(field::ANNOTATION_UINT), Some(18));
        let pc = preempt.annotation("pc").unwrap();
        assert_eq!(pc.uint(field::ANNOTATION_POINTER), Some(0x4a1000));
    }

    #[test]
    fn a_tick_shared_by_two_attempts_carries_both_flows() {
        let mut run = Run::new();
        run.async_chain(18);
        // The next retake asks for two Ps; neither gets a signal before the end.
        run.tick();
        run.request(M4, 19);
        run.request(OTHER, 31);
        let (packets, _, attempts, stats) = run.finish();
        assert_eq!(attempts.len(), 3, "{attempts:#?}");
        let ticks: Vec<Vec<u64>> = track_events(&packets)
            .iter()
            .filter(|(_, e)| name(e) == "sysmon_tick")
            .map(|(_, e)| e.fixed64s(field::EVENT_FLOW_IDS))
            .collect();
        assert_eq!(ticks.len(), 2);
        let flows_of = |from: usize| {
            let mut ids: Vec<u64> = attempts[from..]
                .iter()
                .map(|a| flow_id(PID, a.id))
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ticks[0], flows_of(0)[..1]);
        let mut second = ticks[1].clone();
        second.sort_unstable();
        assert_eq!(second, flows_of(1));
        assert_eq!(stats.flows, 3);
    }

    #[test]
    fn every_attempt_ends_within_the_time_window() {
        let mut run = Run::new();
        run.tick();
        run.request(M4, 18);
        // Nothing more for this attempt for longer than the window: the correlator has
        // expired it by the time its events are written.
        run.ts += HOLD_NS + 1;
        run.tick();
        let (packets, _, attempts, stats) = run.finish();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, Outcome::Expired);
        assert_eq!((stats.flows, stats.partial_flows), (1, 0));
        let linked = track_events(&packets)
            .iter()
            .filter(|(_, e)| !e.fixed64s(field::EVENT_FLOW_IDS).is_empty())
            .count();
        assert_eq!(linked, 2, "the tick and the request");
    }

    #[test]
    fn events_past_the_bounds_are_written_and_their_flows_partial() {
        for (hold_ns, max_pending) in [(HOLD_NS, 4), (1_000_000, MAX_PENDING)] {
            let mut run = Run::new();
            run.out.hold_ns = hold_ns;
            run.out.max_pending = max_pending;
            run.tick();
            run.request(M4, 18);
            // Four yields elsewhere, 1 ms apart: past either bound before the attempt ends.
            for _ in 0..4 {
                run.ts += 1_000_000;
                run.goroutine(EventKind::GoschedImpl, OTHER, 30, Some(false));
            }
            run.goroutine(EventKind::GoschedImpl, M4, 18, Some(true));
            assert!(
                run.out.pending.len() <= 4,
                "the tick and the request were written: {} pending",
                run.out.pending.len()
            );
            let (_, _, attempts, stats) = run.finish();
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].outcome.name(), "cooperative");
            assert_eq!(stats.partial_flows, 1);
            assert_eq!(stats.flows, 0, "one link left: nothing to join");
        }
    }

    #[test]
    fn pending_events_are_bounded_in_number() {
        const BOUND: usize = 1000;
        let mut out = PerfettoOutput::new(Vec::new()).unwrap();
        out.max_pending = BOUND;
        let meaning = Meaning::None;
        for i in 0..(BOUND as u64 * 3) {
            let event = Event {
                kind: EventKind::SysmonTick,
                ts_ns: 1_000 + i,
                tid: SYSMON,
                tgid: PID,
                cpu: 0,
                seq: 0,
                data: EventData::SysmonTick { now_ns: 0 },
            };
            let view = EventView {
                event: &event,
                meaning: &meaning,
                attempt: None,
                location: None,
                caller: None,
                rel_ns: 0,
            };
            out.event(&view).unwrap();
        }
        assert_eq!(out.pending.len(), BOUND);
        assert_eq!(out.index.len(), BOUND, "the index forgets what was written");
        out.finish(&Trailer {
            pid: PID,
            binary: "x",
            annotations: &[],
        })
        .unwrap();
        let packets = packets(&out.into_inner());
        let ticks = track_events(&packets)
            .iter()
            .filter(|(_, e)| name(e) == "sysmon_tick")
            .count();
        assert_eq!(ticks, BOUND * 3);
    }
}
