//! JSON lines: one object per event (`"type":"event"`) and per finished attempt
//! (`"type":"attempt"`), then one `"type":"summary"` per traced process and, when there
//! were several, a `"type":"total"`. Schema (versioned by `schema`) is
//! documented in README.md; fields that could not be read are `null`, never a made-up
//! value. Every object is a `#[derive(Serialize)]` view of goprobe's own types, written
//! with `serde_json::to_writer` into a buffered writer.

use std::io::{self, Write};

use serde::{Serialize, Serializer, ser::SerializeMap as _};
use tracer_common::EventKind;

use super::{AttemptView, EventView, Output};
use crate::{
    chain::Link,
    correlate::{Attempt, Hop, Meaning, Outcome, Requester},
    events::{EventData, PerKind, kind_name},
    histogram::{Distribution, Stats},
    summary::{IntervalReport, LocationCount, Summary, Total},
    symbolize::Location,
};

/// Bumped on any incompatible change to the objects below. 2: `attempt` objects and the
/// attempt, latency, location and goroutine sections of the summary. 3: `pid` (the host
/// pid) on every object, `attempt` on events, `events_lost` on attempts, `yield` events.
pub const SCHEMA_VERSION: u32 = 5;

pub struct JsonOutput<W: Write> {
    out: W,
    events: bool,
}

impl<W: Write> JsonOutput<W> {
    pub fn new(out: W, events: bool) -> Self {
        JsonOutput { out, events }
    }

    fn line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }
}

/// A PC as `"0x…"`.
struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// The fields every event line starts with. Each kind's line is its own flat struct
/// (`event_line!`): `#[serde(flatten)]` would buffer every line through a map.
macro_rules! event_line {
    ($name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Serialize)]
        struct $name<'a> {
            #[serde(rename = "type")]
            ty: &'static str,
            kind: &'a str,
            ts_ns: u64,
            pid: u32,
            tid: u32,
            cpu: u32,
            attempt: Option<u64>,
            $($field: $ty),*
        }
    };
}

event_line!(TickLine { now_ns: i64 });
event_line!(ExecLine {});
event_line!(RequestLine {
    p_id: Option<i32>,
    m_tid: Option<u32>,
    goid: Option<u64>,
    schedtick: u32,
    schedwhen_ns: Option<i64>,
    running_ns: Option<i64>,
    caller: Option<&'a str>,
    caller_pc: Hex,
});
event_line!(SignalMLine {
    m_id: Option<i64>,
    m_tid: Option<u32>,
    goid: Option<u64>,
    p_id: Option<i32>,
    sig: u32,
    caller: Option<&'a str>,
    caller_pc: Hex,
});
event_line!(TgkillLine {
    target_tgid: u32,
    target_tid: u32,
    sig: u32,
});
event_line!(TgkillFailedLine {
    target_tgid: u32,
    target_tid: u32,
    sig: u32,
    errno: u32,
    error: std::borrow::Cow<'static, str>,
});
event_line!(GenerateLine {
    target_tid: u32,
    sig: u32,
    code: i32,
    group: bool,
    result: &'static str,
});
event_line!(DeliverLine {
    sig: u32,
    code: i32,
    pc: Hex,
    location: Option<&'a Location>,
});
event_line!(GoroutineLine {
    goid: Option<u64>,
    pc: Option<Hex>,
    g_status: Option<u32>,
    preempted: Option<bool>,
    g_preempt: Option<bool>,
    g_preempt_stop: Option<bool>,
    path: Option<&'static str>,
    action: Option<&'static str>,
    location: Option<&'a Location>,
});

