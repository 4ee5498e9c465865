//! What tracing costs a CPU-bound program, and what goprobe itself uses meanwhile.

use super::{
    Context, Row,
    runner::{self, Run, Tracer},
    table::{Goal, Unit, si},
};

/// `hashwork`: 2 goroutines on one P, pinned to one CPU and the tracer to another, so
/// that the program's ops per CPU-second change only by what runs on its own threads
/// (probe hits); sysmon preempts every 10-20 ms, the GC runs ~16 times a second.
/// Unpinned, with the tracer competing for the same two CPUs, the same ratio spread
/// 0.84-1.11 over 5 repetitions here.
const HASHWORK: [&str; 10] = [
    "-goroutines",
    "2",
    "-procs",
    "1",
    "-duration",
    "3s",
    "-size",
    "4096",
    "-live-mb",
    "64",
];

/// What a bpftrace user would write for goprobe's hooks: the same runtime functions at
/// their entries, tgkill by its syscall event, the two signal tracepoints.
const BPFTRACE_PROBES: &str = "\
uprobe:$BIN:runtime.retake, uprobe:$BIN:runtime.preemptone, uprobe:$BIN:runtime.signalM, \
uprobe:$BIN:runtime.suspendG, uprobe:$BIN:runtime.doSigPreempt, \
uprobe:$BIN:runtime.asyncPreempt2, uprobe:$BIN:runtime.goschedImpl, \
uprobe:$BIN:runtime.preemptPark /pid == $PID/ { UPROBE }
tracepoint:signal:signal_generate, tracepoint:signal:signal_deliver, \
tracepoint:syscalls:sys_enter_tgkill /pid == $PID && args->sig == 23/ { TRACEPOINT }
";

/// The bpftrace peer script: counting in maps (like `-q`) or printing each event (like
/// `--json`).
pub fn bpftrace_script(print_each: bool) -> String {
    let (uprobe, tracepoint) = if print_each {
        (
            r#"printf("%s %d %llu %llx\n", probe, tid, nsecs, reg("ax"));"#,
            r#"printf("%s %d %llu %d\n", probe, tid, nsecs, args->sig);"#,
        )
    } else {
        ("@[probe] = count();", "@[probe] = count();")
    };
    format!(
        "BEGIN {{ system(\"touch $READY\"); }}\n{}",
        BPFTRACE_PROBES
            .replace("UPROBE", uprobe)
            .replace("TRACEPOINT", tracepoint)
    )
}

