//! Runs the kernel skips. The kernel does not nest BPF tracing programs on one CPU: an
//! event that fires while another tracing program runs there (another tool's) is never
//! handed to goprobe's program, and no record of it reaches a ring. goprobe reads the
//! kernel's own count of those runs (`bpf_prog_info.recursion_misses`) and shows it as
//! lost, never as "nothing lost".
//!
//! bpftrace plays the other tool: from inside its program on `getppid`'s tracepoint it
//! sends the caller a SIGURG, so the signal is generated while its program runs.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use goprobe_integration::{env, trace_command, u64_of};

/// The program goprobe records SIGURG generation with on the classic tracepoint path;
/// the classic (perf) tracepoint is the one the kernel guards against any nesting.
const PROGRAM: &str = "tp_signal_generate";

/// Linux 6.7 counts the runs of a classic tracepoint program it skips ("bpf: Count
/// missed stats in trace_call_bpf"); before, it skips them without a count.
const COUNTED_SINCE: (u32, u32) = (6, 7);

/// `si_code` of a signal the kernel generates itself (`bpf_send_signal`).
const SI_KERNEL: i64 = 0x80;

fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn runs_the_kernel_skipped_are_counted_and_shown() {
    let env = env();
    let release = env.releases.last().expect("a release");
    let fixture = env.fixture(release, "default", "spinner");
    let calls = 40;
    let mut bpftrace = Command::new("bpftrace")
        .args([
            "--unsafe",
            "-e",
            r#"BEGIN { printf("ready\n"); }
               tracepoint:syscalls:sys_enter_getppid /comm == "spinner"/ {
                   signal("SIGURG"); @sent = count();
               }"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpftrace runs (cargo xtask setup installs it)");
    let mut lines = BufReader::new(bpftrace.stdout.take().unwrap()).lines();
    // BEGIN runs once every probe is attached.
    if !lines.by_ref().map_while(Result::ok).any(|l| l == "ready") {
        let output = bpftrace.wait_with_output().expect("bpftrace exits");
        panic!(
            "bpftrace did not start ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let traced = trace_command(
        &env,
        &["--classic-tracepoints"],
        &fixture,
        &[
            "-getppid",
            &calls.to_string(),
            "-workers",
            "1",
            "-duration",
            "200ms",
        ],
        &[],
    );
    // SAFETY: kill has no memory preconditions; bpftrace prints its maps on SIGINT.
    unsafe { libc::kill(bpftrace.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(bpftrace.wait().expect("bpftrace exits").success());
    let sent: u64 = rest
        .iter()
        .find_map(|l| l.strip_prefix("@sent: "))
        .unwrap_or_else(|| panic!("bpftrace printed no count: {rest:?}"))
        .parse()
        .expect("a count");
    assert_eq!(u64_of(traced.fixture(), "getppid_calls"), calls);
    assert_eq!(sent, calls, "bpftrace sent one SIGURG per getppid");

    // The signals bpftrace sent that goprobe recorded anyway: the kernel ran its program
    // nested (7.2 does, for a program on a syscall tracepoint, which it runs preemptible).
    // bpf_send_signal generates a process-wide signal from the kernel (SI_KERNEL); the
    // runtime's tgkill a thread's (SI_TKILL).
    let recorded = traced
        .events_of("signal_generate")
        .filter(|e| e["group"] == true && e["code"] == SI_KERNEL)
        .count() as u64;
    // --list-probes says whether this kernel counts them, as the run below finds.
    let listed = Command::new(&env.goprobe)
        .args(["--classic-tracepoints", "--list-probes", "--"])
        .arg(&fixture)
        .output()
        .expect("goprobe runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let kernel_line = listed
        .lines()
        .find(|l| l.starts_with("kernel: "))
        .unwrap_or_else(|| panic!("no kernel line: {listed}"));
    assert_eq!(
        kernel_line.contains("runs the kernel skips counted"),
        kernel_version() >= COUNTED_SINCE,
        "{kernel_line}"
    );
    let skipped = &traced.summary["skipped_by_kernel"];
    println!(
        "kernel {:?}: sent {sent}, recorded {recorded}, skipped {skipped}",
        kernel_version()
    );
    if kernel_version() < COUNTED_SINCE {
        // Documented (README, Limitations): these kernels skip without counting, and
        // goprobe does not list a count it cannot have.
        assert!(skipped.get(PROGRAM).is_none(), "{skipped}");
        assert_eq!(recorded, 0, "{}", traced.summary);
        return;
    }
    // Every signal bpftrace sent is accounted for: recorded, or skipped and counted.
    assert_eq!(recorded + u64_of(skipped, PROGRAM), sent, "{skipped}");
    let others: u64 = skipped
        .as_object()
        .expect("skipped_by_kernel is an object")
        .iter()
        .filter(|(program, _)| *program != PROGRAM)
        .map(|(_, n)| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(others, 0, "{skipped}");
    let skipped = u64_of(skipped, PROGRAM);
    assert_eq!(traced.summary["lost_total"], skipped, "{}", traced.summary);
    if skipped > 0 {
        assert!(
            traced.stderr.contains(&format!(
                "the kernel skipped {skipped} runs of goprobe's programs"
            )),
            "{}",
            traced.stderr
        );
    }
    // No ring lost a record: the loss is the skipped runs alone.
    let ring_losses: u64 = traced.summary["lost"]
        .as_object()
        .expect("lost is an object")
        .values()
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(ring_losses, 0, "{}", traced.summary);
}