/// One event as a JSON line (without the newline).
pub fn write_event<W: Write>(out: &mut W, view: &EventView<'_>) -> serde_json::Result<()> {
    let event = view.event;
    macro_rules! line {
        ($line:ident { $($fields:tt)* }) => {
            serde_json::to_writer(
                &mut *out,
                &$line {
                    ty: "event",
                    kind: kind_name(event.kind),
                    ts_ns: event.ts_ns,
                    pid: event.tgid,
                    tid: event.tid,
                    cpu: event.cpu,
                    attempt: view.attempt,
                    $($fields)*
                },
            )
        };
    }
    let caller = view.caller.as_deref().map(|c| c.function.as_str());
    let location = view.location.as_deref();
    match &event.data {
        EventData::SysmonTick { now_ns } => line!(TickLine { now_ns: *now_ns }),
        EventData::ProcessExec => line!(ExecLine {}),
        EventData::PreemptRequest {
            p_id,
            m_tid,
            goid,
            schedtick,
            schedwhen_ns,
            caller_pc,
            ..
        } => line!(RequestLine {
            p_id: *p_id,
            m_tid: *m_tid,
            goid: *goid,
            schedtick: *schedtick,
            schedwhen_ns: *schedwhen_ns,
            running_ns: schedwhen_ns.map(|when| event.ts_ns as i64 - when),
            caller,
            caller_pc: Hex(*caller_pc),
        }),
        EventData::SignalM {
            m_id,
            m_tid,
            goid,
            p_id,
            sig,
            caller_pc,
            ..
        } => line!(SignalMLine {
            m_id: *m_id,
            m_tid: *m_tid,
            goid: *goid,
            p_id: *p_id,
            sig: *sig,
            caller,
            caller_pc: Hex(*caller_pc),
        }),
        EventData::Tgkill {
            target_tgid,
            target_tid,
            sig,
        } => line!(TgkillLine {
            target_tgid: *target_tgid,
            target_tid: *target_tid,
            sig: *sig,
        }),
        EventData::TgkillFailed {
            target_tgid,
            target_tid,
            sig,
            errno,
        } => line!(TgkillFailedLine {
            target_tgid: *target_tgid,
            target_tid: *target_tid,
            sig: *sig,
            errno: *errno,
            error: crate::events::errno_name(*errno),
        }),
        EventData::SignalGenerate {
            target_tid,
            sig,
            code,
            group,
            result,
        } => line!(GenerateLine {
            target_tid: *target_tid,
            sig: *sig,
            code: *code,
            group: *group,
            result: result.name(),
        }),
        EventData::SignalDeliver {
            user_pc, sig, code, ..
        } => line!(DeliverLine {
            sig: *sig,
            code: *code,
            pc: Hex(*user_pc),
            location,
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
                Meaning::Preemption(p) => (Some(p.path.name()), Some(p.action.name())),
                Meaning::VoluntaryYield => (None, Some("yield")),
                Meaning::None => (None, None),
            };
            line!(GoroutineLine {
                goid: *goid,
                pc: pc.map(Hex),
                g_status: *g_status,
                preempted: *preempted,
                g_preempt: preempt_flags.map(|f| f.0),
                g_preempt_stop: preempt_flags.map(|f| f.1),
                path,
                action,
                location,
            })
        }
    }
}

/// An attempt's stamps: an object keyed by link, in chain order.
struct StampsView<'a>(&'a Attempt);

impl Serialize for StampsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Link::ALL.len()))?;
        for (link, ts) in self.0.stamps.iter() {
            map.serialize_entry(link.key(), &ts)?;
        }
        map.end()
    }
}

/// An attempt's hops that have both ends: an object keyed by hop, in chain order.
struct HopsView<'a>(&'a Attempt);

impl Serialize for HopsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (hop, ns) in self.0.hops() {
            map.serialize_entry(&hop.key(), &ns)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: u64,
    pid: u32,
    ts_ns: u64,
    requester: &'static str,
    requester_tid: u32,
    target_tid: Option<u32>,
    goid: Option<u64>,
    preempted_goid: Option<u64>,
    p_id: Option<i32>,
    m_id: Option<i64>,
    ran_ns: Option<u64>,
    retries: u32,
    outcome: &'static str,
    action: Option<&'static str>,
    refusal: Option<&'static str>,
    refused_before: Option<&'static str>,
    events_lost: bool,
    interrupted_pc: Option<Hex>,
    location: Option<&'a Location>,
    stamps: StampsView<'a>,
    hops: HopsView<'a>,
}

