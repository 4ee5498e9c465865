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
            multi: false,
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
                    multi: false,
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
    // Events of an attempt are written when it ends: file order is not time order.
    let mut instants = instants;
    instants.sort_by_key(|(ts, _)| *ts);
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
    let linked: Vec<String> = instants
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
fn an_attempt_open_for_a_minute_keeps_its_events() {
    let mut run = Run::new();
    run.tick();
    run.request(M4, 18);
    // Nothing more for this attempt for longer than the correlator keeps it open: it
    // expires, and its events are written then, with its flow.
    run.ts += ORPHAN_NS + 1;
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
fn only_events_of_open_attempts_and_the_last_tick_are_held() {
    let mut run = Run::new();
    for goid in 18..1018 {
        run.async_chain(goid);
        run.goroutine(EventKind::GoschedImpl, OTHER, 30, Some(false));
    }
    assert!(run.out.held.is_empty(), "every attempt ended");
    assert_eq!(run.out.ticks.len(), 1, "the last tick waits for the next");
    run.tick();
    run.request(M4, 2000);
    assert_eq!(run.out.held.len(), 1, "the open attempt");
    assert_eq!(run.out.ticks.len(), 1);
    // Another tick: the one before waits for the attempt it asked for.
    run.tick();
    assert_eq!(run.out.ticks.len(), 2);
    run.goroutine(EventKind::GoschedImpl, M4, 2000, Some(true));
    assert!(run.out.held.is_empty());
    assert_eq!(run.out.ticks.len(), 1);
    let (packets, _, attempts, stats) = run.finish();
    assert_eq!(attempts.len(), 1001);
    assert_eq!((stats.flows, stats.partial_flows), (1001, 0));
    let ticks = track_events(&packets)
        .iter()
        .filter(|(_, e)| name(e) == "sysmon_tick")
        .count();
    assert_eq!(ticks, 1002);
}

#[test]
fn events_whose_attempt_never_comes_are_written_after_a_minute() {
    let mut run = Run::new();
    // The GC asks to suspend g18 (an attempt to be), but sysmon's request preempts it
    // first: that attempt ends, the GC's never comes.
    let suspend = EventData::Goroutine {
        g_addr: g_addr(18),
        goid: Some(18),
        pc: None,
        g_status: Some(2),
        preempted: None,
        preempt_flags: None,
    };
    run.feed(EventKind::SuspendG, OTHER, suspend, Some(Caller::Other));
    run.tick();
    run.request(M4, 18);
    run.goroutine(EventKind::GoschedImpl, M4, 18, Some(true));
    // sysmon's next tick: it sent no signal, so its attempt is over.
    run.tick();
    assert_eq!(run.out.held.len(), 1, "the suspend_g waits");
    run.ts += ORPHAN_NS + ORPHAN_CHECK_NS;
    run.goroutine(EventKind::GoschedImpl, OTHER, 30, Some(false));
    run.goroutine(EventKind::GoschedImpl, OTHER, 30, Some(false));
    assert!(run.out.held.is_empty(), "written after a minute");
    let (packets, _, attempts, stats) = run.finish();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!((stats.flows, stats.partial_flows), (1, 0));
    let events = track_events(&packets);
    let (_, suspend) = events
        .iter()
        .find(|(_, e)| name(e) == "suspend_g")
        .expect("suspend_g written");
    assert!(suspend.fixed64s(field::EVENT_FLOW_IDS).is_empty());
}
