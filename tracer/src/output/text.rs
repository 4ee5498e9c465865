//! Human-readable output: one line per event, a summary in tables.

use std::io::{self, Write};

use tracer_common::EventKind;

use super::{EventView, Output};
use crate::{
    correlate::Meaning,
    events::{EventData, kind_name},
    summary::Summary,
};

pub struct TextOutput<W: Write> {
    out: W,
    events: bool,
}

impl<W: Write> TextOutput<W> {
    /// `events`: print a line per event (false with `--quiet`).
    pub fn new(out: W, events: bool) -> Self {
        TextOutput { out, events }
    }
}

fn goroutine(goid: Option<u64>) -> String {
    goid.map_or_else(|| "g?".into(), |goid| format!("g{goid}"))
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "?".into(), |v| v.to_string())
}

/// The fields that matter for one event, after its kind.
pub fn describe(view: &EventView<'_>) -> String {
    let at = |what: &str| {
        view.location
            .as_ref()
            .map(|loc| format!(" {what} {loc}"))
            .unwrap_or_default()
    };
    let from = view
        .caller
        .as_ref()
        .map(|loc| format!(" from {}", loc.function))
        .unwrap_or_default();
    match &view.event.data {
        EventData::SysmonTick { now_ns } => format!("now={now_ns}"),
        EventData::PreemptRequest {
            m_tid,
            goid,
            p_id,
            schedtick,
            schedwhen_ns,
            ..
        } => {
            let ran = schedwhen_ns
                .map(|when| {
                    let ran_ns = view.event.ts_ns as i64 - when;
                    format!(" running ≥{:.1}ms", ran_ns as f64 / 1e6)
                })
                .unwrap_or_default();
            format!(
                "P{} {} on tid {} schedtick {schedtick}{ran}{from}",
                opt(*p_id),
                goroutine(*goid),
                opt(*m_tid)
            )
        }
        EventData::SignalM {
            m_tid,
            m_id,
            goid,
            p_id,
            ..
        } => format!(
            "M{} (tid {}) {} P{}{from}",
            opt(*m_id),
            opt(*m_tid),
            goroutine(*goid),
            opt(*p_id)
        ),
        EventData::Tgkill { target_tid, .. } => format!("SIGURG → tid {target_tid}"),
        EventData::SignalGenerate {
            target_tid, result, ..
        } => format!("SIGURG → tid {target_tid} {}", result.name()),
        EventData::SignalDeliver { .. } => format!("SIGURG{}", at("at")),
        EventData::Goroutine { goid, .. } => {
            let g = goroutine(*goid);
            match view.meaning {
                Meaning::Preemption(p) => {
                    format!("{g} {} ({}){}", p.action.name(), p.path.name(), at("at"))
                }
                Meaning::VoluntaryYield => format!("{g} yield (runtime.Gosched)"),
                Meaning::None => format!("{g}{}", at("at")),
            }
        }
    }
}

impl<W: Write> Output for TextOutput<W> {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        if !self.events {
            return Ok(());
        }
        writeln!(
            self.out,
            "{:>11.6} tid {:<7} {:<16} {}",
            view.rel_ns as f64 / 1e9,
            view.event.tid,
            kind_name(view.event.kind),
            describe(view)
        )
    }

    fn summary(&mut self, s: &Summary) -> io::Result<()> {
        let out = &mut self.out;
        let run = &s.run;
        writeln!(out)?;
        writeln!(
            out,
            "goprobe summary: pid {} ({}, {}) traced {:.3} s, ended by {}",
            run.pid,
            run.binary,
            run.go_version,
            run.duration_ns as f64 / 1e9,
            run.end_reason
        )?;
        writeln!(out)?;
        let p = &s.preemptions;
        writeln!(out, "preemptions")?;
        writeln!(
            out,
            "  asynchronous (asyncPreempt2)     {:>9}",
            s.async_preemptions()
        )?;
        writeln!(
            out,
            "    rescheduled / parked           {:>9} / {}",
            p.async_reschedule, p.async_park
        )?;
        writeln!(
            out,
            "  cooperative (stack check)        {:>9}",
            p.cooperative()
        )?;
        writeln!(
            out,
            "    rescheduled / parked           {:>9} / {}",
            p.stack_check_reschedule, p.stack_check_park
        )?;
        writeln!(
            out,
            "  voluntary yields (Gosched)       {:>9}",
            s.voluntary_yields
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<18} {:>10} {:>8} {:>8}",
            "events", "received", "lost", "bad-read"
        )?;
        for kind in EventKind::ALL {
            let received = s.received.get(kind);
            let lost = s.kernel.lost.get(kind);
            let bad = s.kernel.read_errors.get(kind);
            if received + lost + bad > 0 {
                writeln!(
                    out,
                    "  {:<16} {received:>10} {lost:>8} {bad:>8}",
                    kind_name(kind)
                )?;
            }
        }
        writeln!(
            out,
            "  {:<16} {:>10} {:>8}",
            "total",
            s.received.total(),
            s.lost_total()
        )?;
        if s.lost_total() > 0 {
            writeln!(
                out,
                "  WARNING: {} events lost (ring buffer full); retry with a larger --ringbuf-kib",
                s.lost_total()
            )?;
        }
        if s.unaccounted() > 0 || s.malformed > 0 {
            writeln!(
                out,
                "  WARNING: {} records submitted but not received, {} malformed",
                s.unaccounted(),
                s.malformed
            )?;
        }
        writeln!(out)?;
        writeln!(out, "threads")?;
        let shown = [
            EventKind::SysmonTick,
            EventKind::SignalM,
            EventKind::Tgkill,
            EventKind::SignalDeliver,
            EventKind::DoSigPreempt,
            EventKind::AsyncPreempt2,
            EventKind::GoschedImpl,
            EventKind::PreemptPark,
        ];
        write!(out, "  {:<8}", "tid")?;
        for kind in shown {
            write!(out, " {:>15}", kind_name(kind))?;
        }
        writeln!(out)?;
        for (tid, counts) in &s.per_thread {
            write!(out, "  {tid:<8}")?;
            for kind in shown {
                write!(out, " {:>15}", counts.get(kind))?;
            }
            writeln!(out)?;
        }
        writeln!(out)?;
        writeln!(out, "probes")?;
        for probe in &run.probes {
            writeln!(
                out,
                "  {:<19} {:<22} {:<28} {}",
                probe.link, probe.program, probe.target, probe.status
            )?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
