//! goprobe against Go's own execution tracer: within the window the fixture traced with
//! `runtime/trace`, goprobe's async, cooperative and park counts must equal the tracer's
//! exactly (the window's edges moved to where neither side has an event within the trace
//! clock's accuracy). The trace is decoded by `tests/tracecount` (Go's `go tool trace -d=parsed`),
//! which knows nothing of goprobe.

use std::{path::PathBuf, process::Command};

use goprobe_integration::{Env, Traced, env, temp_path, trace_command};
use serde_json::Value;

/// Preemptions by path and action.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    async_reschedule: u64,
    async_park: u64,
    stack_check_reschedule: u64,
    stack_check_park: u64,
}

/// `[start, end]` with each edge moved inward, past any of the sorted `times` within
/// `margin` of it, so that no counted event lies near an edge.
fn quiet_window(times: &[u64], start: u64, end: u64, margin: u64) -> (u64, u64) {
    let near = |t: u64| times.iter().copied().find(|x| x.abs_diff(t) <= margin);
    let mut s = start;
    while let Some(x) = near(s) {
        s = x + margin + 1;
    }
    let mut e = end;
    while let Some(x) = near(e) {
        e = x.saturating_sub(margin + 1);
    }
    assert!(
        s < e,
        "no quiet window edges within [{start}, {end}] (margin {margin} ns)"
    );
    (s, e)
}

fn tool(var: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the integration tests with `cargo xtask test`")
    }));
    assert!(path.is_file(), "{} does not exist", path.display());
    path
}

/// Runs `fixture -trace FILE args` under goprobe and returns (goprobe's, the tracer's)
/// counts within the fixture's traced window, and whether the tracer knows park paths.
fn both_counts(
    env: &Env,
    release: &str,
    fixture: &str,
    args: &[&str],
    fixture_env: &[(&str, &str)],
) -> (Counts, Counts) {
    let (ours, theirs, traced) = both_counts_traced(env, release, fixture, &[], args, fixture_env);
    assert_eq!(traced.summary["lost_total"], 0, "{release} {fixture}");
    (ours, theirs)
}

/// [`both_counts`] with goprobe arguments, and goprobe's whole run for further checks.
fn both_counts_traced(
    env: &Env,
    release: &str,
    fixture: &str,
    goprobe_args: &[&str],
    args: &[&str],
    fixture_env: &[(&str, &str)],
) -> (Counts, Counts, Traced) {
    let trace = temp_path("runtime.trace");
    let trace_arg = trace.to_str().unwrap().to_string();
    let mut fixture_args: Vec<&str> = args.to_vec();
    fixture_args.extend(["-trace", &trace_arg]);
    let traced = trace_command(
        env,
        goprobe_args,
        &env.fixture(release, "default", fixture),
        &fixture_args,
        fixture_env,
    );
    let result = traced.fixture();
    let start_ns = result["start_ns"].as_u64().expect("start_ns");
    let end_ns = result["end_ns"].as_u64().expect("end_ns");
    let out = Command::new(tool("GOPROBE_TRACECOUNT"))
        .arg("-go")
        .arg(tool("GOPROBE_TRACE_GO"))
        .args(["-start-ns", &start_ns.to_string()])
        .args(["-end-ns", &end_ns.to_string()])
        .arg(&trace)
        .output()
        .expect("tracecount runs");
    let _ = std::fs::remove_file(&trace);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{release} {fixture}: tracecount failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&text).expect("tracecount JSON");
    assert!(
        report["clock"]["mono_mappable"] == true,
        "{release} {fixture}: trace times cannot be mapped: {}",
        report["clock"]
    );
    let theirs_events: Vec<(u64, &str)> = report["events"]
        .as_array()
        .expect("tracecount events")
        .iter()
        .filter_map(|e| Some((e["mono_ns"].as_u64()?, e["kind"].as_str()?)))
        .collect();
    let ours_events: Vec<(u64, &str)> = traced
        .events
        .iter()
        .filter_map(|e| {
            let kind = match (e["path"].as_str()?, e["action"].as_str()?) {
                ("async", "reschedule") => "async_reschedule",
                ("async", "park") => "async_park",
                ("stack_check", "reschedule") => "stack_check_reschedule",
                ("stack_check", "park") => "stack_check_park",
                _ => return None,
            };
            Some((e["ts_ns"].as_u64()?, kind))
        })
        .collect();
    // The trace's clock maps to CLOCK_MONOTONIC only within its stated accuracy (Go
    // 1.21's relative, tick-averaged times the least), so an event that close to the
    // window's edge could fall inside on one side and outside on the other. Move each
    // edge inward until no event of either side is within ten times that accuracy.
    let margin = 10 * report["clock"]["accuracy_ns"].as_u64().unwrap_or(0);
    let mut times: Vec<u64> = theirs_events
        .iter()
        .chain(&ours_events)
        .map(|(t, _)| *t)
        .collect();
    times.sort_unstable();
    let (start_ns, end_ns) = quiet_window(&times, start_ns, end_ns, margin);
    let count = |events: &[(u64, &str)], kind: &str| {
        events
            .iter()
            .filter(|(t, k)| *k == kind && (start_ns..=end_ns).contains(t))
            .count() as u64
    };
    let ours = Counts {
        async_reschedule: count(&ours_events, "async_reschedule"),
        async_park: count(&ours_events, "async_park"),
        stack_check_reschedule: count(&ours_events, "stack_check_reschedule"),
        stack_check_park: count(&ours_events, "stack_check_park"),
    };
    let theirs = Counts {
        async_reschedule: count(&theirs_events, "async_reschedule"),
        async_park: count(&theirs_events, "async_park")
            + count(&theirs_events, "park_unknown_path"),
        stack_check_reschedule: count(&theirs_events, "stack_check_reschedule"),
        stack_check_park: count(&theirs_events, "stack_check_park"),
    };
    eprintln!("{release} {fixture} {fixture_env:?}: goprobe {ours:?}, runtime/trace {theirs:?}");
    (ours, theirs, traced)
}

