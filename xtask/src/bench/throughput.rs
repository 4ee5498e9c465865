//! What tracing costs a CPU-bound program, and what goprobe itself uses meanwhile.

use super::{
    Context, Row,
    runner::{self, Run, Tracer},
    table::{Goal, Unit, si},
};

/// `hashwork`: 4 goroutines on 2 Ps, GC on: sysmon preempts every 10-20 ms, the GC
/// scans stacks every few ms.
const HASHWORK: [&str; 8] = [
    "-goroutines",
    "4",
    "-procs",
    "2",
    "-duration",
    "3s",
    "-size",
    "4096",
];

/// What a bpftrace user would write for goprobe's hooks: the same runtime functions at
/// their entries, tgkill by its syscall event, the two signal tracepoints.
const BPFTRACE_PROBES: &str = "\
uprobe:$BIN:runtime.retake, uprobe:$BIN:runtime.preemptone, uprobe:$BIN:runtime.signalM, \
uprobe:$BIN:runtime.suspendG, uprobe:$BIN:runtime.doSigPreempt, \
uprobe:$BIN:runtime.asyncPreempt2, uprobe:$BIN:runtime.goschedImpl, \
uprobe:$BIN:runtime.preemptPark /pid == $PID/ { ACTION }
tracepoint:signal:signal_generate, tracepoint:signal:signal_deliver, \
tracepoint:syscalls:sys_enter_tgkill /pid == $PID && args->sig == 23/ { ACTION }
";

/// The bpftrace peer script: counting in maps (like `-q`) or printing each event (like
/// `--json`).
pub fn bpftrace_script(print_each: bool) -> String {
    let action = if print_each {
        r#"printf("%s %d %llu %llx\n", probe, tid, nsecs, reg("ax"));"#
    } else {
        "@[probe] = count();"
    };
    format!(
        "BEGIN {{ printf(\"ready\\n\"); }}\n{}",
        BPFTRACE_PROBES.replace("ACTION", action)
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
        runner::run(&cx.goprobe, &fixture, &HASHWORK, &tracers[variant])
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
            .baseline("hashwork, 2 CPUs busy");
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
