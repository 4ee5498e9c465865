//! The Perfetto protobuf messages goprobe writes: field numbers checked against the
//! official protos, and the few wire-format encoders they need.

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
