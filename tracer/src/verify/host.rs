//! The verdict on this host: what goprobe (and so the runtime's preemption chain) needs
//! from the kernel and from its own privileges, then, with the workload shipped beside
//! goprobe, preemption proved end to end.

use std::{fs, path::Path};

use super::{Check, Report, Status, VerifyCli, shipped_workload, target};
use crate::{host::KernelFacts, preflight};

/// The initial pid namespace's inode number (`PROC_PID_INIT_INO`): the host's.
const HOST_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

pub async fn verify(args: &VerifyCli) -> anyhow::Result<Report> {
    let mut checks = vec![kernel()];
    let (held, lacking) = preflight::capability_report();
    let lacking: Vec<String> = lacking
        .iter()
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    let held_line = format!(
        "uid {}; holds {}; lacks {}",
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() },
        if held.is_empty() {
            "none of those goprobe uses".to_string()
        } else {
            held.join(", ")
        },
        if lacking.is_empty() {
            "none".to_string()
        } else {
            lacking.join(", ")
        }
    );
    let privileged = match preflight::check_privileges() {
        Ok(()) => {
            checks.push(Check::new("privileges", Status::Pass, held_line));
            true
        }
        Err(err) => {
            checks.push(
                Check::new("privileges", Status::Fail, format!("{held_line}: {err}"))
                    .fix(format!("run as root, or with {}", preflight::CAPABILITIES)),
            );
            false
        }
    };
    checks.push(match preflight::check_uprobes() {
        Ok(()) => Check::new("uprobes", Status::Pass, "uprobe PMU present"),
        Err(err) => Check::new("uprobes", Status::Fail, err.to_string())
            .fix("use a kernel with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS"),
    });
    let tracefs = preflight::ensure_tracefs();
    checks.push(match &tracefs {
        Ok(_) => Check::new(
            "tracefs",
            Status::Pass,
            format!(
                "{} mounted and readable; tgkill and signal tracepoints present",
                preflight::TRACEFS
            ),
        ),
        Err(err) => Check::new("tracefs", Status::Fail, err.to_string()),
    });
    checks.push(btf());
    checks.push(lockdown());
    checks.push(perf_event(held.contains(&"CAP_SYS_ADMIN")));
    checks.push(namespaces());
    if privileged && tracefs.is_ok() {
        checks.push(bpf());
    }
    match (
        shipped_workload(),
        checks.iter().any(|c| c.status == Status::Fail),
    ) {
        (_, true) => {}
        (Some(workload), false) => checks.push(end_to_end(args, &workload).await?),
        (None, false) => checks.push(
            Check::new(
                "end to end",
                Status::Warn,
                "no goprobe-workload beside the goprobe binary: preemption not proved here",
            )
            .fix("goprobe verify -- YOUR-GO-PROGRAM (one with a CPU-bound goroutine)"),
        ),
    }
    Ok(Report::new("host".into(), checks))
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn kernel() -> Check {
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "?".into());
    if crate::host::kernel_version(&release) >= (5, 15) {
        Check::new("kernel", Status::Pass, format!("Linux {release}"))
    } else {
        Check::new(
            "kernel",
            Status::Fail,
            format!(
                "Linux {release}: goprobe needs 5.15 or newer (bpf_get_attach_cookie, \
                 bpf_task_pt_regs)"
            ),
        )
    }
}

fn btf() -> Check {
    use crate::host::VMLINUX_BTF;
    if Path::new(VMLINUX_BTF).exists() {
        Check::new("btf", Status::Pass, format!("{VMLINUX_BTF} present"))
    } else {
        Check::new("btf", Status::Fail, format!("no {VMLINUX_BTF}"))
            .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF")
    }
}

