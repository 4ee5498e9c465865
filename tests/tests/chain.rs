//! The preemption chain on real Go processes, checked link by link against the fixture's
//! own account of what it did.

use goprobe_integration::{
    Env, Traced,
    checks::{assert_async_follows_sysmon_signal, assert_lost_exactly, assert_nothing_lost},
    env, trace_command, u64_of,
};

const SPINNER_ARGS: [&str; 6] = ["-workers", "4", "-procs", "1", "-duration", "2s"];

/// With each way of hooking `tgkill` (`--syscall-hooks`): recorded where it generates the
/// signal (the default), at the syscall event, or at raw `sys_enter`, every way must see
/// exactly one call per signalM.
#[test]
fn spinner_async_preemptions_follow_sysmon_sigurg() {
    let env = env();
    for (hooks, tgkill_hook) in [
        ("none", "raw:signal_generate"),
        ("classic", "syscalls:sys_enter_tgkill"),
        ("raw", "raw:sys_enter"),
    ] {
        for release in &env.releases {
            spinner_chain(&env, release, &["--syscall-hooks", hooks], tgkill_hook);
        }
    }
}

/// Nothing lost, except runs of the raw `sys_exit` program the kernel skipped. That
/// program runs for every syscall on the host, and a kernel that runs syscall tracepoints
/// preemptible (7.2) skips a run while another task on the CPU is inside it (counted:
/// `skipped_by_kernel`). Its only records are failed tgkills, and the caller checks that
/// every tgkill generated its signal: none failed, so no skipped run was this process's.
fn assert_nothing_of_the_chain_lost(traced: &Traced, release: &str) {
    let summary = &traced.summary;
    let exit_skips = summary["skipped_by_kernel"]["raw_sys_exit"]
        .as_u64()
        .unwrap_or(0);
    if exit_skips > 0 {
        println!("{release}: the kernel skipped {exit_skips} runs of raw_sys_exit");
    }
    assert_lost_exactly(traced, release, exit_skips);
}

/// The classic signal tracepoints, with their fields at the offsets the tracefs formats
/// give: what goprobe uses on a kernel without BTF. Their fields do not depend on the Go
/// release; the newest is enough.
#[test]
fn spinner_chain_on_the_classic_signal_tracepoints() {
    let env = env();
    let newest = env.releases.last().expect("a release");
    spinner_chain(
        &env,
        newest,
        &["--classic-tracepoints"],
        "signal:signal_generate",
    );
}

/// One spinner run traced with `goprobe_args`, whose `tgkill` must come from
/// `tgkill_hook`.
fn spinner_chain(env: &Env, release: &str, goprobe_args: &[&str], tgkill_hook: &str) {
    let hooks = goprobe_args.join(" ");
    let hooks = hooks.as_str();
    let fixture = env.fixture(release, "default", "spinner");
    let traced = trace_command(env, goprobe_args, &fixture, &SPINNER_ARGS, &[]);
    let sends: Vec<&str> = traced.summary["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .filter(|p| p["attached"] == true && p["link"] == "SIGURG sent")
        .filter_map(|p| p["target"].as_str())
        .collect();
    assert_eq!(sends, [tgkill_hook], "{hooks}: the tgkill hook");
    let release = &format!("{release} ({hooks})");
    let asyncs = traced.count("async_preempt");
    assert!(
        asyncs >= 50,
        "{release}: only {asyncs} async preemptions in 2 s"
    );
    // A lost record would show as a broken chain below: say so first.
    assert_nothing_of_the_chain_lost(&traced, release);
    assert_async_follows_sysmon_signal(&traced, release);
    // signalM makes exactly one tgkill, and each generated its signal.
    assert_eq!(
        traced.count("signal_m"),
        traced.count("tgkill"),
        "{release}"
    );
    assert_eq!(
        traced.count("tgkill"),
        traced.count("signal_generate"),
        "{release}"
    );
    assert_eq!(traced.count("tgkill_failed"), 0, "{release}");
    assert_nothing_of_the_chain_lost(&traced, release);
    let counts = traced.worker_counts();
    assert_eq!(counts.len(), 4, "{release}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "{release}: a worker never ran: {counts:?}"
    );
    // The goroutines preempted are exactly the workers, by the ids they report.
    let mut worker_goids = traced.worker_goids();
    worker_goids.sort_unstable();
    let preempted = traced.async_preempted_in_window();
    assert_eq!(
        preempted, worker_goids,
        "{release}: preempted goroutine ids"
    );
    // Every asyncPreempt2 is followed, on its thread, by that goroutine's reschedule
    // or park. (Cooperative preemptions can also occur: a request pending when a
    // goroutine reaches any function prologue is served there.)
    let p = &traced.summary["preemptions"];
    assert_eq!(
        u64_of(p, "async_reschedule") + u64_of(p, "async_park"),
        asyncs,
        "{release}: {p}"
    );
}

#[test]
fn spinner_with_asyncpreemptoff_gets_no_sigurg() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "spinner");
        let traced = trace_command(
            &env,
            &[],
            &fixture,
            &SPINNER_ARGS,
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        assert!(
            traced.stderr.contains("asyncpreemptoff=1"),
            "{release}: goprobe should point out that async preemption is off: {}",
            traced.stderr
        );
        assert_eq!(traced.count("async_preempt"), 0, "{release}");
        let sysmon = traced.sysmon_tids();
        let from_sysmon = traced
            .events_of("tgkill")
            .filter(|e| sysmon.contains(&u64_of(e, "tid")))
            .count();
        assert_eq!(
            from_sysmon, 0,
            "{release}: sysmon sent SIGURG with async preemption off"
        );
        // sysmon still asks (preemptone) — it just never signals.
        assert!(
            traced.count("preempt_request") > 0,
            "{release}: no preemption requests"
        );
        assert_nothing_lost(&traced, release);
        // Seed Task 4: one worker keeps the only P.
        let counts = traced.worker_counts();
        let running = counts.iter().filter(|&&c| c > 0).count();
        assert_eq!(
            running, 1,
            "{release}: expected one worker to hog the P: {counts:?}"
        );
    }
}

