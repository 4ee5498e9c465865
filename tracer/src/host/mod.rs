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