impl<'a> AttemptLine<'a> {
    fn new(view: &'a AttemptView<'a>) -> AttemptLine<'a> {
        let a = view.attempt;
        let (action, refusal) = match a.outcome {
            Outcome::Async(action) | Outcome::Cooperative(action) => (Some(action.name()), None),
            Outcome::Refused(refusal) => (None, Some(refusal.name())),
            _ => (None, None),
        };
        AttemptLine {
            ty: "attempt",
            id: a.id,
            pid: view.pid,
            ts_ns: a.start_ns(),
            requester: a.requester.name(),
            requester_tid: a.requester_tid,
            target_tid: a.target_tid,
            goid: a.goid,
            preempted_goid: a.preempted_goid,
            p_id: a.p_id,
            m_id: a.m_id,
            ran_ns: a.ran_ns,
            retries: a.retries,
            outcome: a.outcome.name(),
            action,
            refusal,
            refused_before: a.refused.map(|r| r.name()),
            events_lost: a.events_lost,
            interrupted_pc: a.interrupted_pc.map(Hex),
            location: view.location.as_deref(),
            stamps: StampsView(a),
            hops: HopsView(a),
        }
    }
}

/// Counts per event kind: an object keyed by kind name.
struct KindsView<'a>(&'a PerKind);

impl Serialize for KindsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(EventKind::ALL.len()))?;
        for kind in EventKind::ALL {
            map.serialize_entry(kind_name(kind), &self.0.get(kind))?;
        }
        map.end()
    }
}

/// Any `(key, value)` sequence as an object.
struct ObjectView<I>(std::cell::Cell<Option<I>>);

impl<K: Serialize, V: Serialize, I: Iterator<Item = (K, V)>> Serialize for ObjectView<I> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0.take().into_iter().flatten() {
            map.serialize_entry(&key, &value)?;
        }
        map.end()
    }
}

fn object<K, V, I: Iterator<Item = (K, V)>>(entries: I) -> ObjectView<I> {
    ObjectView(std::cell::Cell::new(Some(entries)))
}

#[derive(Serialize)]
struct LocationRow<'a> {
    location: Option<&'a Location>,
    count: u64,
}

fn rows(rows: &[LocationCount]) -> Vec<LocationRow<'_>> {
    rows.iter()
        .map(|row| LocationRow {
            location: row.location.as_ref(),
            count: row.count,
        })
        .collect()
}

#[derive(Serialize)]
struct PreemptionsView {
    #[serde(rename = "async")]
    asynchronous: u64,
    async_reschedule: u64,
    async_park: u64,
    cooperative: u64,
    stack_check_reschedule: u64,
    stack_check_park: u64,
    voluntary_yields: Option<u64>,
}

#[derive(Serialize)]
struct GoroutineRow {
    goid: u64,
    #[serde(rename = "async")]
    asynchronous: u64,
    cooperative: u64,
    parks: u64,
    requests: u64,
    refused: u64,
    ran_mean_ns: Option<u64>,
    ran_max_ns: Option<u64>,
}

#[derive(Serialize)]
struct ProbeRow<'a> {
    link: &'a str,
    program: &'a str,
    target: &'a str,
    status: &'a str,
    attached: bool,
}

fn stats(d: &Distribution) -> Option<Stats> {
    d.stats()
}

#[derive(Serialize)]
struct ContainerRow<'a> {
    runtime: &'a str,
    id: &'a str,
}

impl ContainerRow<'_> {
    fn of(info: &crate::container::ContainerInfo) -> Option<ContainerRow<'_>> {
        info.container.as_ref().map(|c| ContainerRow {
            runtime: c.runtime,
            id: &c.id,
        })
    }
}

/// An `--interval` report: each live process's counts in the interval.
pub fn write_interval<W: Write>(out: &mut W, report: &IntervalReport) -> serde_json::Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        pid: u32,
        binary: &'a str,
        asynchronous: u64,
        cooperative: u64,
        attempts: u64,
        by_outcome: &'a std::collections::BTreeMap<&'static str, u64>,
        request_to_off_p99_ns: Option<u64>,
    }
    #[derive(Serialize)]
    struct IntervalLine<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        rel_ns: i64,
        length_ns: u64,
        processes: Vec<Row<'a>>,
    }
    serde_json::to_writer(
        out,
        &IntervalLine {
            ty: "interval",
            rel_ns: report.rel_ns,
            length_ns: report.length_ns,
            processes: report
                .processes
                .iter()
                .map(|row| Row {
                    pid: row.pid,
                    binary: &row.binary,
                    asynchronous: row.asynchronous,
                    cooperative: row.cooperative,
                    attempts: row.attempts,
                    by_outcome: &row.by_outcome,
                    request_to_off_p99_ns: row.request_to_off_p99_ns,
                })
                .collect(),
        },
    )
}

