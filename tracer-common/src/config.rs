//! What userspace tells the kernel side before and while it traces: the Go struct
//! layout and addresses of each traced binary, the processes being traced, and the run's
//! settings.
//!
//! Uprobes belong to an inode, so one set of probes serves every process that maps a
//! binary. Each probe hit finds its process in [`crate::names::TRACED_TGIDS`] (untraced
//! processes stop there) and that process's binary in [`crate::names::BINARIES`].

/// A Go runtime struct field the kernel side reads: the index of its offset in
/// [`BinaryConfig::offsets`]. The one list of these fields; the DWARF reader, the
/// per-release table and the kernel side all index by it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `g.goid` (uint64).
    GGoid = 0,
    /// `g.atomicstatus` (`atomic.Uint32`; the wrapper's offset, its value is at +0).
    GAtomicstatus,
    /// `g.preempt` (bool).
    GPreempt,
    /// `g.preemptStop` (bool).
    GPreemptStop,
    /// `g.sched.pc` (gobuf.pc, uintptr), from the start of `g`.
    GSchedPc,
    /// `m.procid` (uint64, the thread id on Linux, in the process's pid namespace).
    MProcid,
    /// `m.id` (int64).
    MId,
    /// `m.curg` (*g).
    MCurg,
    /// `m.p` (puintptr).
    MP,
    /// `p.id` (int32).
    PId,
    /// `p.m` (muintptr).
    PM,
    /// `p.schedtick` (uint32).
    PSchedtick,
    /// `p.sysmontick.schedwhen` (int64, nanotime), from the start of `p`.
    PSysmontickSchedwhen,
}

/// Number of [`Field`]s: the length of [`BinaryConfig::offsets`].
pub const FIELD_COUNT: usize = 13;

impl Field {
    /// Every field, in index order.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::GGoid,
        Field::GAtomicstatus,
        Field::GPreempt,
        Field::GPreemptStop,
        Field::GSchedPc,
        Field::MProcid,
        Field::MId,
        Field::MCurg,
        Field::MP,
        Field::PId,
        Field::PM,
        Field::PSchedtick,
        Field::PSysmontickSchedwhen,
    ];

    /// Stable key (`g_goid`, ...): the name in the offsets table and in `--list-probes`.
    pub const fn key(self) -> &'static str {
        match self {
            Field::GGoid => "g_goid",
            Field::GAtomicstatus => "g_atomicstatus",
            Field::GPreempt => "g_preempt",
            Field::GPreemptStop => "g_preempt_stop",
            Field::GSchedPc => "g_sched_pc",
            Field::MProcid => "m_procid",
            Field::MId => "m_id",
            Field::MCurg => "m_curg",
            Field::MP => "m_p",
            Field::PId => "p_id",
            Field::PM => "p_m",
            Field::PSchedtick => "p_schedtick",
            Field::PSysmontickSchedwhen => "p_sysmontick_schedwhen",
        }
    }

    /// Where the offset is read from: the Go type and the member path inside it.
    pub const fn source(self) -> (&'static str, &'static str) {
        match self {
            Field::GGoid => ("runtime.g", "goid"),
            Field::GAtomicstatus => ("runtime.g", "atomicstatus"),
            Field::GPreempt => ("runtime.g", "preempt"),
            Field::GPreemptStop => ("runtime.g", "preemptStop"),
            Field::GSchedPc => ("runtime.g", "sched.pc"),
            Field::MProcid => ("runtime.m", "procid"),
            Field::MId => ("runtime.m", "id"),
            Field::MCurg => ("runtime.m", "curg"),
            Field::MP => ("runtime.m", "p"),
            Field::PId => ("runtime.p", "id"),
            Field::PM => ("runtime.p", "m"),
            Field::PSchedtick => ("runtime.p", "schedtick"),
            Field::PSysmontickSchedwhen => ("runtime.p", "sysmontick.schedwhen"),
        }
    }
}

/// Offset value meaning "not known for this binary: don't read".
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

/// Byte offsets of every [`Field`], indexed by it.
pub type Offsets = [u32; FIELD_COUNT];