/// Go 1.21–1.25 traces record a park without a stack: its path is unknown, so parks are
/// compared in total there, by path from 1.26.
fn assert_equal(release: &str, fixture: &str, ours: &Counts, theirs: &Counts) {
    let minor: u32 = release.split('.').nth(1).unwrap().parse().unwrap();
    assert_eq!(
        (ours.async_reschedule, ours.stack_check_reschedule),
        (theirs.async_reschedule, theirs.stack_check_reschedule),
        "{release} {fixture}: reschedules (async, stack check)"
    );
    if minor >= 26 {
        assert_eq!(
            (ours.async_park, ours.stack_check_park),
            (theirs.async_park, theirs.stack_check_park),
            "{release} {fixture}: parks (async, stack check)"
        );
    } else {
        assert_eq!(
            ours.async_park + ours.stack_check_park,
            theirs.async_park + theirs.stack_check_park,
            "{release} {fixture}: parks"
        );
    }
}

#[test]
fn spinner_matches_runtime_trace() {
    let env = env();
    for release in &env.releases {
        let (ours, theirs) = both_counts(
            &env,
            release,
            "spinner",
            &["-workers", "4", "-procs", "1", "-duration", "2s"],
            &[],
        );
        assert!(ours.async_reschedule >= 50, "{release}: {ours:?}");
        assert_equal(release, "spinner", &ours, &theirs);
    }
}

#[test]
fn coop_without_async_preemption_matches_runtime_trace() {
    let env = env();
    for release in &env.releases {
        let (ours, theirs) = both_counts(
            &env,
            release,
            "coop",
            &["-workers", "4", "-procs", "1", "-duration", "2s"],
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        assert!(ours.stack_check_reschedule >= 50, "{release}: {ours:?}");
        assert_eq!(ours.async_reschedule, 0, "{release}");
        assert_equal(release, "coop", &ours, &theirs);
    }
}

#[test]
fn gc_stress_matches_runtime_trace() {
    let env = env();
    for release in &env.releases {
        let (ours, theirs) = both_counts(&env, release, "gcstress", &[], &[]);
        assert_equal(release, "gcstress", &ours, &theirs);
    }
}

/// A Gosched flood in the same process, every yield recorded (`--yields`), beside a
/// spinner that only async preemption stops: the flood may overrun its own ring, never
/// the chain's, so the preemption counts stay exactly runtime/trace's.
#[test]
fn gosched_flood_leaves_the_chain_exact() {
    let env = env();
    let release = env.newest();
    let (ours, theirs, traced) = both_counts_traced(
        &env,
        release,
        "yield",
        &["--yields"],
        &[
            "-goroutines",
            "2",
            "-procs",
            "2",
            "-spinners",
            "1",
            "-duration",
            "1s",
        ],
        &[],
    );
    let summary = &traced.summary;
    let lost = summary["lost"].as_object().expect("lost per kind");
    for (kind, n) in lost {
        if kind != "yield" {
            assert_eq!(n, 0, "chain events lost under the flood: {kind} {n}");
        }
    }
    // The flood really ran: the fixture's own count of its Gosched calls, and every one
    // of them counted in the kernel (records may be lost, counts are not). However fast
    // the machine (42 000 calls in the second under qemu without KVM, millions here), its
    // records must outnumber the chain's tenfold for the chain to be under a flood.
    let ops = traced.fixture()["ops"].as_u64().unwrap();
    let yields = summary["preemptions"]["voluntary_yields"]
        .as_u64()
        .expect("voluntary_yields");
    assert!(
        yields >= ops,
        "kernel-counted yields {yields} < the fixture's {ops}"
    );
    let events = summary["events"].as_object().expect("events per kind");
    let chain: u64 = events
        .iter()
        .filter(|(kind, _)| *kind != "yield")
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    assert!(
        ops >= 10 * chain,
        "not a flood: {ops} Gosched calls against {chain} chain records"
    );
    eprintln!(
        "flood: {ops} Gosched calls, {yields} yields counted, {} yield records lost",
        lost.get("yield").and_then(|n| n.as_u64()).unwrap_or(0)
    );
    assert!(
        ours.async_reschedule >= 20,
        "the spinner was preempted: {ours:?}"
    );
    assert_equal(release, "yield", &ours, &theirs);
}
