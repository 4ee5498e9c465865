//! JSON lines: one object per event (`"type":"event"`), then one `"type":"summary"`.
//! Schema (versioned by `schema`) is documented in README.md; fields that could not be
//! read are `null`, never a made-up value.

use std::io::{self, Write};

use serde_json::{Map, Value, json};
use tracer_common::EventKind;

use super::{AttemptView, EventView, Output};
use crate::{
    correlate::{Hop, Meaning, Outcome},
    events::{EventData, kind_name},
    histogram::{Distribution, Stats},
    summary::{LocationCount, Summary},
    symbolize::Location,
};

/// Bumped on any incompatible change to the objects below. 2: `attempt` objects and the
/// attempt, latency, location and goroutine sections of the summary.
pub const SCHEMA_VERSION: u32 = 2;

pub struct JsonOutput<W: Write> {
    out: W,
    events: bool,
}

impl<W: Write> JsonOutput<W> {
    pub fn new(out: W, events: bool) -> Self {
        JsonOutput { out, events }
    }
}

fn location(loc: Option<&Location>) -> Value {
    loc.map_or(Value::Null, |loc| {
        json!({
            "function": loc.function,
            "file": loc.file,
            "line": loc.line,
            "inlined_into": loc.inlined_into,
        })
    })
}

fn hex(pc: u64) -> Value {
    Value::String(format!("{pc:#x}"))
}

/// Writes one JSON value at a time into a line, without building a `Value`: events come at
/// hundreds of thousands a second, and a `Value` per event was the bottleneck.
struct Line<'a, W: Write> {
    out: &'a mut W,
    first: bool,
    itoa: itoa::Buffer,
}

impl<'a, W: Write> Line<'a, W> {
    fn new(out: &'a mut W) -> io::Result<Self> {
        out.write_all(b"{")?;
        Ok(Line {
            out,
            first: true,
            itoa: itoa::Buffer::new(),
        })
    }