#[test]
fn coop_with_asyncpreemptoff_is_preempted_at_function_prologues() {
    let env = env();
    for release in &env.releases {
        let fixture = env.fixture(release, "default", "coop");
        let traced = trace_command(
            &env,
            &[],
            &fixture,
            &SPINNER_ARGS,
            &[("GODEBUG", "asyncpreemptoff=1")],
        );
        let preemptions = &traced.summary["preemptions"];
        assert_eq!(preemptions["async"], 0, "{release}: {preemptions}");
        let cooperative = preemptions["cooperative"].as_u64().unwrap();
        assert!(
            cooperative >= 50,
            "{release}: only {cooperative} cooperative preemptions"
        );
        assert_nothing_lost(&traced, release);
        // Seed Task 5: the call in the loop makes it fair again.
        let counts = traced.worker_counts();
        assert!(
            counts.iter().all(|&c| c > 0),
            "{release}: a worker never ran: {counts:?}"
        );
        // And the events agree with the summary: each cooperative reschedule is a
        // goschedImpl call (or preemptPark) on the stack-check path.
        let stack_check = traced
            .events
            .iter()
            .filter(|e| e["path"] == "stack_check")
            .count() as u64;
        assert_eq!(stack_check, cooperative, "{release}");
        // Where: the prologue of the function called in the loop (seed Task 5).
        let top = &traced.summary["top_cooperative_locations"][0]["location"];
        assert_eq!(top["function"], "main.tick", "{release}: {top}");
    }
}

/// With the newest release, every link of the chain that the binary exposes is seen at
/// least once in a workload that has sysmon, async and GC preemptions and voluntary
/// yields.
#[test]
fn demo_exercises_every_attached_link() {
    let env = env();
    let release = env.newest();
    let fixture = env.fixture(release, "default", "demo");
    let traced = trace_command(&env, &["--yields"], &fixture, &[], &[]);
    let mut seen = 0;
    for probe in traced.summary["probes"].as_array().expect("probes") {
        if probe["attached"] != true {
            continue;
        }
        let (link, target) = (
            probe["link"].as_str().unwrap(),
            probe["target"].as_str().unwrap(),
        );
        if matches!(target, "syscalls:sys_exit_tgkill" | "raw:sys_exit") {
            // Failed SIGURGs only: a healthy process has none (tests/tests/verify.rs
            // makes them under seccomp).
            assert_eq!(traced.count("tgkill_failed"), 0, "{}", traced.summary);
            continue;
        }
        let kind = match (link, target) {
            (_, "runtime.retake") => "sysmon_tick",
            (_, "runtime.preemptone") => "preempt_request",
            (_, "runtime.signalM") => "signal_m",
            (_, "syscalls:sys_enter_tgkill" | "raw:sys_enter") => "tgkill",
            ("SIGURG sent", "raw:signal_generate" | "signal:signal_generate") => "tgkill",
            (_, "raw:signal_generate" | "signal:signal_generate") => "signal_generate",
            (_, "raw:signal_deliver" | "signal:signal_deliver") => "signal_deliver",
            (_, "runtime.doSigPreempt") => "do_sig_preempt",
            (_, "runtime.asyncPreempt2") => "async_preempt",
            ("yield", "calls to runtime.goschedImpl") => "yield",
            (_, "calls to runtime.goschedImpl") => "gosched",
            (_, "runtime.preemptPark") => "preempt_park",
            (_, "runtime.suspendG" | "calls to runtime.castogscanstatus") => "suspend_g",
            (_, "runtime.execute") => "execute",
            other => panic!("{release}: unexpected attached probe {other:?}"),
        };
        seen += 1;
        assert!(
            traced.count(kind) > 0,
            "{release}: {target} attached but no {kind} event: {}",
            traced.summary
        );
    }
    assert!(seen >= 11, "{release}: only {seen} probes attached");
    // The kernel's exact count of yields, and one record per yield on the bulk ring.
    let yields = traced.summary["preemptions"]["voluntary_yields"]
        .as_u64()
        .expect("yields counted with --yields");
    assert_eq!(yields, traced.count("yield"), "{release}: yield records");
    assert_nothing_lost(&traced, release);
}