/// One traced binary, in the [`crate::names::BINARIES`] array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryConfig {
    /// Struct offsets, indexed by [`Field`]; [`OFFSET_UNKNOWN`] = skip that read.
    pub offsets: Offsets,
    /// 1 if `goschedImpl` takes `preempted bool` in RBX (Go 1.22+). Only read where the
    /// probe sits at `goschedImpl`'s entry (no call sites found): there a `preempted`
    /// false is a voluntary yield.
    pub gosched_preempted_arg: u32,
}

impl BinaryConfig {
    /// Nothing known: no Go memory is read, records carry only registers.
    pub const UNKNOWN: BinaryConfig = BinaryConfig {
        offsets: [OFFSET_UNKNOWN; FIELD_COUNT],
        gosched_preempted_arg: 0,
    };

    pub const fn offset(&self, field: Field) -> u32 {
        self.offsets[field as usize]
    }
}

/// Most binaries traced at once (the length of [`crate::names::BINARIES`]).
pub const MAX_BINARIES: u32 = 256;
/// Most processes traced at once (the capacity of [`crate::names::TRACED_TGIDS`]).
pub const MAX_PROCESSES: u32 = 4096;

/// A traced process: the value of [`crate::names::TRACED_TGIDS`] for its host tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracedProcess {
    /// Index of its binary in [`crate::names::BINARIES`].
    pub binary: u32,
    /// Index of its voluntary-yield counter in [`crate::names::YIELDS`] (a per-CPU array:
    /// a yield costs an array index there, not a second hash lookup).
    pub counter: u32,
}

/// Settings of the whole run, set as the [`crate::names::SETTINGS`] global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// 1: send the high-rate records (voluntary yields, `execute`) to the
    /// [`crate::names::BULK`] ring buffer (`--yields`, `--slices`); 0: yields are only
    /// counted (in [`crate::names::YIELDS`]).
    pub bulk: u32,
    /// Offset of `task_struct.pid` in this kernel, from its BTF: the raw `signal_generate`
    /// tracepoint reads the target thread from its `task` argument.
    pub task_pid: u32,
    /// 1: the `signal_generate` programs also record the [`crate::EventKind::Tgkill`] of a
    /// SIGURG whose sender is inside `tgkill` (`--syscall-hooks none`, the default, or
    /// `exit`), so no `sys_enter` hook is needed; 0: a `sys_enter` hook records it.
    pub tgkill_at_generate: u32,
    /// Unread bytes in [`crate::names::EVENTS`] / [`crate::names::BULK`] at which a record
    /// wakes the reader (a quarter of each ring; set by the loader from the ring sizes).
    /// Below, records are submitted without a wake-up and the reader polls on a timer.
    pub chain_wake_bytes: u32,
    pub bulk_wake_bytes: u32,
    /// Field offsets of the classic tracepoints, from their tracefs `format` files.
    pub tracepoints: TracepointFields,
}

/// Byte offsets of the tracepoint fields the kernel side reads, in the record the
/// tracepoint passes (`/sys/kernel/tracing/events/*/*/format`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TracepointFields {
    /// `syscalls/sys_enter_tgkill`: `tgid`, `pid`, `sig`.
    pub tgkill_tgid: u32,
    pub tgkill_pid: u32,
    pub tgkill_sig: u32,
    /// `syscalls/sys_exit_tgkill`: `ret`.
    pub tgkill_ret: u32,
    /// `signal/signal_generate`: `sig`, `code`, `pid`, `group`, `result`.
    pub generate_sig: u32,
    pub generate_code: u32,
    pub generate_pid: u32,
    pub generate_group: u32,
    pub generate_result: u32,
    /// `signal/signal_deliver`: `sig`, `code`.
    pub deliver_sig: u32,
    pub deliver_code: u32,
}

const _: () = {
    assert!(core::mem::size_of::<BinaryConfig>() == 56);
    assert!(core::mem::size_of::<TracedProcess>() == 8);
    assert!(core::mem::size_of::<Settings>() == 64);
    assert!(core::mem::size_of::<TracepointFields>() == 44);
    assert!(Field::ALL.len() == FIELD_COUNT);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: `#[repr(C)]`, integer-only, explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for BinaryConfig {}
    unsafe impl aya::Pod for TracedProcess {}
    unsafe impl aya::Pod for Settings {}
    unsafe impl aya::Pod for TracepointFields {}
}
