//! Facts about this kernel that configure the kernel side: the offset of
//! `task_struct.pid` (from BTF, for the raw `signal_generate` tracepoint) and the field
//! offsets of the classic tracepoints (from tracefs).

pub mod btf;
pub mod tracefs;

use std::path::Path;

use tracer_common::{OFFSET_UNKNOWN, Settings};

/// Where the kernel keeps its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel facts goprobe's kernel side is loaded with.
#[derive(Clone, Debug)]
pub struct KernelFacts {
    /// `task_struct.pid`, or why it is unknown (then the classic tracepoints are used).
    pub task_pid: Result<u32, String>,
    pub settings: Settings,
}

impl KernelFacts {
    /// Reads the facts; `bulk` is the run's choice (records of yields and `execute`).
    pub fn read(tracefs: &Path, bulk: bool) -> Result<KernelFacts, tracefs::FormatError> {
        let task_pid = std::fs::read(VMLINUX_BTF)
            .map_err(|err| format!("{VMLINUX_BTF}: {err}"))
            .and_then(|data| {
                btf::Btf::parse(&data)
                    .and_then(|btf| btf.member_offset("task_struct", "pid"))
                    .map_err(|err| format!("{VMLINUX_BTF}: {err}"))
            });
        let settings = Settings {
            bulk: u32::from(bulk),
            task_pid: *task_pid.as_ref().unwrap_or(&OFFSET_UNKNOWN),
            tgkill_at_generate: 0,
            chain_wake_bytes: 0,
            bulk_wake_bytes: 0,
            tracepoints: tracefs::tracepoint_fields(tracefs)?,
        };
        Ok(KernelFacts { task_pid, settings })
    }

    /// Raw tracepoints for the signal events (else the classic ones).
    pub fn raw_tracepoints(&self) -> bool {
        self.task_pid.is_ok()
    }
}

/// The running kernel's release (`uname -r`), empty when unreadable.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// A kernel release's `(major, minor)`, `(0, 0)` for what does not parse.
pub fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::kernel_version;

    #[test]
    fn kernel_versions_of_debian_and_upstream_releases() {
        assert_eq!(kernel_version("6.1.0-57-amd64"), (6, 1));
        assert_eq!(kernel_version("7.2.13+deb14-amd64"), (7, 2));
        assert_eq!(kernel_version("6.18.0-rc1"), (6, 18));
        assert_eq!(kernel_version("garbage"), (0, 0));
    }
}