/// After every process's summary when several were traced: one row per process and the
/// kernel's counters, which are per kind, not per process.
pub fn write_total<W: Write>(out: &mut W, total: &Total) -> serde_json::Result<()> {
    #[derive(Serialize)]
    struct Row<'a> {
        pid: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        ns_pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cgroup: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<ContainerRow<'a>>,
        binary: &'a str,
        go_version: &'a str,
        end_reason: &'a str,
        events_total: u64,
        asynchronous: u64,
        cooperative: u64,
        attempts: u64,
    }
    #[derive(Serialize)]
    struct TotalLine<'a> {
        #[serde(rename = "type")]
        ty: &'static str,
        schema: u32,
        processes: Vec<Row<'a>>,
        processes_not_listed: u64,
        events: KindsView<'a>,
        events_total: u64,
        lost: KindsView<'a>,
        skipped_by_kernel: &'a std::collections::BTreeMap<String, u64>,
        lost_total: u64,
        read_errors: KindsView<'a>,
        unaccounted: u64,
        malformed: u64,
        unrouted: u64,
    }
    serde_json::to_writer(
        out,
        &TotalLine {
            ty: "total",
            schema: SCHEMA_VERSION,
            processes: total
                .processes
                .iter()
                .map(|row| Row {
                    pid: row.pid,
                    ns_pid: row.container.ns_pid,
                    cgroup: row.container.cgroup.as_deref(),
                    container: ContainerRow::of(&row.container),
                    binary: &row.binary,
                    go_version: &row.go_version,
                    end_reason: &row.end_reason,
                    events_total: row.events,
                    asynchronous: row.asynchronous,
                    cooperative: row.cooperative,
                    attempts: row.attempts,
                })
                .collect(),
            processes_not_listed: total.rows_left_out,
            events: KindsView(&total.received),
            events_total: total.received.total(),
            lost: KindsView(&total.kernel.lost),
            skipped_by_kernel: &total.kernel.skipped,
            lost_total: total.lost_total(),
            read_errors: KindsView(&total.kernel.read_errors),
            unaccounted: total.unaccounted(),
            malformed: total.malformed,
            unrouted: total.unrouted,
        },
    )
}