/// Debian's kernels add a level 3 that refuses `perf_event_open` (classic tracepoints, and
/// uprobes where there is no uprobe_multi) to all but CAP_SYS_ADMIN, CAP_PERFMON or not:
/// seen in Debian 12's 6.1 under `cargo xtask kernels`.
fn perf_event(sys_admin: bool) -> Check {
    let level = preflight::perf_event_paranoid();
    let found = format!(
        "kernel.perf_event_paranoid {}",
        level.map_or("?".to_string(), |l| l.to_string())
    );
    match level {
        Some(3..) if !sys_admin => Check::new(
            "perf_event",
            Status::Warn,
            found
                + ": Debian's level 3 refuses perf_event_open without CAP_SYS_ADMIN, \
                   CAP_PERFMON notwithstanding",
        )
        .fix("run goprobe as root, or set kernel.perf_event_paranoid=2"),
        Some(3..) => Check::new(
            "perf_event",
            Status::Info,
            found + " (Debian's level 3: fine with CAP_SYS_ADMIN, which goprobe has)",
        ),
        _ => Check::new(
            "perf_event",
            Status::Info,
            found + " (does not matter with CAP_PERFMON)",
        ),
    }
}

/// `none [integrity] confidentiality`: the bracketed one is in force.
fn lockdown() -> Check {
    let Some(text) = read_trimmed("/sys/kernel/security/lockdown") else {
        return Check::new("lockdown", Status::Info, "no lockdown LSM");
    };
    let mode = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .unwrap_or("?")
        .to_string();
    if mode == "confidentiality" {
        Check::new(
            "lockdown",
            Status::Fail,
            "lockdown=confidentiality: BPF may not read process memory",
        )
        .fix("boot with lockdown=integrity or none")
    } else {
        Check::new("lockdown", Status::Pass, format!("lockdown {mode}"))
    }
}

/// Whether goprobe sees host pids, and whether it runs in a container.
fn namespaces() -> Check {
    use std::os::unix::fs::MetadataExt as _;
    let host_pids = fs::metadata("/proc/self/ns/pid")
        .map(|meta| meta.ino() == HOST_PID_NAMESPACE)
        .unwrap_or(false);
    let container = Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || read_trimmed("/proc/1/cgroup").is_some_and(|cg| {
            ["docker", "containerd", "kubepods", "crio", "libpod"]
                .iter()
                .any(|name| cg.contains(name))
        });
    let found = format!(
        "{}; {}",
        if container {
            "in a container"
        } else {
            "not in a container"
        },
        if host_pids {
            "sees the host's pids"
        } else {
            "in its own pid namespace"
        }
    );
    if host_pids {
        Check::new("pid namespace", Status::Pass, found)
    } else {
        Check::new("pid namespace", Status::Warn, found)
            .fix("run goprobe in the host's pid namespace (hostPID: true) to trace other processes")
    }
}

/// Loading the object: its maps (both ring buffers) and the uprobe program must pass.
fn bpf() -> Check {
    let facts = match KernelFacts::read(preflight::TRACEFS.as_ref(), false) {
        Ok(facts) => facts,
        Err(err) => return Check::new("bpf", Status::Fail, format!("tracepoint formats: {err}")),
    };
    match crate::loader::probe_uprobe_mode(&facts.settings) {
        Ok(mode) => Check::new(
            "bpf",
            Status::Pass,
            format!("the BPF object loads (ring buffers, verifier); attach by {mode}"),
        ),
        Err(err) => Check::new("bpf", Status::Fail, err.to_string()),
    }
}

/// The shipped workload verified as a target: preemption proved on this host.
async fn end_to_end(args: &VerifyCli, workload: &Path) -> anyhow::Result<Check> {
    let command = [
        workload.display().to_string(),
        "-workers".into(),
        "2".into(),
        "-procs".into(),
        "1".into(),
        "-duration".into(),
        "60s".into(),
    ];
    let report = target::verify(args, target::Target::Command(command.into())).await?;
    let preemption = report
        .checks
        .iter()
        .find(|c| c.name == "preemption")
        .map(|c| c.found.clone())
        .unwrap_or_default();
    let check = Check::new(
        "end to end",
        report.verdict,
        format!("{} ({}): {preemption}", workload.display(), report.subject),
    );
    Ok(match report.cause {
        Some(cause) => check.fix(format!("the workload's verdict names {cause}")),
        None => check,
    })
}
