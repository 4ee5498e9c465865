//! Host checks before anything is loaded: privileges, uprobe support, tracefs (mounted by
//! goprobe itself when missing). Each failure names the fix.

use std::{fs, io, path::Path};

use thiserror::Error;

pub const TRACEFS: &str = "/sys/kernel/tracing";
/// The minimal set without root, measured on 6.18 (tests/tests/privileges.rs): BPF maps
/// and programs, perf-type links, tracefs (mode 0700) for event ids and formats, and
/// `/proc/PID/exe` of another user's process. CAP_SYS_ADMIN only to mount tracefs, and on
/// kernels with Debian's `perf_event_paranoid` level 3 (where it also stands in for the
/// first two).
pub const CAPABILITIES: &str = "CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH (plus \
                                CAP_SYS_PTRACE for another user's process)";
const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe/type";

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error(
        "goprobe needs root, or the capabilities {CAPABILITIES} (missing: {missing}); run \
         it with sudo"
    )]
    NotPrivileged { missing: String },
    #[error(
        "tracefs at {TRACEFS} is not readable ({source}): it is root's and mode 0700, so \
         without root goprobe needs CAP_DAC_READ_SEARCH"
    )]
    TracefsUnreadable {
        #[source]
        source: io::Error,
    },
    #[error(
        "this kernel has no uprobe support ({UPROBE_PMU} is missing): goprobe needs a kernel \
         built with CONFIG_UPROBES and CONFIG_UPROBE_EVENTS"
    )]
    NoUprobes,
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed ({source}); mount it with \
         `mount -t tracefs nodev {TRACEFS}` (or give goprobe CAP_SYS_ADMIN)"
    )]
    TracefsMount {
        #[source]
        source: io::Error,
    },
    #[error(
        "tracefs at {TRACEFS} has no events/{what} (kernel built without \
         CONFIG_FTRACE_SYSCALLS or signal tracepoints?)"
    )]
    MissingTracepoint { what: &'static str },
}

// Capability bit numbers (linux/capability.h).
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Every capability goprobe can use, and what for; the first two are checked before
/// anything is loaded, the others are named where their absence fails.
pub const USED_CAPABILITIES: [(u32, &str, &str); 5] = [
    (CAP_BPF, "CAP_BPF", "always"),
    (CAP_PERFMON, "CAP_PERFMON", "always"),
    (
        CAP_DAC_READ_SEARCH,
        "CAP_DAC_READ_SEARCH",
        "unless tracefs is readable",
    ),
    (
        CAP_SYS_PTRACE,
        "CAP_SYS_PTRACE",
        "for another user's process",
    ),
    (
        CAP_SYS_ADMIN,
        "CAP_SYS_ADMIN",
        "to mount tracefs, and under perf_event_paranoid 3",
    ),
];

/// The capabilities of [`USED_CAPABILITIES`] this process holds (effective) and those it
/// lacks, each with what it is for.
pub fn capability_report() -> (Vec<&'static str>, Vec<(&'static str, &'static str)>) {
    let effective = effective_capabilities();
    let (held, lacking): (Vec<_>, Vec<_>) = USED_CAPABILITIES
        .iter()
        .partition(|(bit, _, _)| effective & (1 << bit) != 0);
    (
        held.iter().map(|(_, name, _)| *name).collect(),
        lacking.iter().map(|(_, name, why)| (*name, *why)).collect(),
    )
}

/// Effective capabilities from `/proc/self/status`.
fn effective_capabilities() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| parse_cap_eff(&status))
        .unwrap_or(0)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

fn missing_capabilities(cap_eff: u64) -> Vec<&'static str> {
    // The kernel's bpf_capable() and perfmon_capable() also accept CAP_SYS_ADMIN (the
    // older, broader grant), which Debian's perf_event_paranoid=3 requires anyway.
    if cap_eff & (1 << CAP_SYS_ADMIN) != 0 {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(bit, _)| cap_eff & (1 << bit) == 0)
        .map(|(_, name)| name)
        .collect()
}

pub fn check_privileges() -> Result<(), PreflightError> {
    let missing = missing_capabilities(effective_capabilities());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::NotPrivileged {
            missing: missing.join(", "),
        })
    }
}

/// `kernel.perf_event_paranoid`, when readable.
pub fn perf_event_paranoid() -> Option<i32> {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this process holds CAP_SYS_ADMIN (effective).
pub fn has_sys_admin() -> bool {
    effective_capabilities() & (1 << CAP_SYS_ADMIN) != 0
}

/// What to add to an error whose cause is a refused `perf_event_open` (or missing
/// privileges) on a kernel with Debian's `perf_event_paranoid` level 3, which refuses it
/// to all but CAP_SYS_ADMIN (CAP_PERFMON notwithstanding): the capability set that works
/// elsewhere fails here.
pub fn perf_event_refusal_hint(error: &str) -> Option<String> {
    let refused = error.contains("os error 13")
        || error.contains("os error 1)")
        || error.contains("goprobe needs root, or the capabilities");
    let level = perf_event_paranoid()?;
    (refused && level >= 3 && !has_sys_admin()).then(|| {
        format!(
            "kernel.perf_event_paranoid is {level} (Debian's own level): perf_event_open \
             needs CAP_SYS_ADMIN there, whatever else is held; run goprobe as root, add \
             CAP_SYS_ADMIN, or set kernel.perf_event_paranoid=2"
        )
    })
}

pub fn check_uprobes() -> Result<(), PreflightError> {
    if Path::new(UPROBE_PMU).exists() {
        Ok(())
    } else {
        Err(PreflightError::NoUprobes)
    }
}

/// Makes sure tracefs is usable, mounting it if needed. Returns true if goprobe mounted it.
pub fn ensure_tracefs() -> Result<bool, PreflightError> {
    let events = Path::new(TRACEFS).join("events");
    let mut mounted = false;
    match fs::metadata(&events) {
        Ok(_) => {}
        Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Err(PreflightError::TracefsUnreadable { source });
        }
        Err(_) => {
            mount_tracefs().map_err(|source| PreflightError::TracefsMount { source })?;
            mounted = true;
        }
    }
    for (dir, what) in [
        ("syscalls/sys_enter_tgkill", "syscalls/sys_enter_tgkill"),
        ("signal/signal_deliver", "signal/signal_deliver"),
        ("signal/signal_generate", "signal/signal_generate"),
    ] {
        if !events.join(dir).exists() {
            return Err(PreflightError::MissingTracepoint { what });
        }
    }
    Ok(mounted)
}

fn mount_tracefs() -> io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL in constant");
    let (source, target, fstype) = (c("nodev"), c(TRACEFS), c("tracefs"));
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capabilities() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert!(missing_capabilities(0x1ff_ffff_ffff).is_empty());
        assert_eq!(missing_capabilities(0), ["CAP_BPF", "CAP_PERFMON"]);
        // CAP_SYS_ADMIN stands in for both, as in the kernel.
        assert!(missing_capabilities(1 << CAP_SYS_ADMIN).is_empty());
        assert_eq!(missing_capabilities(1 << CAP_BPF), ["CAP_PERFMON"]);
    }
}
