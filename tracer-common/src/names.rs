//! Names of maps, programs and globals, used verbatim by both sides so a typo is a
//! compile error on one side or a load error ("symbol not found") on the other, never a
//! silently unused map.

/// Ring buffer of the preemption chain's records ([`crate::Stream::Chain`]).
pub const EVENTS: &str = "EVENTS";
/// Ring buffer of the high-rate records ([`crate::Stream::Bulk`]): voluntary yields and
/// `execute`, only with `--slices`. A flood here never takes room from [`EVENTS`].
pub const BULK: &str = "BULK";
/// `HashMap<u32 host tgid, TracedProcess>`: the processes whose events are kept, each
/// with its binary and its kernel-side counters.
pub const TRACED_TGIDS: &str = "TRACED_TGIDS";
/// `PerCpuArray<u64>` indexed by each traced process's `counter`: voluntary yields
/// (`runtime.Gosched`) per process, counted in the kernel instead of sent one record each
/// (a Gosched-heavy program makes millions a second). Only where yields are observed
/// (`--yields`, `--slices`).
pub const YIELDS: &str = "YIELDS";
/// `Array<BinaryConfig>`: struct offsets and addresses of each traced binary.
pub const BINARIES: &str = "BINARIES";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: records submitted.
pub const SUBMITTED: &str = "SUBMITTED";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: records lost because the ring
/// buffer was full.
pub const LOST: &str = "LOST";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: reads of Go memory that failed
/// (the record is still sent, with the affected fields zeroed).
pub const READ_ERRORS: &str = "READ_ERRORS";
/// `PerCpuArray<u64>` indexed by [`crate::Stream`]: the per-CPU record sequence
/// ([`crate::EventHeader::seq`]).
pub const SEQUENCE: &str = "SEQUENCE";

/// Global [`crate::Settings`] of the run.
pub const SETTINGS: &str = "SETTINGS";

/// Program names: each is named after what it hooks.
pub mod programs {
    /// uprobe on every hooked Go runtime function of a binary; the attach cookie (an
    /// [`crate::EventKind`]) says which. One program, so that on kernels with
    /// uprobe_multi (6.6+) a whole binary is one link.
    pub const GO_RUNTIME: &str = "go_runtime";
    /// tracepoint `syscalls/sys_enter_tgkill`, SIGURG only.
    pub const TP_SYS_ENTER_TGKILL: &str = "tp_sys_enter_tgkill";
    /// tracepoint `syscalls/sys_exit_tgkill`: failed calls from traced processes.
    pub const TP_SYS_EXIT_TGKILL: &str = "tp_sys_exit_tgkill";
    /// raw tracepoint `sys_enter` (every syscall), `tgkill(SIGURG)` only (BTF kernels).
    pub const RAW_SYS_ENTER: &str = "raw_sys_enter";
    /// raw tracepoint `sys_exit` (every syscall): failed `tgkill`s of traced processes.
    pub const RAW_SYS_EXIT: &str = "raw_sys_exit";
    /// raw tracepoint `signal_generate`, SIGURG only (BTF kernels: cheap to detach).
    pub const RAW_SIGNAL_GENERATE: &str = "raw_signal_generate";
    /// raw tracepoint `signal_deliver`, SIGURG only.
    pub const RAW_SIGNAL_DELIVER: &str = "raw_signal_deliver";
    /// tracepoint `sched/sched_process_exec`: every exec on the host (`--all` only).
    pub const TP_SCHED_PROCESS_EXEC: &str = "tp_sched_process_exec";
    /// tracepoint `signal/signal_generate` (the fallback without BTF).
    pub const TP_SIGNAL_GENERATE: &str = "tp_signal_generate";
    /// tracepoint `signal/signal_deliver` (the fallback without BTF).
    pub const TP_SIGNAL_DELIVER: &str = "tp_signal_deliver";
}
