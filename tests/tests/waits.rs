//! Seed Tasks 1 and 2: main hands the only P to a spinner without calls and waits to get
//! it back. The programs time their own waits (CLOCK_MONOTONIC, as goprobe's `ts_ns`);
//! goprobe must show the preemption that ended each wait, inside it and right at its end.

use goprobe_integration::{Traced, env, trace_command, u64_of};
use serde_json::Value;

const MS: u64 = 1_000_000;

/// How soon main runs after the spinner leaves the CPU: the same thread goes from
/// `goschedImpl` through `schedule` into main, microseconds on an idle P. Generous
/// against a loaded CI host, and still far below the 10–20 ms a wait lasts.
const HANDOFF_MAX: u64 = 2 * MS;

/// An asynchronous preemption of the spinner: when it left the CPU, and the P's
/// `schedtick` that sysmon's request read.
struct Preemption {
    off: u64,
    schedtick: u64,
}

fn async_preemptions(traced: &Traced, spinner: u64) -> Vec<Preemption> {
    traced
        .attempts
        .iter()
        .filter(|a| a["preempted_goid"] == spinner && a["outcome"] == "async")
        .map(|a| {
            let request = u64_of(&a["stamps"], "request");
            let event = traced
                .events_of("preempt_request")
                // The request's own goroutine: on a slow CPU sysmon can ask main (still
                // starting after 10 ms), and the spinner that took over its M meets the
                // signal.
                .find(|e| e["ts_ns"] == request && e["goid"] == a["goid"])
                .unwrap_or_else(|| panic!("no preempt_request event for {a}"));
            Preemption {
                off: u64_of(&a["stamps"], "off"),
                schedtick: u64_of(event, "schedtick"),
            }
        })
        .collect()
}

/// A wait `[start, end]` of main for the P ends with an async preemption of the spinner,
/// and main runs within [`HANDOFF_MAX`] of it. An earlier preemption inside the same wait
/// must be the scheduler's fairness rule: when `schedtick % 61 == 0`, `findRunnable`
/// takes the global run queue's head first — the spinner just put there — while main
/// waits in the local queue. With the latency fixture's 1 ms sleeps this lands on one
/// wait in 20 and doubles it (~40 ms).
fn check_wait(release: &str, preemptions: &[Preemption], start: u64, end: u64, what: &str) {
    let inside: Vec<&Preemption> = preemptions
        .iter()
        .filter(|p| (start..=end).contains(&p.off))
        .collect();
    let context = || {
        let inside: Vec<_> = inside.iter().map(|p| (p.off, p.schedtick)).collect();
        format!(
            "{release}: {what} [{start}, {end}] ({} ms), preemptions (off, schedtick) {inside:?}",
            (end - start) / MS
        )
    };
    let Some((last, earlier)) = inside.split_last() else {
        panic!("{}: none", context());
    };
    let handoff = end - last.off;
    assert!(
        handoff <= HANDOFF_MAX,
        "{}: main ran {handoff} ns after the last",
        context()
    );
    assert!(
        earlier.iter().all(|p| p.schedtick % 61 == 0),
        "{}: an earlier one is not the 1-in-61 global queue check",
        context()
    );
}

fn numbers(result: &Value, field: &str) -> Vec<u64> {
    result[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} missing in {result}"))
        .iter()
        .map(|v| v.as_u64().expect("a number"))
        .collect()
}

/// Seed Task 2: every `runtime.Gosched()` wait the program measured ends with an async
/// preemption of the spinner (two when the fairness rule intervenes), and main's yields
/// are goprobe's voluntary yields.
#[test]
fn each_gosched_wait_ends_with_the_spinners_preemption() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "latency");
        let traced = trace_command(&env, &["--yields"], &fixture, &["-samples", "20"], &[]);
        let result = traced.fixture();
        assert_eq!(result["timed_out"], false, "{release}: {result}");
        // First, so that a lost record is named as such, not as a chain with a hole.
        assert_eq!(
            traced.summary["lost_total"], 0,
            "{release}: {}",
            traced.summary["lost"]
        );
        let (starts, waits) = (
            numbers(result, "sample_start_ns"),
            numbers(result, "samples_ns"),
        );
        assert_eq!(starts.len(), 20, "{release}: {result}");
        assert_eq!(waits.len(), starts.len(), "{release}");
        let preemptions = async_preemptions(&traced, u64_of(result, "spinner_goid"));
        for (i, (start, wait)) in starts.iter().zip(&waits).enumerate() {
            check_wait(
                release,
                &preemptions,
                *start,
                start + wait,
                &format!("wait {i}"),
            );
        }
        // Each wait began with main's own Gosched: a voluntary yield of main.
        let main = u64_of(result, "main_goid");
        let window = starts[0]..=starts[starts.len() - 1] + waits[waits.len() - 1];
        let yields = traced
            .events_of("yield")
            .filter(|e| e["goid"] == main && e["action"] == "yield")
            .filter(|e| e["ts_ns"].as_u64().is_some_and(|ts| window.contains(&ts)))
            .count();
        assert_eq!(yields, starts.len(), "{release}: main's yields");
    }
}