    fn key(&mut self, key: &str) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\"")?;
        self.out.write_all(key.as_bytes())?;
        self.out.write_all(b"\":")
    }

    fn int<I: itoa::Integer>(&mut self, key: &str, value: I) -> io::Result<()> {
        self.key(key)?;
        let text = self.itoa.format(value);
        self.out.write_all(text.as_bytes())
    }

    fn opt_int<I: itoa::Integer>(&mut self, key: &str, value: Option<I>) -> io::Result<()> {
        match value {
            Some(value) => self.int(key, value),
            None => self.null(key),
        }
    }

    fn null(&mut self, key: &str) -> io::Result<()> {
        self.key(key)?;
        self.out.write_all(b"null")
    }

    fn boolean(&mut self, key: &str, value: bool) -> io::Result<()> {
        self.key(key)?;
        self.out.write_all(if value { b"true" } else { b"false" })
    }

    fn opt_bool(&mut self, key: &str, value: Option<bool>) -> io::Result<()> {
        match value {
            Some(value) => self.boolean(key, value),
            None => self.null(key),
        }
    }

    fn string(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.key(key)?;
        write_json_string(self.out, value)
    }

    fn opt_string(&mut self, key: &str, value: Option<&str>) -> io::Result<()> {
        match value {
            Some(value) => self.string(key, value),
            None => self.null(key),
        }
    }

    fn hex(&mut self, key: &str, pc: u64) -> io::Result<()> {
        self.key(key)?;
        write!(self.out, "\"{pc:#x}\"")
    }

    fn location(&mut self, key: &str, loc: Option<&Location>) -> io::Result<()> {
        let Some(loc) = loc else {
            return self.null(key);
        };
        self.key(key)?;
        let mut inner = Line::new(self.out)?;
        inner.string("function", &loc.function)?;
        inner.string("file", &loc.file)?;
        inner.int("line", loc.line)?;
        inner.opt_string("inlined_into", loc.inlined_into.as_deref())?;
        inner.end()
    }

    fn end(self) -> io::Result<()> {
        self.out.write_all(b"}")
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
fn write_json_string<W: Write>(out: &mut W, text: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\t' => Some(b"\\t"),
            b'\r' => Some(b"\\r"),
            0..0x20 => None,
            _ => continue,
        };
        out.write_all(&bytes[start..i])?;
        match escape {
            Some(seq) => out.write_all(seq)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_all(&bytes[start..])?;
    out.write_all(b"\"")
}

/// One event as a JSON line. Same keys and values as [`event_object`], which stays as
/// the readable reference the tests compare against.
pub fn write_event<W: Write>(out: &mut W, view: &EventView<'_>) -> io::Result<()> {
    let event = view.event;
    let mut line = Line::new(out)?;
    line.string("type", "event")?;
    line.string("kind", kind_name(event.kind))?;
    line.int("ts_ns", event.ts_ns)?;
    line.int("tid", event.tid)?;
    line.int("tgid", event.tgid)?;
    line.int("cpu", event.cpu)?;
    let caller = view.caller.as_ref().map(|c| c.function.as_str());
    match &event.data {
        EventData::SysmonTick { now_ns } => line.int("now_ns", *now_ns)?,
        EventData::PreemptRequest {
            p_id,
            m_tid,
            goid,
            schedtick,
            schedwhen_ns,
            caller_pc,
            ..
        } => {
            line.opt_int("p_id", *p_id)?;
            line.opt_int("m_tid", *m_tid)?;
            line.opt_int("goid", *goid)?;
            line.int("schedtick", *schedtick)?;
            line.opt_int("schedwhen_ns", *schedwhen_ns)?;
            line.opt_int(
                "running_ns",
                schedwhen_ns.map(|when| event.ts_ns as i64 - when),
            )?;
            line.opt_string("caller", caller)?;
            line.hex("caller_pc", *caller_pc)?;
        }
        EventData::SignalM {
            m_id,
            m_tid,
            goid,
            p_id,
            sig,
            caller_pc,
            ..
        } => {
            line.opt_int("m_id", *m_id)?;
            line.opt_int("m_tid", *m_tid)?;
            line.opt_int("goid", *goid)?;
            line.opt_int("p_id", *p_id)?;
            line.int("sig", *sig)?;
            line.opt_string("caller", caller)?;
            line.hex("caller_pc", *caller_pc)?;
        }
        EventData::Tgkill {
            target_tgid,
            target_tid,
            sig,
        } => {
            line.int("target_tgid", *target_tgid)?;
            line.int("target_tid", *target_tid)?;
            line.int("sig", *sig)?;
        }
        EventData::SignalGenerate {
            target_tid,
            sig,
            code,
            group,
            result,
        } => {
            line.int("target_tid", *target_tid)?;
            line.int("sig", *sig)?;
            line.int("code", *code)?;
            line.boolean("group", *group)?;
            line.string("result", result.name())?;
        }
        EventData::SignalDeliver {
            user_pc, sig, code, ..
        } => {
            line.int("sig", *sig)?;
            line.int("code", *code)?;
            line.hex("pc", *user_pc)?;
            line.location("location", view.location.as_deref())?;
        }
        EventData::Goroutine {
            goid,
            pc,
            g_status,
            preempted,
            preempt_flags,
            ..
        } => {
            line.opt_int("goid", *goid)?;
            match pc {
                Some(pc) => line.hex("pc", *pc)?,
                None => line.null("pc")?,
            }
            line.opt_int("g_status", *g_status)?;
            line.opt_bool("preempted", *preempted)?;
            line.opt_bool("g_preempt", preempt_flags.map(|f| f.0))?;
            line.opt_bool("g_preempt_stop", preempt_flags.map(|f| f.1))?;
            let (path, action) = match view.meaning {
                Meaning::Preemption(p) => (Some(p.path.name()), Some(p.action.name())),
                Meaning::VoluntaryYield => (None, Some("yield")),
                Meaning::None => (None, None),
            };
            line.opt_string("path", path)?;
            line.opt_string("action", action)?;
            line.location("location", view.location.as_deref())?;
        }
    }
    line.end()?;
    out.write_all(b"\n")
}

/// One event as a JSON value: the readable reference for [`write_event`].
pub fn event_object(view: &EventView<'_>) -> Value {
    let event = view.event;
    let mut obj = Map::new();
    obj.insert("type".into(), "event".into());
    obj.insert("kind".into(), kind_name(event.kind).into());
    obj.insert("ts_ns".into(), event.ts_ns.into());
    obj.insert("tid".into(), event.tid.into());
    obj.insert("tgid".into(), event.tgid.into());
    obj.insert("cpu".into(), event.cpu.into());
    let caller = || {
        view.caller
            .as_ref()
            .map_or(Value::Null, |c| c.function.clone().into())
    };
    let fields = match &event.data {
        EventData::SysmonTick { now_ns } => json!({ "now_ns": now_ns }),
        EventData::PreemptRequest {
            p_id,
            m_tid,
            goid,
            schedtick,
            schedwhen_ns,
            caller_pc,
            ..
        } => json!({
            "p_id": p_id, "m_tid": m_tid, "goid": goid, "schedtick": schedtick,
            "schedwhen_ns": schedwhen_ns,
            "running_ns": schedwhen_ns.map(|when| event.ts_ns as i64 - when),
            "caller": caller(), "caller_pc": hex(*caller_pc),
        }),
        EventData::SignalM {
            m_id,
            m_tid,
            goid,
            p_id,
            sig,
            caller_pc,
            ..
        } => json!({
            "m_id": m_id, "m_tid": m_tid, "goid": goid, "p_id": p_id, "sig": sig,
            "caller": caller(), "caller_pc": hex(*caller_pc),
        }),
        EventData::Tgkill {
            target_tgid,
            target_tid,
            sig,
        } => json!({ "target_tgid": target_tgid, "target_tid": target_tid, "sig": sig }),
        EventData::SignalGenerate {
            target_tid,
            sig,
            code,
            group,
            result,
        } => json!({
            "target_tid": target_tid, "sig": sig, "code": code, "group": group,
            "result": result.name(),
        }),
        EventData::SignalDeliver {
            user_pc, sig, code, ..
        } => json!({
            "sig": sig, "code": code, "pc": hex(*user_pc),
            "location": location(view.location.as_deref()),
        }),
        EventData::Goroutine {
            goid,
            pc,
            g_status,
            preempted,
            preempt_flags,
            ..
        } => {
            let (path, action) = match view.meaning {
                Meaning::Preemption(p) => {
                    (Value::from(p.path.name()), Value::from(p.action.name()))
                }
                Meaning::VoluntaryYield => (Value::Null, Value::from("yield")),
                Meaning::None => (Value::Null, Value::Null),
            };
            json!({
                "goid": goid, "pc": pc.map(hex), "g_status": g_status,
                "preempted": preempted,
                "g_preempt": preempt_flags.map(|f| f.0),
                "g_preempt_stop": preempt_flags.map(|f| f.1),
                "path": path, "action": action,
                "location": location(view.location.as_deref()),
            })
        }
    };
    if let Value::Object(fields) = fields {
        obj.extend(fields);
    }
    Value::Object(obj)
}

pub fn attempt_object(view: &AttemptView<'_>) -> Value {
    let a = view.attempt;
    let st = &a.stamps;
    let (action, refusal) = match a.outcome {
        Outcome::Async(action) | Outcome::Cooperative(action) => (Some(action.name()), None),
        Outcome::Refused(refusal) => (None, Some(refusal.name())),
        _ => (None, None),
    };
    let hops: Map<String, Value> = a
        .hops()
        .map(|(hop, ns)| (hop.key().to_string(), Value::from(ns)))
        .collect();
    json!({
        "type": "attempt",
        "id": a.id,
        "ts_ns": a.start_ns(),
        "requester": a.requester.name(),
        "requester_tid": a.requester_tid,
        "target_tid": a.target_tid,
        "goid": a.goid,
        "preempted_goid": a.preempted_goid,
        "p_id": a.p_id,
        "m_id": a.m_id,
        "ran_ns": a.ran_ns,
        "retries": a.retries,
        "outcome": a.outcome.name(),
        "action": action,
        "refusal": refusal,
        "refused_before": a.refused.map(|r| r.name()),
        "interrupted_pc": a.interrupted_pc.map(hex),
        "location": location(view.location.as_deref()),
        "stamps": {
            "tick": st.tick, "request": st.request, "signal": st.signal, "tgkill": st.tgkill,
            "generate": st.generate, "deliver": st.deliver, "handler": st.handler,
            "preempt": st.preempt, "off": st.off,
        },
        "hops": hops,
    })
}

fn stats_object(stats: Option<Stats>) -> Value {
    stats.map_or(Value::Null, |s| {
        json!({
            "count": s.count, "min": s.min, "p50": s.p50, "p90": s.p90, "p99": s.p99,
            "max": s.max, "mean": s.mean, "exact": s.exact,
        })
    })
}

fn distribution(d: &Distribution) -> Value {
    stats_object(d.stats())
}

fn locations(rows: &[LocationCount]) -> Value {
    rows.iter()
        .map(|row| json!({ "location": location(row.location.as_ref()), "count": row.count }))
        .collect()
}

pub fn summary_object(s: &Summary) -> Value {
    let per_kind = |counts: &crate::events::PerKind| {
        EventKind::ALL
            .into_iter()
            .map(|kind| (kind_name(kind).to_string(), Value::from(counts.get(kind))))
            .collect::<Map<_, _>>()
    };
    let threads: Map<_, _> = s
        .per_thread
        .iter()
        .map(|(tid, counts)| (tid.to_string(), Value::Object(per_kind(counts))))
        .collect();
    let p = &s.preemptions;
    let run = &s.run;
    json!({
        "type": "summary",
        "schema": SCHEMA_VERSION,
        "pid": run.pid,
        "binary": run.binary,
        "go_version": run.go_version,
        "duration_ns": run.duration_ns,
        "end_reason": run.end_reason,
        "events": per_kind(&s.received),
        "events_total": s.received.total(),
        "lost": per_kind(&s.kernel.lost),
        "lost_total": s.lost_total(),
        "read_errors": per_kind(&s.kernel.read_errors),
        "unaccounted": s.unaccounted(),
        "malformed": s.malformed,
        "preemptions": {
            "async": s.async_preemptions(),
            "async_reschedule": p.async_reschedule,
            "async_park": p.async_park,
            "cooperative": p.cooperative(),
            "stack_check_reschedule": p.stack_check_reschedule,
            "stack_check_park": p.stack_check_park,
            "voluntary_yields": s.voluntary_yields,
        },
        "attempts": {
            "total": s.attempts(),
            "by_outcome": s.by_outcome(),
            "by_requester": crate::correlate::Requester::ALL
                .iter()
                .map(|r| (r.name().to_string(), json!(s.by_requester(*r))))
                .collect::<Map<_, _>>(),
            "refusals": s
                .refusals
                .iter()
                .map(|(r, n)| (r.name().to_string(), Value::from(*n)))
                .collect::<Map<_, _>>(),
        },
        "hops": Hop::ALL
            .iter()
            .map(|hop| (hop.key().to_string(), stats_object(s.hops.get(hop).copied())))
            .collect::<Map<_, _>>(),
        "ran_before_request": distribution(&s.ran_before_request),
        "tick_interval": distribution(&s.tick_intervals),
        "gc_delay": distribution(&s.gc_delays),
        "stw_delay": distribution(&s.stw_delays),
        "top_async_locations": locations(&s.async_locations),
        "top_cooperative_locations": locations(&s.cooperative_locations),
        "top_refused_locations": locations(&s.refused_locations),
        "goroutine_count": s.goroutine_count,
        "goroutines": s.goroutines.iter().map(|(goid, g)| json!({
            "goid": goid, "async": g.async_preemptions, "cooperative": g.cooperative_preemptions,
            "parks": g.parks, "requests": g.requests, "refused": g.refused,
            "ran_mean_ns": g.ran_mean_ns(),
            "ran_max_ns": (g.ran_count > 0).then_some(g.ran_max_ns),
        })).collect::<Vec<_>>(),
        "threads": threads,
        "probes": run.probes.iter().map(|probe| json!({
            "link": probe.link, "program": probe.program, "target": probe.target,
            "status": probe.status, "attached": probe.attached,
        })).collect::<Vec<_>>(),
    })
}

impl<W: Write> Output for JsonOutput<W> {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        if !self.events {
            return Ok(());
        }
        write_event(&mut self.out, view)
    }

    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()> {
        if !self.events {
            return Ok(());
        }
        serde_json::to_writer(&mut self.out, &attempt_object(view))?;
        self.out.write_all(b"\n")
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, &summary_object(summary))?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use tracer_common::EventKind;

    use super::*;
    use crate::{
        correlate::{PreemptAction, PreemptPath, Preemption},
        events::{Event, SignalResult},
    };

    fn location() -> Option<Rc<Location>> {
        Some(Rc::new(Location {
            function: "main.(*T).spin[...]".into(),
            file: "/src/a \"quoted\"\\dir/main.go\u{1}".into(),
            line: 29,
            inlined_into: Some("main.outer".into()),
        }))
    }

    fn all_shapes() -> Vec<(Event, Meaning)> {
        let event = |kind, data| Event {
            kind,
            ts_ns: 5_000_000_123,
            tid: 7,
            tgid: 5,
            cpu: 1,
            seq: 0,
            data,
        };
        let preempted = Meaning::Preemption(Preemption {
            ts_ns: 1,
            tid: 7,
            goid: Some(18),
            path: PreemptPath::Async,
            action: PreemptAction::Park,
            pc: None,
        });
        vec![
            (
                event(EventKind::SysmonTick, EventData::SysmonTick { now_ns: -3 }),
                Meaning::None,
            ),
            (
                event(
                    EventKind::PreemptOne,
                    EventData::PreemptRequest {
                        p_addr: 1,
                        caller_pc: 0x4010,
                        schedwhen_ns: Some(4_000_000_000),
                        m_tid: Some(9),
                        goid: None,
                        p_id: Some(0),
                        schedtick: 3,
                    },
                ),
                Meaning::None,
            ),
            (
                event(
                    EventKind::SignalM,
                    EventData::SignalM {
                        m_addr: 1,
                        caller_pc: 0x4020,
                        m_tid: None,
                        m_id: Some(4),
                        goid: Some(18),
                        p_id: None,
                        sig: 23,
                    },
                ),
                Meaning::None,
            ),
            (
                event(
                    EventKind::Tgkill,
                    EventData::Tgkill {
                        target_tgid: 5,
                        target_tid: 9,
                        sig: 23,
                    },
                ),
                Meaning::None,
            ),
            (
                event(
                    EventKind::SignalGenerate,
                    EventData::SignalGenerate {
                        target_tid: 9,
                        sig: 23,
                        code: -6,
                        group: false,
                        result: SignalResult::AlreadyPending,
                    },
                ),
                Meaning::None,
            ),
            (
                event(
                    EventKind::SignalDeliver,
                    EventData::SignalDeliver {
                        user_pc: 0x4a1000,
                        user_sp: 0,
                        sig: 23,
                        code: -6,
                    },
                ),
                Meaning::None,
            ),
            (
                event(
                    EventKind::PreemptPark,
                    EventData::Goroutine {
                        g_addr: 1,
                        goid: Some(18),
                        pc: Some(0x4a1000),
                        g_status: None,
                        preempted: Some(true),
                        preempt_flags: Some((true, false)),
                    },
                ),
                preempted,
            ),
            (
                event(
                    EventKind::GoschedImpl,
                    EventData::Goroutine {
                        g_addr: 1,
                        goid: None,
                        pc: None,
                        g_status: Some(2),
                        preempted: None,
                        preempt_flags: None,
                    },
                ),
                Meaning::VoluntaryYield,
            ),
        ]
    }

    #[test]
    fn fast_writer_equals_the_reference() {
        for (event, meaning) in all_shapes() {
            for (loc, caller) in [(None, None), (location(), location())] {
                let view = EventView {
                    event: &event,
                    meaning: &meaning,
                    location: loc,
                    caller,
                    rel_ns: 0,
                };
                let mut fast = Vec::new();
                write_event(&mut fast, &view).unwrap();
                assert_eq!(fast.last(), Some(&b'\n'));
                let parsed: Value = serde_json::from_slice(&fast)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&fast)));
                assert_eq!(
                    parsed,
                    event_object(&view),
                    "{}",
                    String::from_utf8_lossy(&fast)
                );
            }
        }
    }
}
