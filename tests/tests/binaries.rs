//! Every shape of Go binary users run, from every release under test: default, stripped
//! (`-s -w`: no symbol table, no DWARF), PIE and cgo with external linking. goprobe must
//! observe every link, report the goroutine ids the program itself reports, and point at
//! the program's own spin loop (function and line) as the top preemption location.

use goprobe_integration::{Traced, env, trace_command};
use serde_json::Value;

const VARIANTS: [&str; 4] = ["default", "stripped", "pie", "cgo"];

/// Event kinds every spinner run must show: the whole async chain.
const CHAIN: [&str; 9] = [
    "sysmon_tick",
    "preempt_request",
    "signal_m",
    "tgkill",
    "signal_generate",
    "signal_deliver",
    "do_sig_preempt",
    "async_preempt",
    "gosched",
];

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn check(traced: &Traced, what: &str) {
    for kind in CHAIN {
        assert!(
            traced.count(kind) > 0,
            "{what}: no {kind}: {}",
            traced.summary
        );
    }
    for probe in traced.summary["probes"].as_array().unwrap() {
        let status = probe["status"].as_str().unwrap();
        assert!(
            !status.starts_with("failed"),
            "{what}: probe {} failed: {status}",
            probe["program"]
        );
    }
    let fixture = traced.fixture();
    let workers = sorted(traced.worker_goids());
    let preempted = traced.async_preempted_in_window();
    assert_eq!(preempted, workers, "{what}: goroutine ids");
    // Top location: the fixture's own loop, by function and by a line with code in it.
    let top: &Value = &traced.summary["top_async_locations"][0]["location"];
    assert_eq!(
        top["function"], fixture["spin_function"],
        "{what}: top location {top}"
    );
    assert_eq!(
        top["file"], fixture["spin_file"],
        "{what}: top location {top}"
    );
    let line = top["line"].as_u64().unwrap();
    let code_lines: Vec<u64> = fixture["spin_code_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    assert!(
        code_lines.contains(&line),
        "{what}: line {line} not in the loop {code_lines:?}"
    );
    assert_eq!(traced.summary["lost_total"], 0, "{what}");
    assert_eq!(traced.summary["read_errors"]["async_preempt"], 0, "{what}");
}

#[test]
fn every_variant_of_every_release() {
    let env = env();
    for release in &env.releases {
        for variant in VARIANTS {
            let what = format!("{release} {variant}");
            let fixture = env.fixture(release, variant, "spinner");
            let traced = trace_command(
                &env,
                &[],
                &fixture,
                &["-workers", "3", "-procs", "1", "-duration", "1500ms"],
                &[],
            );
            check(&traced, &what);
            let source = traced.stderr.lines().find(|l| l.contains("attached"));
            eprintln!("{what}: ok; {}", source.unwrap_or(""));
        }
    }
}