/// One process's last line: everything the run found in it, and how the run went.
pub fn write_summary<W: Write>(out: &mut W, s: &Summary) -> serde_json::Result<()> {
    let p = &s.preemptions;
    let run = &s.run;
    #[derive(Serialize)]
    struct SummaryLine<'a, Th, Hp, Bo, Br, Rf, Tf> {
        #[serde(rename = "type")]
        ty: &'static str,
        schema: u32,
        pid: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        ns_pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cgroup: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        container: Option<ContainerRow<'a>>,
        untranslated_ids: u64,
        counters_in_total: bool,
        binary: &'a str,
        go_version: &'a str,
        duration_ns: u64,
        end_reason: &'a str,
        events: KindsView<'a>,
        events_total: u64,
        lost: KindsView<'a>,
        skipped_by_kernel: &'a std::collections::BTreeMap<String, u64>,
        lost_total: u64,
        read_errors: KindsView<'a>,
        unaccounted: u64,
        malformed: u64,
        preemptions: PreemptionsView,
        attempts: AttemptsView<Bo, Br, Rf>,
        tgkill_failures: Tf,
        hops: Hp,
        ran_before_request: Option<Stats>,
        tick_interval: Option<Stats>,
        gc_delay: Option<Stats>,
        stw_delay: Option<Stats>,
        top_async_locations: Vec<LocationRow<'a>>,
        top_cooperative_locations: Vec<LocationRow<'a>>,
        top_refused_locations: Vec<LocationRow<'a>>,
        goroutine_count: usize,
        goroutines: Vec<GoroutineRow>,
        threads: Th,
        probes: Vec<ProbeRow<'a>>,
    }
    #[derive(Serialize)]
    struct AttemptsView<Bo, Br, Rf> {
        total: u64,
        by_outcome: Bo,
        by_requester: Br,
        refusals: Rf,
    }
    let line = SummaryLine {
        ty: "summary",
        schema: SCHEMA_VERSION,
        pid: run.pid,
        ns_pid: run.container.ns_pid,
        cgroup: run.container.cgroup.as_deref(),
        container: ContainerRow::of(&run.container),
        untranslated_ids: run.untranslated_ids,
        counters_in_total: run.shares_run,
        binary: &run.binary,
        go_version: &run.go_version,
        duration_ns: run.duration_ns,
        end_reason: &run.end_reason,
        events: KindsView(&s.received),
        events_total: s.received.total(),
        lost: KindsView(&s.kernel.lost),
        skipped_by_kernel: &s.kernel.skipped,
        lost_total: s.lost_total(),
        read_errors: KindsView(&s.kernel.read_errors),
        unaccounted: s.unaccounted(),
        malformed: s.malformed,
        preemptions: PreemptionsView {
            asynchronous: s.async_preemptions(),
            async_reschedule: p.async_reschedule,
            async_park: p.async_park,
            cooperative: p.cooperative(),
            stack_check_reschedule: p.stack_check_reschedule,
            stack_check_park: p.stack_check_park,
            voluntary_yields: s.voluntary_yields,
        },
        attempts: AttemptsView {
            total: s.attempts(),
            by_outcome: s.by_outcome(),
            by_requester: object(
                Requester::ALL
                    .iter()
                    .map(|r| (r.name(), s.by_requester(*r))),
            ),
            refusals: object(s.refusals.iter().map(|(r, n)| (r.name(), *n))),
        },
        tgkill_failures: object(
            s.tgkill_failures
                .iter()
                .map(|(errno, n)| (crate::events::errno_name(*errno), *n)),
        ),
        hops: object(
            Hop::ALL
                .iter()
                .map(|hop| (hop.key(), s.hops.get(hop).copied())),
        ),
        ran_before_request: stats(&s.ran_before_request),
        tick_interval: stats(&s.tick_intervals),
        gc_delay: stats(&s.gc_delays),
        stw_delay: stats(&s.stw_delays),
        top_async_locations: rows(&s.async_locations),
        top_cooperative_locations: rows(&s.cooperative_locations),
        top_refused_locations: rows(&s.refused_locations),
        goroutine_count: s.goroutine_count,
        goroutines: s
            .goroutines
            .iter()
            .map(|(goid, g)| GoroutineRow {
                goid: *goid,
                asynchronous: g.async_preemptions,
                cooperative: g.cooperative_preemptions,
                parks: g.parks,
                requests: g.requests,
                refused: g.refused,
                ran_mean_ns: g.ran_mean_ns(),
                ran_max_ns: (g.ran_count > 0).then_some(g.ran_max_ns),
            })
            .collect(),
        threads: object(
            s.per_thread
                .iter()
                .map(|(tid, counts)| (tid.to_string(), KindsView(counts))),
        ),
        probes: run
            .probes
            .iter()
            .map(|probe| ProbeRow {
                link: probe.link,
                program: probe.program,
                target: &probe.target,
                status: &probe.status,
                attached: probe.attached,
            })
            .collect(),
    };
    serde_json::to_writer(out, &line)
}

