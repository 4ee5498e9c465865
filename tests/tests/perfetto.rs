//! `--perfetto FILE` on a real GC-stress run: the trace, decoded independently with the
//! official Perfetto protos (`tests/perfetto/decode.py`, PyPI's `perfetto` package), holds
//! exactly what goprobe's JSON output of the same run says — an instant per event, a run
//! slice per `execute`, a flow per attempt joining its links, thread tracks named after
//! sysmon and the Ms, timestamps equal to the events' CLOCK_MONOTONIC `ts_ns`.
//!
//! Needs python3 with the `perfetto` package: `cargo xtask setup` installs it into
//! `.goprobe/python/`, which this test puts on PYTHONPATH (or `python3 -m pip install
//! perfetto`). `GOPROBE_PYTHON` picks another interpreter. Missing, the test fails and
//! says how to install it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    process::Command,
};

use goprobe_integration::{Env, Traced, env, temp_path, trace_command, u64_of};
use serde_json::Value;

const GCSTRESS_ARGS: [&str; 10] = [
    "-procs",
    "2",
    "-cycles",
    "5",
    "-alloc-mb",
    "10",
    "-gc-percent",
    "10",
    "-timeout",
    "30s",
];

const INSTALL: &str = "run `cargo xtask setup` (it installs the `perfetto` package into \
                       .goprobe/python/), or `python3 -m pip install perfetto`";

