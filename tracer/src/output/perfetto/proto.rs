//! The Perfetto protobuf messages goprobe writes: field numbers checked against the
//! official protos, the few wire-format encoders they need, and the packets and
//! `TrackEvent` fields built from them.

/// Field numbers and enum values, from the official protos as shipped in PyPI's `perfetto`
/// 0.59.1 (`perfetto.protos.perfetto.trace.perfetto_trace_pb2`, read with
/// `<Message>.DESCRIPTOR.fields_by_name`). Wire type in brackets.
pub(super) mod field {
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
pub(super) mod pb {
    pub const WIRE_VARINT: u32 = 0;
    pub const WIRE_I64: u32 = 1;
    pub const WIRE_LEN: u32 = 2;

    /// Longest varint: a u64 in 7-bit groups.
    #[cfg(test)]
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
        end_with(buf, start, 0);
    }

    /// [`end`] for a message whose content goes on for `more` bytes written elsewhere
    /// after `buf`.
    pub fn end_with(buf: &mut Vec<u8>, start: usize, more: usize) {
        let written = buf.len() - start;
        let len = written + more;
        let need = varint_len(len as u64);
        if need > 1 {
            buf.resize(buf.len() + need - 1, 0);
            buf.copy_within(start..start + written, start + need - 1);
        }
        put_varint(&mut buf[start - 1..], len as u64);
    }
}

/// Whole `TracePacket`s (each a `Trace.packet` field), on the one sequence goprobe writes.
pub(super) mod packet {
    use super::{field, pb};

    /// The one packet sequence this writer produces.
    pub const SEQUENCE_ID: u64 = 1;

    /// The first packet: clears incremental state, declares CLOCK_MONOTONIC the default.
    pub fn sequence_start(buf: &mut Vec<u8>) {
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let flags = field::SEQ_INCREMENTAL_STATE_CLEARED;
        pb::uint(buf, field::PACKET_SEQUENCE_FLAGS, flags);
        pb::uint(buf, field::PACKET_FIRST_ON_SEQUENCE, 1);
        let defaults = pb::begin(buf, field::PACKET_DEFAULTS);
        pb::uint(buf, field::DEFAULTS_CLOCK_ID, field::CLOCK_MONOTONIC);
        pb::end(buf, defaults);
        pb::end(buf, packet);
    }

    /// A `ClockSnapshot` of (`BuiltinClock`, timestamp) pairs.
    pub fn clock_snapshot(buf: &mut Vec<u8>, clocks: &[(u64, u64)]) {
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let snapshot = pb::begin(buf, field::PACKET_CLOCK_SNAPSHOT);
        for (id, ts) in clocks {
            let clock = pb::begin(buf, field::SNAPSHOT_CLOCKS);
            pb::uint(buf, field::CLOCK_ID, *id);
            pb::uint(buf, field::CLOCK_TIMESTAMP, *ts);
            pb::end(buf, clock);
        }
        pb::end(buf, snapshot);
        pb::end(buf, packet);
    }

    /// A `TrackDescriptor` of a process track.
    pub fn process_descriptor(buf: &mut Vec<u8>, uuid: u64, pid: u32, name: Option<&str>) {
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let track = pb::begin(buf, field::PACKET_TRACK_DESCRIPTOR);
        pb::uint(buf, field::TRACK_UUID, uuid);
        let process = pb::begin(buf, field::TRACK_PROCESS);
        pb::int(buf, field::PROCESS_PID, i64::from(pid));
        if let Some(name) = name {
            pb::string(buf, field::PROCESS_NAME, name);
        }
        pb::end(buf, process);
        pb::end(buf, track);
        pb::end(buf, packet);
    }

    /// A `TrackDescriptor` of a thread track under its process's (`parent`).
    pub fn thread_descriptor(
        buf: &mut Vec<u8>,
        [uuid, parent]: [u64; 2],
        [pid, tid]: [u32; 2],
        name: &str,
    ) {
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let track = pb::begin(buf, field::PACKET_TRACK_DESCRIPTOR);
        pb::uint(buf, field::TRACK_UUID, uuid);
        pb::uint(buf, field::TRACK_PARENT_UUID, parent);
        let thread = pb::begin(buf, field::TRACK_THREAD);
        pb::int(buf, field::THREAD_PID, i64::from(pid));
        pb::int(buf, field::THREAD_TID, i64::from(tid));
        pb::string(buf, field::THREAD_NAME, name);
        pb::end(buf, thread);
        pb::end(buf, track);
        pb::end(buf, packet);
    }

    /// A packet with a `TrackEvent` at `ts`, up to the event's fields (`event_len` bytes,
    /// written after it).
    pub fn track_event_head(buf: &mut Vec<u8>, ts: u64, event_len: usize) {
        let packet = pb::begin(buf, field::TRACE_PACKET);
        pb::uint(buf, field::PACKET_TIMESTAMP, ts);
        pb::uint(buf, field::PACKET_SEQUENCE_ID, SEQUENCE_ID);
        let flags = field::SEQ_NEEDS_INCREMENTAL_STATE;
        pb::uint(buf, field::PACKET_SEQUENCE_FLAGS, flags);
        pb::tag(buf, field::PACKET_TRACK_EVENT, pb::WIRE_LEN);
        pb::varint(buf, event_len as u64);
        pb::end_with(buf, packet, event_len);
    }
}

/// `TrackEvent` fields: the type and track every event starts with, debug annotations.
pub(super) mod event {
    use super::{field, pb};

    pub fn header(buf: &mut Vec<u8>, kind: u64, track: u64) {
        pb::uint(buf, field::EVENT_TYPE, kind);
        pb::uint(buf, field::EVENT_TRACK_UUID, track);
    }

    fn annotation(buf: &mut Vec<u8>, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
        let start = pb::begin(buf, field::EVENT_DEBUG_ANNOTATIONS);
        pb::string(buf, field::ANNOTATION_NAME, name);
        value(buf);
        pb::end(buf, start);
    }

    pub fn uint(buf: &mut Vec<u8>, name: &str, value: u64) {
        annotation(buf, name, |buf| {
            pb::uint(buf, field::ANNOTATION_UINT, value)
        });
    }

    pub fn int(buf: &mut Vec<u8>, name: &str, value: i64) {
        annotation(buf, name, |buf| pb::int(buf, field::ANNOTATION_INT, value));
    }

    /// Shown in hex.
    pub fn pointer(buf: &mut Vec<u8>, name: &str, value: u64) {
        annotation(buf, name, |buf| {
            pb::uint(buf, field::ANNOTATION_POINTER, value)
        });
    }

    pub fn bool(buf: &mut Vec<u8>, name: &str, value: bool) {
        let value = u64::from(value);
        annotation(buf, name, |buf| {
            pb::uint(buf, field::ANNOTATION_BOOL, value)
        });
    }

    pub fn str(buf: &mut Vec<u8>, name: &str, value: &str) {
        annotation(buf, name, |buf| {
            pb::string(buf, field::ANNOTATION_STRING, value)
        });
    }
}