impl<W: Write> Output for JsonOutput<W> {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        if !self.events {
            return Ok(());
        }
        write_event(&mut self.out, view).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }

    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()> {
        if !self.events {
            return Ok(());
        }
        self.line(&AttemptLine::new(view))
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        write_summary(&mut self.out, summary).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }

    fn total(&mut self, total: &Total) -> io::Result<()> {
        write_total(&mut self.out, total).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }

    fn interval(&mut self, report: &IntervalReport) -> io::Result<()> {
        write_interval(&mut self.out, report).map_err(io::Error::from)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use serde_json::{Value, json};

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

    fn line(event: &Event, meaning: &Meaning, attempt: Option<u64>) -> Value {
        let view = EventView {
            event,
            meaning,
            attempt,
            location: location(),
            caller: location(),
            rel_ns: 0,
            multi: false,
        };
        let mut out = Vec::new();
        write_event(&mut out, &view).unwrap();
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    fn event(kind: EventKind, data: EventData) -> Event {
        Event {
            kind,
            ts_ns: 5_000_000_123,
            tid: 7,
            tgid: 5,
            cpu: 1,
            seq: 9,
            data,
        }
    }

    #[test]
    fn every_line_starts_with_the_same_header() {
        let tick = line(
            &event(EventKind::SysmonTick, EventData::SysmonTick { now_ns: -3 }),
            &Meaning::None,
            None,
        );
        assert_eq!(
            tick,
            json!({"type": "event", "kind": "sysmon_tick", "ts_ns": 5_000_000_123_u64,
                   "pid": 5, "tid": 7, "cpu": 1, "attempt": null, "now_ns": -3})
        );
    }

    #[test]
    fn requests_signals_and_kernel_events() {
        let request = line(
            &event(
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
            &Meaning::None,
            Some(12),
        );
        assert_eq!(request["attempt"], 12);
        assert_eq!(request["running_ns"], 1_000_000_123);
        assert_eq!(request["goid"], Value::Null);
        assert_eq!(request["caller"], "main.(*T).spin[...]");
        assert_eq!(request["caller_pc"], "0x4010");
        let generate = line(
            &event(
                EventKind::SignalGenerate,
                EventData::SignalGenerate {
                    target_tid: 9,
                    sig: 23,
                    code: -6,
                    group: false,
                    result: SignalResult::AlreadyPending,
                },
            ),
            &Meaning::None,
            None,
        );
        assert_eq!(generate["result"], "already_pending");
        assert_eq!(generate["group"], false);
        let deliver = line(
            &event(
                EventKind::SignalDeliver,
                EventData::SignalDeliver {
                    user_pc: 0x4a1000,
                    user_sp: 0,
                    sig: 23,
                    code: -6,
                },
            ),
            &Meaning::None,
            None,
        );
        assert_eq!(deliver["pc"], "0x4a1000");
        assert_eq!(
            deliver["location"]["file"],
            "/src/a \"quoted\"\\dir/main.go\u{1}"
        );
        assert_eq!(deliver["location"]["inlined_into"], "main.outer");
    }

    #[test]
    fn goroutine_lines_say_path_and_action() {
        let park = Meaning::Preemption(Preemption {
            ts_ns: 1,
            tid: 7,
            goid: Some(18),
            path: PreemptPath::Async,
            action: PreemptAction::Park,
            pc: None,
        });
        let data = EventData::Goroutine {
            g_addr: 1,
            goid: Some(18),
            pc: Some(0x4a1000),
            g_status: None,
            preempted: Some(true),
            preempt_flags: Some((true, false)),
        };
        let parked = line(&event(EventKind::PreemptPark, data.clone()), &park, Some(3));
        assert_eq!(
            (&parked["path"], &parked["action"], &parked["g_preempt"]),
            (&json!("async"), &json!("park"), &json!(true))
        );
        assert_eq!(parked["g_status"], Value::Null);
        let yielded = line(
            &event(EventKind::Yield, data),
            &Meaning::VoluntaryYield,
            None,
        );
        assert_eq!(yielded["kind"], "yield");
        assert_eq!(
            (&yielded["path"], &yielded["action"]),
            (&Value::Null, &json!("yield"))
        );
    }

    #[test]
    fn attempts_have_stamps_in_chain_order_and_hops() {
        let mut attempt = Attempt::new(7, Requester::Sysmon, 10);
        attempt.outcome = Outcome::Async(PreemptAction::Reschedule);
        attempt.stamps[Link::Request] = Some(100);
        attempt.stamps[Link::Off] = Some(350);
        attempt.events_lost = true;
        let view = AttemptView {
            pid: 42,
            attempt: &attempt,
            location: location(),
            rel_ns: 0,
            multi: false,
        };
        let text = serde_json::to_string(&AttemptLine::new(&view)).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "attempt");
        assert_eq!(value["pid"], 42);
        assert_eq!(value["events_lost"], true);
        assert_eq!(value["hops"]["request_to_off"], 250);
        let keys: Vec<&str> = Link::ALL.iter().map(|l| l.key()).collect();
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert!(keys.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
    }
}