pub fn rows(cx: &Context) -> anyhow::Result<Vec<Row>> {
    let fixture = cx.fixture("hashwork");
    let mut tracers = vec![
        Tracer::None,
        Tracer::goprobe(&[], false),
        Tracer::goprobe(&[], true),
    ];
    if let Some(bpftrace) = &cx.bpftrace {
        for print_each in [false, true] {
            tracers.push(Tracer::Bpftrace {
                bpftrace: bpftrace.clone(),
                script: bpftrace_script(print_each),
            });
        }
    }
    eprintln!(
        "xtask: bench throughput: hashwork, {} variants",
        tracers.len()
    );
    let runs = runner::interleaved(cx.args.reps, tracers.len(), |variant| {
        runner::run_pinned(
            &cx.goprobe,
            &fixture,
            &HASHWORK,
            &tracers[variant],
            runner::Pinning::apart(),
        )
    })?;
    let per_cpu = |run: &Run| run.field("ops_per_cpu_sec").unwrap_or(f64::NAN);
    let bare: Vec<f64> = runs[0].iter().map(per_cpu).collect();
    let ratios = |variant: usize| -> Vec<f64> {
        runs[variant]
            .iter()
            .zip(&bare)
            .map(|(run, bare)| per_cpu(run) / bare)
            .collect()
    };
    let median = |values: Vec<f64>| super::Stat::of(&values).map_or(f64::NAN, |s| s.median);
    let bare_text = format!("untraced {} ops/CPU-s", si(median(bare.clone())));
    let measured = |variant: usize| -> String {
        let ops = median(runs[variant].iter().map(per_cpu).collect());
        let lost: u64 = runs[variant]
            .iter()
            .filter_map(|r| r.tracer.as_ref())
            .map(|t| t.lost())
            .sum();
        let events = median(
            runs[variant]
                .iter()
                .filter_map(|r| {
                    Some(r.tracer.as_ref()?.events_total() as f64 / r.window().as_secs_f64())
                })
                .collect(),
        );
        let written = median(
            runs[variant]
                .iter()
                .filter_map(|r| Some(r.tracer.as_ref()?.output_bytes as f64 / 1e6))
                .collect(),
        );
        match variant {
            1 => format!("{} ops/CPU-s, {} rec/s, lost {lost}", si(ops), si(events)),
            2 => format!(
                "{} ops/CPU-s, {} rec/s, lost {lost}, {written:.1} MB written",
                si(ops),
                si(events)
            ),
            4 => format!("{} ops/CPU-s, {written:.1} MB written", si(ops)),
            _ => format!("{} ops/CPU-s", si(ops)),
        }
    };
    let mut rows = vec![
        Row::new(
            "throughput, -q (hashwork ops per CPU-second)",
            Unit::Ratio,
            &ratios(1),
        )
        .baseline(bare_text.clone())
        .measured(measured(1))
        .goal(Goal::AtLeast(0.998)),
        Row::new(
            "throughput, every record as JSON to a file",
            Unit::Ratio,
            &ratios(2),
        )
        .baseline(bare_text.clone())
        .measured(measured(2))
        .goal(Goal::AtLeast(0.995)),
    ];
    if cx.bpftrace.is_some() {
        rows.push(
            Row::new(
                "peer: bpftrace, same hooks, counting",
                Unit::Ratio,
                &ratios(3),
            )
            .baseline(bare_text.clone())
            .measured(measured(3)),
        );
        rows.push(
            Row::new(
                "peer: bpftrace, same hooks, printf each",
                Unit::Ratio,
                &ratios(4),
            )
            .baseline(bare_text)
            .measured(measured(4)),
        );
    }
    // The same cost accounted instead of timed (this host's run-to-run noise is a few
    // percent): each record is one probe hit on the program's own CPU, at the cost per
    // hit measured by `hits`.
    if let Some(per_hit_ns) = cx.per_hit_ns.get() {
        let accounted: Vec<f64> = runs[1]
            .iter()
            .filter_map(|run| {
                let tracer = run.tracer.as_ref()?;
                let cpu_s = run.field("cpu_ns").ok()? / 1e9;
                Some(1.0 - tracer.events_total() as f64 * per_hit_ns / 1e9 / cpu_s)
            })
            .collect();
        rows.insert(
            1,
            Row::new(
                "throughput, -q, accounted (records × cost/hit)",
                Unit::Ratio,
                &accounted,
            )
            .baseline(format!("{per_hit_ns:.0} ns per hit (hits)"))
            .measured(measured(1))
            .goal(Goal::AtLeast(0.998)),
        );
    }
    let tracer_rows = |variant: usize, what: &str| -> Vec<Row> {
        let tracer_runs: Vec<&runner::TracerRun> = runs[variant]
            .iter()
            .filter_map(|r| r.tracer.as_ref())
            .collect();
        let cpu: Vec<f64> = tracer_runs.iter().map(|t| t.cpu_percent()).collect();
        let steady: Vec<f64> = tracer_runs
            .iter()
            .filter_map(|t| t.rss_mid_kib.map(|(rss, _)| rss as f64 / 1024.0))
            .collect();
        let anon = median(
            tracer_runs
                .iter()
                .filter_map(|t| t.rss_mid_kib.map(|(_, anon)| anon as f64 / 1024.0))
                .collect(),
        );
        let peak = median(
            tracer_runs
                .iter()
                .map(|t| t.usage.max_rss_kib as f64 / 1024.0)
                .collect(),
        );
        let mut cpu_row = Row::new(format!("{what}: CPU, % of one CPU"), Unit::Percent, &cpu)
            .baseline("attached → workload end");
        let mut rss_row = Row::new(format!("{what}: RSS, steady"), Unit::MiB, &steady)
            .baseline("mid-window VmRSS")
            .measured(format!("RssAnon {anon:.1} MiB, peak {peak:.1} MiB"));
        if what.starts_with("goprobe") {
            rss_row = rss_row.goal(Goal::AtMost(20.0));
            cpu_row = cpu_row.measured(measured(variant));
        }
        vec![cpu_row, rss_row]
    };
    rows.extend(tracer_rows(1, "goprobe -q"));
    rows.extend(tracer_rows(2, "goprobe JSON"));
    if cx.bpftrace.is_some() {
        rows.extend(tracer_rows(3, "peer: bpftrace counting"));
    }
    Ok(rows)
}