/// Seed Task 1: main yields the only P to a tight loop. By default one async preemption
/// gives it back. With `asyncpreemptoff=1` main hangs until the fixture's stop word
/// ends the loop: no signal at all, sysmon asking the spinner on every tick, and the
/// spinner leaving only through the stack check of the first call after its loop.
#[test]
fn tight_loop_hang_and_its_release() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "hang");

        let traced = trace_command(&env, &[], &fixture, &[], &[]);
        let result = traced.fixture();
        assert_eq!(result["hung"], false, "{release}: {result}");
        let spinner = u64_of(result, "spinner_goid");
        let (yielded, resumed) = (u64_of(result, "yield_ns"), u64_of(result, "resumed_ns"));
        // Shown if the check below fails (once, in a 7.2 guest under TCG): what the
        // correlator made of the requests around the wait, and the raw preemption events.
        let around = yielded.saturating_sub(30 * MS)..=resumed + 30 * MS;
        for attempt in &traced.attempts {
            let stamps = attempt["stamps"].as_object().unwrap();
            if stamps
                .values()
                .filter_map(Value::as_u64)
                .any(|ts| around.contains(&ts))
            {
                println!("{release}: around the wait: {attempt}");
            }
        }
        for kind in ["async_preempt", "gosched", "do_sig_preempt"] {
            for event in traced.events_of(kind) {
                if event["ts_ns"]
                    .as_u64()
                    .is_some_and(|ts| around.contains(&ts))
                {
                    println!("{release}: around the wait: {event}");
                }
            }
        }
        check_wait(
            release,
            &async_preemptions(&traced, spinner),
            yielded,
            resumed,
            "the wait",
        );

        let timeout_ms = 1_000;
        let traced = trace_command(
            &env,
            &[],
            &fixture,
            &["-timeout", &format!("{timeout_ms}ms")],
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        let result = traced.fixture();
        assert_eq!(result["hung"], true, "{release}: {result}");
        let (yielded, resumed) = (u64_of(result, "yield_ns"), u64_of(result, "resumed_ns"));
        assert!(
            resumed - yielded >= timeout_ms * MS * 9 / 10,
            "{release}: {result}"
        );
        for kind in ["signal_m", "tgkill", "signal_deliver", "async_preempt"] {
            assert_eq!(traced.count(kind), 0, "{release}: {kind}");
        }
        let spinner = u64_of(result, "spinner_goid");
        // Asked while main waited: after main resumed, sysmon may ask again as the
        // process exits (seen once: an "unfinished" attempt 28 µs later).
        let asked: Vec<&Value> = traced
            .attempts
            .iter()
            .filter(|a| a["goid"] == spinner && a["requester"] == "sysmon")
            .filter(|a| (yielded..=resumed).contains(&u64_of(&a["stamps"], "request")))
            .collect();
        assert_eq!(asked.len(), 1, "{release}: {asked:?}");
        let attempt = asked[0];
        assert_eq!(attempt["outcome"], "cooperative", "{release}: {attempt}");
        // sysmon asks on every tick once the spinner's schedtick is stale: over the hang
        // at least once per 20 ms (two 10 ms ticks), whatever the tick phase.
        let asks = u64_of(attempt, "retries") + 1;
        assert!(
            asks >= timeout_ms / 20,
            "{release}: sysmon asked {asks}×: {attempt}"
        );
        // Off the CPU only once the stop word ended the loop, then main ran at once.
        let off = u64_of(&attempt["stamps"], "off");
        assert!(
            off >= yielded + timeout_ms * MS * 9 / 10 && off <= resumed,
            "{release}: off at {off}, wait [{yielded}, {resumed}]"
        );
        assert!(resumed - off <= HANDOFF_MAX, "{release}: {attempt}");
    }
}
