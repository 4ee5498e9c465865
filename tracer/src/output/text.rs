//! Human-readable output: a live line per preemption attempt (or per event with
//! `--raw`), and a summary in tables and log2 histograms.

use std::io::{self, Write};

use tracer_common::EventKind;

use super::{AttemptView, EventView, Output};
use crate::{
    correlate::{Attempt, Hop, Meaning, Outcome, Requester},
    events::{EventData, KernelCounters, PerKind, kind_name},
    histogram::{Distribution, Stats, human_ns},
    summary::{IntervalReport, LocationCount, Summary, Total},
};

/// What goes out line by line while tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    /// One line per finished preemption attempt.
    Attempts,
    /// One line per kernel event.
    Events,
    /// Nothing: summary only.
    Quiet,
}

pub struct TextOutput<W: Write> {
    out: W,
    live: Live,
}

impl<W: Write> TextOutput<W> {
    pub fn new(out: W, live: Live) -> Self {
        TextOutput { out, live }
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
        EventData::ProcessExec => "exec".into(),
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
        EventData::TgkillFailed {
            target_tid, errno, ..
        } => format!(
            "SIGURG → tid {target_tid} failed: {}",
            crate::events::errno_name(*errno)
        ),
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

/// "async reschedule", "refused (unsafe point)", ...
pub fn outcome_text(attempt: &Attempt) -> String {
    let after_refusal = if attempt.refused.is_some() {
        " after refused signal"
    } else {
        ""
    };
    match attempt.outcome {
        Outcome::Async(action) => format!("async {}", action.name()),
        Outcome::Cooperative(action) => format!("cooperative {}{after_refusal}", action.name()),
        Outcome::Refused(refusal) => format!("refused ({})", refusal.name().replace('_', " ")),
        other => other.name().replace('_', " "),
    }
}

/// Short label of the link a hop arrives at, for the live line.
fn hop_label(hop: Hop) -> &'static str {
    if hop == Hop::REQUEST_TO_OFF {
        "total"
    } else {
        hop.to.name()
    }
}

/// One line for a finished attempt: who, what happened, where, and each hop's latency.
pub fn attempt_line(view: &AttemptView<'_>) -> String {
    let a = view.attempt;
    let mut g = goroutine(a.goid);
    if a.preempted_goid.is_some() && a.preempted_goid != a.goid {
        g = format!("{g}→{}", goroutine(a.preempted_goid));
    }
    let mut line = format!(
        "{:>11.6} {g:<10} {:<34} {:<14} P{} tid {}",
        view.rel_ns as f64 / 1e9,
        outcome_text(a),
        a.requester.name(),
        opt(a.p_id),
        opt(a.target_tid),
    );
    if let Some(ran) = a.ran_ns {
        line += &format!(" ran ≥{}", human_ns(ran));
    }
    if a.retries > 0 {
        line += &format!(" asked {}×", a.retries + 1);
    }
    if let Some(loc) = &view.location {
        line += &format!(" at {loc}");
    }
    let hops: Vec<String> = a
        .hops()
        .filter(|(hop, _)| *hop != Hop::REQUEST_TO_OFF)
        .map(|(hop, ns)| format!("{} +{}", hop_label(hop), human_ns(ns)))
        .collect();
    if !hops.is_empty() {
        line += &format!(" | {}", hops.join(" → "));
    }
    if let Some(total) = a.hop(Hop::REQUEST_TO_OFF) {
        line += &format!(" (total {})", human_ns(total));
    }
    line
}

fn stats_row(label: &str, stats: &Stats) -> String {
    format!(
        "  {label:<24} {:>8} {:>10} {:>10} {:>10} {:>10}",
        stats.count,
        human_ns(stats.p50),
        human_ns(stats.p90),
        human_ns(stats.p99),
        human_ns(stats.max)
    )
}

fn location_rows(out: &mut dyn Write, rows: &[LocationCount]) -> io::Result<()> {
    for row in rows {
        let text = row.location.as_ref().map_or_else(
            || "(unknown: outside Go code?)".to_string(),
            ToString::to_string,
        );
        writeln!(out, "  {:>8}  {text}", row.count)?;
    }
    Ok(())
}

fn histogram(out: &mut dyn Write, title: &str, d: &Distribution) -> io::Result<()> {
    if let Some(stats) = d.stats() {
        writeln!(
            out,
            "{title}: {} samples, p50 {} p90 {} p99 {} max {}",
            stats.count,
            human_ns(stats.p50),
            human_ns(stats.p90),
            human_ns(stats.p99),
            human_ns(stats.max)
        )?;
        write!(out, "{}", d.render(1_000, "µs"))?;
        writeln!(out)?;
    }
    Ok(())
}

/// Events received, lost and unreadable by kind, with warnings for losses.
fn write_event_counts(
    out: &mut dyn Write,
    received: &PerKind,
    kernel: &KernelCounters,
    unaccounted: u64,
    malformed: u64,
) -> io::Result<()> {
    writeln!(
        out,
        "{:<18} {:>10} {:>8} {:>8}",
        "events", "received", "lost", "bad-read"
    )?;
    for kind in EventKind::ALL {
        let got = received.get(kind);
        let lost = kernel.lost.get(kind);
        let bad = kernel.read_errors.get(kind);
        if got + lost + bad > 0 {
            writeln!(
                out,
                "  {:<16} {got:>10} {lost:>8} {bad:>8}",
                kind_name(kind)
            )?;
        }
    }
    let lost = kernel.lost.total();
    writeln!(
        out,
        "  {:<16} {:>10} {:>8}",
        "total",
        received.total(),
        lost
    )?;
    if lost > 0 {
        writeln!(
            out,
            "  WARNING: {lost} events lost (ring buffer full); retry with a larger --ringbuf-kib",
        )?;
    }
    for (program, skipped) in kernel.skipped.iter().filter(|(_, n)| **n > 0) {
        writeln!(
            out,
            "  WARNING: the kernel skipped {skipped} runs of {program} (a BPF program was \
             already running on that CPU), never recorded: {}",
            super::what_a_skip_hides(program)
        )?;
    }
    if unaccounted > 0 || malformed > 0 {
        writeln!(
            out,
            "  WARNING: {unaccounted} records submitted but not received, {malformed} malformed",
        )?;
    }
    Ok(())
}

/// An `--interval` report: one line per live process, its counts in the interval.
fn write_interval(out: &mut dyn Write, report: &IntervalReport) -> io::Result<()> {
    writeln!(
        out,
        "{:>11.3} interval {:.1} s {:>8} {:>7} {:>6} {:>9} {:>9}  {:<12} binary",
        report.rel_ns as f64 / 1e9,
        report.length_ns as f64 / 1e9,
        "pid",
        "async",
        "coop",
        "attempts",
        "p99 so far",
        "outcomes"
    )?;
    for row in &report.processes {
        let outcomes: Vec<String> = row
            .by_outcome
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        writeln!(
            out,
            "{:>26} {:>8} {:>7} {:>6} {:>9} {:>9}  {:<12} {}",
            "",
            row.pid,
            row.asynchronous,
            row.cooperative,
            row.attempts,
            row.request_to_off_p99_ns
                .map_or_else(|| "-".into(), human_ns),
            if outcomes.is_empty() {
                "-".to_string()
            } else {
                outcomes.join(", ")
            },
            row.binary
        )?;
    }
    Ok(())
}

/// The whole run of several processes: one row each, and the kernel's counters.
fn write_total(out: &mut dyn Write, total: &Total) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "goprobe total: {} processes{}",
        total.processes.len() as u64 + total.rows_left_out,
        if total.rows_left_out > 0 {
            format!(" (the first {} listed)", total.processes.len())
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "  {:<8} {:<10} {:>8} {:>8} {:>9} {:>9}  binary; where; ended by",
        "pid", "go", "async", "coop", "attempts", "events"
    )?;
    for row in &total.processes {
        let place = if row.container.is_host() {
            String::new()
        } else {
            format!("; {}", row.container.describe())
        };
        writeln!(
            out,
            "  {:<8} {:<10} {:>8} {:>8} {:>9} {:>9}  {}{place}; {}",
            row.pid,
            row.go_version,
            row.asynchronous,
            row.cooperative,
            row.attempts,
            row.events,
            row.binary,
            row.end_reason
        )?;
    }
    writeln!(out)?;
    write_event_counts(
        out,
        &total.received,
        &total.kernel,
        total.unaccounted(),
        total.malformed,
    )?;
    if total.unrouted > 0 {
        writeln!(
            out,
            "  {} records of processes no longer traced (exited or exec'd) were dropped",
            total.unrouted
        )?;
    }
    Ok(())
}