/// How `perfetto.rs` (tracer) numbers flows: `pid << 40 | attempt id`.
fn flow_id(pid: u64, attempt: u64) -> u64 {
    (pid << 40) | (attempt & ((1 << 40) - 1))
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The interpreter, with `.goprobe/python/` (where xtask installs the package) on its path.
fn python() -> Command {
    let program = std::env::var("GOPROBE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(program);
    let local = workspace().join(".goprobe/python");
    if local.is_dir() {
        let mut path = local.into_os_string();
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            path.push(":");
            path.push(old);
        }
        cmd.env("PYTHONPATH", path);
    }
    cmd
}

/// Fails (never skips) when python3 or the Perfetto protos are missing.
fn require_decoder() {
    let output = python()
        .args([
            "-c",
            "import google.protobuf.unknown_fields, \
             perfetto.protos.perfetto.trace.perfetto_trace_pb2",
        ])
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "python3 is needed to decode Perfetto traces ({err}): install python3, \
                 then {INSTALL}"
            )
        });
    assert!(
        output.status.success(),
        "python3 cannot import the Perfetto protos: {INSTALL}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `decode.py --full FILE`.
fn decode(path: &Path) -> Value {
    let output = python()
        .arg(workspace().join("tests/perfetto/decode.py"))
        .arg("--full")
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "decode.py failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("decode.py prints JSON")
}

fn traced_with_perfetto(env: &Env, release: &str) -> (Traced, Value) {
    let fixture = env.fixture(release, "default", "gcstress");
    let trace = temp_path("trace.pftrace");
    let trace_arg = trace.to_str().expect("utf-8 temp path");
    let traced = trace_command(
        env,
        &["--perfetto", trace_arg],
        &fixture,
        &GCSTRESS_ARGS,
        &[],
    );
    let decoded = decode(&trace);
    let _ = std::fs::remove_file(&trace);
    (traced, decoded)
}

/// The kinds an attempt stamp may come from, in chain order (a request with nothing
/// before its `signalM` is stamped at the `signalM`), and whether the link runs on the
/// requester's thread.
const STAMPS: [(&str, &[&str], bool); 9] = [
    ("tick", &["sysmon_tick"], true),
    (
        "request",
        &["preempt_request", "suspend_g", "signal_m", "preempt_m"],
        true,
    ),
    ("signal", &["signal_m", "preempt_m"], true),
    ("tgkill", &["tgkill"], true),
    ("generate", &["signal_generate"], true),
    ("deliver", &["signal_deliver"], false),
    ("handler", &["do_sig_preempt"], false),
    ("preempt", &["async_preempt"], false),
    ("off", &["gosched", "preempt_park"], false),
];

/// An event as the trace shows it: (ts, tid, name).
type Point = (u64, u64, String);

fn point(event: &Value) -> Point {
    (
        u64_of(event, "ts_ns"),
        u64_of(event, "tid"),
        event["kind"].as_str().expect("kind").to_string(),
    )
}

/// The events each attempt's flow must join, in chain order, computed from the JSON
/// output alone.
fn expected_flows(traced: &Traced, pid: u64) -> BTreeMap<u64, (Vec<Point>, &Value)> {
    // (ts, kind) → events, in arrival order.
    let mut by_stamp: HashMap<(u64, &str), Vec<&Value>> = HashMap::new();
    for event in &traced.events {
        let kind = event["kind"].as_str().expect("kind");
        by_stamp
            .entry((u64_of(event, "ts_ns"), kind))
            .or_default()
            .push(event);
    }
    let mut flows = BTreeMap::new();
    for attempt in &traced.attempts {
        let mut linked: Vec<Point> = Vec::new();
        for (stamp, kinds, on_requester) in STAMPS {
            let Some(ts) = attempt["stamps"][stamp].as_u64() else {
                continue;
            };
            let want_tid = if on_requester {
                attempt["requester_tid"].as_u64()
            } else {
                attempt["target_tid"].as_u64()
            };
            // The first kind with events at that time; among them, the expected thread's.
            let candidates = kinds
                .iter()
                .find_map(|kind| by_stamp.get(&(ts, *kind)))
                .unwrap_or_else(|| {
                    panic!("attempt {attempt}: no {kinds:?} event at its {stamp} stamp {ts}")
                });
            let event = candidates
                .iter()
                .find(|e| e["tid"].as_u64() == want_tid)
                .unwrap_or(&candidates[0]);
            let p = point(event);
            if !linked.contains(&p) {
                linked.push(p);
            }
        }
        if linked.len() >= 2 {
            flows.insert(flow_id(pid, u64_of(attempt, "id")), (linked, attempt));
        }
    }
    flows
}

/// Run slices from the JSON events: `execute` to the goroutine's next off-CPU event on
/// that thread, or the thread's next `execute`, or the last event.
fn expected_slices(traced: &Traced) -> Vec<(u64, String, u64, u64, String)> {
    let end = traced.events.iter().map(|e| u64_of(e, "ts_ns")).max();
    let mut open: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // tid → (goid, begin)
    let mut slices = Vec::new();
    for event in &traced.events {
        let (ts, tid, kind) = point(event);
        let goid = || {
            event["goid"]
                .as_u64()
                .unwrap_or_else(|| panic!("goroutine event without goid: {event}"))
        };
        match kind.as_str() {
            "execute" => {
                if let Some((g, begin)) = open.insert(tid, (goid(), ts)) {
                    slices.push((tid, format!("g{g}"), begin, ts, kind.clone()));
                }
            }
            "gosched" | "yield" | "preempt_park" => {
                let g = goid();
                if open.get(&tid).is_some_and(|(open_g, _)| *open_g == g) {
                    let (_, begin) = open.remove(&tid).expect("open slice");
                    slices.push((tid, format!("g{g}"), begin, ts, kind.clone()));
                }
            }
            _ => {}
        }
    }
    for (tid, (g, begin)) in open {
        let end = end.expect("events");
        slices.push((tid, format!("g{g}"), begin, end, "trace_end".into()));
    }
    slices.sort();
    slices
}

#[test]
fn perfetto_trace_matches_the_json_output() {
    let env = env();
    require_decoder();
    for release in &env.releases {
        check_release(&env, release);
    }
}

fn check_release(env: &Env, release: &str) {
    let (traced, decoded) = traced_with_perfetto(env, release);
    let summary = &traced.summary;
    let pid = u64_of(summary, "pid");
    let ctx = |what: &str| format!("{release}: {what}");

    // A valid trace: decoded by the official protos with no unknown field, one sequence
    // whose first packet clears incremental state and declares CLOCK_MONOTONIC.
    assert_eq!(
        decoded["errors"],
        Value::Array(vec![]),
        "{}",
        ctx("decode.py found problems")
    );
    let sequences = decoded["sequences"].as_object().expect("sequences");
    assert_eq!(sequences.len(), 1, "{}", ctx("one packet sequence"));
    let sequence = sequences.values().next().expect("a sequence");
    assert_eq!(
        sequence["first_packet_flags"], 1,
        "SEQ_INCREMENTAL_STATE_CLEARED first"
    );
    assert_eq!(
        sequence["default_clock_id"], 3,
        "defaults: BUILTIN_CLOCK_MONOTONIC"
    );
    let clocks = decoded["timestamps"]["clocks"].as_object().expect("clocks");
    assert_eq!(
        clocks.keys().collect::<Vec<_>>(),
        ["BUILTIN_CLOCK_MONOTONIC"],
        "every track event in CLOCK_MONOTONIC"
    );

    // Clock snapshots: MONOTONIC, BOOTTIME and REALTIME read together, at the start and
    // the end, MONOTONIC in the events' time base.
    let snapshots = decoded["clock_snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 2, "{}", ctx("snapshots at start and end"));
    let ts_min = traced.events.iter().map(|e| u64_of(e, "ts_ns")).min();
    let ts_max = traced.events.iter().map(|e| u64_of(e, "ts_ns")).max();
    let (ts_min, ts_max) = (ts_min.expect("events"), ts_max.expect("events"));
    let now_realtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    let mut offsets = Vec::new();
    for snapshot in snapshots {
        let clock = |name: &str| {
            snapshot["clocks"][name]
                .as_u64()
                .unwrap_or_else(|| panic!("snapshot without {name}: {snapshot}"))
        };
        let mono = clock("BUILTIN_CLOCK_MONOTONIC");
        assert!(
            mono + 60_000_000_000 > ts_min && mono < ts_max + 60_000_000_000,
            "snapshot MONOTONIC {mono} far from the events [{ts_min}, {ts_max}]"
        );
        let boot = clock("BUILTIN_CLOCK_BOOTTIME");
        assert!(
            boot + 1_000_000 >= mono,
            "BOOTTIME {boot} < MONOTONIC {mono}"
        );
        offsets.push(boot as i64 - mono as i64);
        let real = clock("BUILTIN_CLOCK_REALTIME");
        assert!(
            real.abs_diff(now_realtime) < 600_000_000_000,
            "snapshot REALTIME {real} is not now ({now_realtime})"
        );
    }
    assert!(
        (offsets[0] - offsets[1]).abs() < 1_000_000,
        "BOOTTIME−MONOTONIC moved by more than 1 ms between snapshots: {offsets:?}"
    );

    // Tracks: the process, named after the binary; one thread track per thread that
    // produced an event, in the process, named sysmon or after its M.
    let tracks = decoded["tracks"].as_array().expect("tracks");
    let process: Vec<&Value> = tracks.iter().filter(|t| t["kind"] == "process").collect();
    assert_eq!(process.len(), 1, "{}", ctx("one process track"));
    assert_eq!(process[0]["pid"].as_u64(), Some(pid));
    assert_eq!(process[0]["name"], "gcstress");
    let threads: BTreeMap<u64, &Value> = tracks
        .iter()
        .filter(|t| t["kind"] == "thread")
        .map(|t| (u64_of(t, "tid"), t))
        .collect();
    let event_tids: BTreeSet<u64> = traced.events.iter().map(|e| u64_of(e, "tid")).collect();
    assert_eq!(
        threads.keys().copied().collect::<BTreeSet<_>>(),
        event_tids,
        "{}",
        ctx("a track per thread with events")
    );
    for track in threads.values() {
        assert_eq!(track["pid"].as_u64(), Some(pid), "{track}");
        assert_eq!(track["parent_uuid"], process[0]["uuid"], "{track}");
    }
    let sysmon = traced.sysmon_tids();
    assert_eq!(sysmon.len(), 1, "{}", ctx("one sysmon thread"));
    assert_eq!(threads[&sysmon[0]]["name"], "sysmon");
    let mut m_names: BTreeMap<u64, String> = BTreeMap::new();
    for signal in traced.events_of("signal_m") {
        if let (Some(tid), Some(m)) = (signal["m_tid"].as_u64(), signal["m_id"].as_i64())
            && tid != sysmon[0]
        {
            m_names.insert(tid, format!("M{m}"));
        }
    }
    assert!(!m_names.is_empty(), "{}", ctx("signalM named some Ms"));
    for (tid, track) in &threads {
        let want = match m_names.get(tid) {
            _ if *tid == sysmon[0] => "sysmon",
            Some(name) => name,
            None => "thread",
        };
        assert_eq!(track["name"], want, "thread {tid}");
    }

    // Instants: one per event of every kind but execute, same time, thread and goroutine;
    // per kind as many as the JSON and the summary count.
    let instants = decoded["instant_list"].as_array().expect("instant_list");
    let mut got: Vec<(Point, Option<u64>)> = Vec::new();
    let mut summaries = Vec::new();
    for instant in instants {
        let name = instant[2].as_str().expect("name").to_string();
        if name == "goprobe_summary" {
            summaries.push(instant);
            continue;
        }
        let ts = instant[0].as_u64().expect("ts");
        let tid = instant[1]
            .as_u64()
            .unwrap_or_else(|| panic!("instant off thread tracks: {instant}"));
        got.push(((ts, tid, name), instant[3]["goid"].as_u64()));
    }
    let mut want: Vec<(Point, Option<u64>)> = traced
        .events
        .iter()
        .filter(|e| e["kind"] != "execute")
        .map(|e| (point(e), e["goid"].as_u64()))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "{}", ctx("instants vs events"));
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{}", ctx("instant differs from its event"));
    }
    let counts = decoded["instants"].as_object().expect("instant counts");
    for (kind, n) in summary["events"].as_object().expect("summary events") {
        let n = n.as_u64().expect("count");
        let in_json = traced.events_of(kind).count() as u64;
        assert_eq!(in_json, n, "{kind}: JSON events vs summary");
        if kind != "execute" {
            let in_trace = counts.get(kind).and_then(Value::as_u64).unwrap_or(0);
            assert_eq!(in_trace, n, "{}", ctx(&format!("{kind} instants")));
        }
    }
    assert!(
        counts.get("execute").is_none(),
        "execute is a slice, not an instant"
    );
    assert_eq!(summaries.len(), 1, "{}", ctx("one goprobe_summary"));
    let trailer = &summaries[0][3];
    assert_eq!(trailer["events"], summary["events_total"]);
    assert_eq!(trailer["lost_events"], summary["lost_total"]);
    assert_eq!(decoded["summary"]["track_kind"], "process");

    // Run slices: from each execute to the goroutine's next off-CPU event on that thread
    // (or the thread's next execute, or the end), named after the goroutine.
    let executes = traced.events_of("execute").count();
    assert!(executes > 0, "{}", ctx("--perfetto implies --slices"));
    let got_slices: Vec<(u64, String, u64, u64, String)> = {
        let mut slices: Vec<_> = decoded["slice_list"]
            .as_array()
            .expect("slice_list")
            .iter()
            .map(|s| {
                (
                    s[0].as_u64().expect("tid"),
                    s[1].as_str().expect("name").to_string(),
                    s[2].as_u64().expect("begin"),
                    s[3].as_u64().expect("end"),
                    s[5]["ended_by"].as_str().expect("ended_by").to_string(),
                )
            })
            .collect();
        slices.sort();
        slices
    };
    let want_slices = expected_slices(&traced);
    assert_eq!(got_slices.len(), executes, "{}", ctx("a slice per execute"));
    assert_eq!(got_slices, want_slices, "{}", ctx("run slices"));
    assert_eq!(decoded["slices"]["unterminated"], 0);

    // Flows: one per attempt with two links or more, joining exactly its links.
    let want_flows = expected_flows(&traced, pid);
    let got_flows = decoded["flow_list"].as_object().expect("flow_list");
    assert_eq!(
        got_flows.len(),
        want_flows.len(),
        "{}",
        ctx("a flow per attempt with two links or more")
    );
    let mut full_async = 0;
    for (id, (points, attempt)) in &want_flows {
        let got: Vec<Point> = got_flows
            .get(&id.to_string())
            .unwrap_or_else(|| panic!("no flow {id} for attempt {attempt}"))
            .as_array()
            .expect("flow events")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().expect("ts"),
                    p[1].as_u64().expect("tid"),
                    p[2].as_str().expect("name").to_string(),
                )
            })
            .collect();
        let (mut got_sorted, mut want_sorted) = (got.clone(), points.clone());
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "flow of attempt {attempt}");
        if attempt["outcome"] == "async" && got.len() >= 8 {
            full_async += 1;
        }
    }
    assert!(
        full_async > 0,
        "{}",
        ctx("some flow joins a whole async chain, request to reschedule/park")
    );
    assert_eq!(
        trailer["perfetto_partial_flows"], 0,
        "every attempt finished within the window"
    );
    assert!(
        !traced.stderr.contains("perfetto"),
        "no Perfetto warning: {}",
        traced.stderr
    );

    // Each attempt is described on its first link after the tick.
    let notes: HashMap<Point, &Value> = instants
        .iter()
        .filter(|i| i[3].get("attempt.id").is_some())
        .map(|i| {
            let p = (
                i[0].as_u64().expect("ts"),
                i[1].as_u64().unwrap_or(0),
                i[2].as_str().expect("name").to_string(),
            );
            (p, &i[3])
        })
        .collect();
    for (points, attempt) in want_flows.values() {
        let first = points
            .iter()
            .find(|p| p.2 != "sysmon_tick")
            .expect("a link after the tick");
        let note = notes
            .get(first)
            .unwrap_or_else(|| panic!("attempt {attempt} not described at {first:?}"));
        assert_eq!(note["attempt.id"], attempt["id"]);
        assert_eq!(note["attempt.outcome"], attempt["outcome"]);
    }

    // Timestamps: the events' own.
    assert_eq!(decoded["timestamps"]["min"].as_u64(), Some(ts_min));
    assert_eq!(decoded["timestamps"]["max"].as_u64(), Some(ts_max));
}