fn write_summary(out: &mut dyn Write, s: &Summary) -> io::Result<()> {
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
    if !run.container.is_host() {
        writeln!(out, "  {}", run.container.describe())?;
    }
    if run.untranslated_ids > 0 {
        writeln!(
            out,
            "  warning: {} thread ids of its pid namespace had no host id (their threads \
             had exited): those records may be paired wrongly",
            run.untranslated_ids
        )?;
    }
    writeln!(out)?;
    let p = &s.preemptions;
    writeln!(out, "preemptions")?;
    writeln!(
        out,
        "  asynchronous (asyncPreempt2)     {:>9}   rescheduled {} / parked {}",
        s.async_preemptions(),
        p.async_reschedule,
        p.async_park
    )?;
    writeln!(
        out,
        "  cooperative (stack check)        {:>9}   rescheduled {} / parked {}",
        p.cooperative(),
        p.stack_check_reschedule,
        p.stack_check_park
    )?;
    match s.voluntary_yields {
        Some(yields) => writeln!(out, "  voluntary yields (Gosched)       {yields:>9}")?,
        None => writeln!(
            out,
            "  voluntary yields (Gosched)     not counted (--yields)"
        )?,
    }
    writeln!(out)?;

    writeln!(
        out,
        "preemption attempts by requester and outcome ({} in all)",
        s.attempts()
    )?;
    let outcomes = [
        "async",
        "cooperative",
        "refused",
        "no_signal",
        "coalesced",
        "signal_lost",
        "signal_failed",
        "expired",
        "unfinished",
        "no_target",
    ];
    write!(out, "  {:<15}", "")?;
    for name in outcomes {
        write!(out, " {name:>11}")?;
    }
    writeln!(out)?;
    for requester in Requester::ALL {
        let row = s.by_requester(requester);
        if row.is_empty() {
            continue;
        }
        write!(out, "  {:<15}", requester.name())?;
        for name in outcomes {
            write!(out, " {:>11}", row.get(name).copied().unwrap_or(0))?;
        }
        writeln!(out)?;
    }
    if !s.refusals.is_empty() {
        let reasons: Vec<String> = s
            .refusals
            .iter()
            .map(|(r, n)| format!("{} {n}", r.name().replace('_', " ")))
            .collect();
        writeln!(out, "  refused: {}", reasons.join(", "))?;
    }
    if !s.tgkill_failures.is_empty() {
        writeln!(
            out,
            "  tgkill(SIGURG) failed: {} (no signal was sent)",
            s.tgkill_failure_counts()
        )?;
    }
    writeln!(out)?;

    if !s.hops.is_empty() {
        writeln!(
            out,
            "latency per hop            {:>8} {:>10} {:>10} {:>10} {:>10}",
            "count", "p50", "p90", "p99", "max"
        )?;
        for (hop, stats) in &s.hops {
            writeln!(out, "{}", stats_row(&hop.name(), stats))?;
        }
        writeln!(out)?;
    }
    histogram(
        out,
        "request → off CPU (preemption latency)",
        s.hop(Hop::REQUEST_TO_OFF),
    )?;
    histogram(
        out,
        "tgkill → delivery (the kernel's part)",
        s.hop(Hop::TGKILL_TO_DELIVER),
    )?;
    histogram(
        out,
        "time running when sysmon asked (≥, from sysmontick)",
        &s.ran_before_request,
    )?;
    histogram(out, "sysmon tick interval", &s.tick_intervals)?;
    histogram(
        out,
        "GC-requested preemption delay (suspendG → off)",
        &s.gc_delays,
    )?;
    histogram(
        out,
        "stop-the-world preemption delay (preemptall → off)",
        &s.stw_delays,
    )?;

    if !s.async_locations.is_empty() {
        writeln!(out, "top locations of asynchronous preemption")?;
        location_rows(out, &s.async_locations)?;
        writeln!(out)?;
    }
    if !s.cooperative_locations.is_empty() {
        writeln!(
            out,
            "top locations of cooperative preemption (the prologue whose stack check failed)"
        )?;
        location_rows(out, &s.cooperative_locations)?;
        writeln!(out)?;
    }
    if !s.refused_locations.is_empty() {
        writeln!(out, "top locations where a SIGURG was refused")?;
        location_rows(out, &s.refused_locations)?;
        writeln!(out)?;
    }
    if !s.goroutines.is_empty() {
        writeln!(
            out,
            "goroutines (top {} of {})      {:>8} {:>8} {:>6} {:>9} {:>8} {:>10} {:>10}",
            s.goroutines.len(),
            s.goroutine_count,
            "async",
            "coop",
            "parks",
            "requests",
            "refused",
            "mean ran",
            "max ran"
        )?;
        for (goid, g) in &s.goroutines {
            writeln!(
                out,
                "  g{goid:<26} {:>8} {:>8} {:>6} {:>9} {:>8} {:>10} {:>10}",
                g.async_preemptions,
                g.cooperative_preemptions,
                g.parks,
                g.requests,
                g.refused,
                g.ran_mean_ns().map_or_else(|| "-".into(), human_ns),
                if g.ran_count > 0 {
                    human_ns(g.ran_max_ns)
                } else {
                    "-".into()
                }
            )?;
        }
        writeln!(out)?;
    }

    if run.shares_run {
        // The kernel counts losses per kind, not per process: they are in the total.
        writeln!(out, "{:<18} {:>10}", "events", "received")?;
        for kind in EventKind::ALL {
            let received = s.received.get(kind);
            if received > 0 {
                writeln!(out, "  {:<16} {received:>10}", kind_name(kind))?;
            }
        }
        writeln!(
            out,
            "  {:<16} {:>10}   (lost: in the total below)",
            "total",
            s.received.total()
        )?;
    } else {
        write_event_counts(out, &s.received, &s.kernel, s.unaccounted(), s.malformed)?;
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

impl<W: Write> Output for TextOutput<W> {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()> {
        if self.live != Live::Events {
            return Ok(());
        }
        if view.multi {
            write!(self.out, "pid {:<7} ", view.event.tgid)?;
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

    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()> {
        if self.live != Live::Attempts || view.attempt.outcome == Outcome::NoTarget {
            return Ok(());
        }
        if view.multi {
            write!(self.out, "pid {:<7} ", view.pid)?;
        }
        writeln!(self.out, "{}", attempt_line(view))
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        write_summary(&mut self.out, summary)
    }

    fn total(&mut self, total: &Total) -> io::Result<()> {
        write_total(&mut self.out, total)
    }

    fn interval(&mut self, report: &IntervalReport) -> io::Result<()> {
        write_interval(&mut self.out, report)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        chain::Link,
        correlate::{PreemptAction, Refusal},
    };

    fn attempt(outcome: Outcome) -> Attempt {
        let mut a = Attempt::new(1, Requester::Sysmon, 10);
        a.target_tid = Some(21);
        a.goid = Some(18);
        a.preempted_goid = Some(18);
        a.p_id = Some(0);
        a.m_id = Some(4);
        a.ran_ns = Some(10_100_000);
        let stamps = [1, 13, 33, 48, 49, 108, 119, 155, 162];
        for (link, us) in Link::ALL.into_iter().zip(stamps) {
            a.stamps[link] = Some(us * 1_000);
        }
        a.interrupted_pc = Some(0x4a1000);
        a.handler_g_status = Some(2);
        a.outcome = outcome;
        a
    }

    #[test]
    fn live_line_for_an_async_attempt() {
        let a = attempt(Outcome::Async(PreemptAction::Reschedule));
        let location = Some(std::rc::Rc::new(crate::symbolize::Location {
            function: "main.spin".into(),
            file: "/src/fixtures/spinner/main.go".into(),
            line: 29,
            inlined_into: None,
        }));
        let line = attempt_line(&AttemptView {
            pid: 1,
            attempt: &a,
            location,
            rel_ns: 224_477_000,
            multi: false,
        });
        assert_eq!(
            line,
            "   0.224477 g18        async reschedule                   sysmon         P0 tid 21 \
             ran ≥10.10ms at main.spin (main.go:29) | request +12.0µs → signalM +20.0µs → \
             tgkill +15.0µs → deliver +60.0µs → handler +11.0µs → asyncPreempt2 +36.0µs → \
             off +7.0µs (total 149.0µs)"
        );
    }

    #[test]
    fn outcome_texts() {
        let mut a = attempt(Outcome::Cooperative(PreemptAction::Park));
        assert_eq!(outcome_text(&a), "cooperative park");
        a.refused = Some(Refusal::UnsafePoint);
        assert_eq!(outcome_text(&a), "cooperative park after refused signal");
        a.outcome = Outcome::Refused(Refusal::TargetMoved);
        assert_eq!(outcome_text(&a), "refused (target moved)");
        a.outcome = Outcome::NoSignal;
        assert_eq!(outcome_text(&a), "no signal");
    }
}
