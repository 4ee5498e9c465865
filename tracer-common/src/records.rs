//! Wire records (kernel → user) and the configuration global (user → kernel).

/// What a record is. Stored as `u32` in [`EventHeader::kind`]; the user side converts with
/// `EventKind::try_from`, so an unknown value is an error, not undefined behaviour. For
/// uprobes the kind is also the attach cookie that tells the one dispatching program which
/// runtime function it is in.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "user",
    derive(num_enum::TryFromPrimitive, strum::IntoStaticStr),
    strum(serialize_all = "snake_case")
)]
pub enum EventKind {
    /// `runtime.retake` entered: one sysmon tick. Record: [`SysmonTick`].
    SysmonTick = 1,
    /// `runtime.preemptone` entered. Record: [`PreemptRequest`].
    #[cfg_attr(feature = "user", strum(serialize = "preempt_request"))]
    PreemptOne = 2,
    /// `runtime.preemptM` entered (only where the symbol exists). Record: [`SignalM`].
    PreemptM = 3,
    /// `runtime.signalM(mp, SIGURG)` entered. Record: [`SignalM`].
    SignalM = 4,
    /// `tgkill(tgid, tid, SIGURG)` entered. Record: [`Tgkill`].
    Tgkill = 5,
    /// The kernel generated a SIGURG for a thread. Record: [`SignalGenerate`].
    SignalGenerate = 6,
    /// The kernel is delivering a SIGURG to the current thread. Record: [`SignalDeliver`].
    SignalDeliver = 7,
    /// `runtime.doSigPreempt` entered: the handler's decision. Record: [`GoroutineHook`].
    DoSigPreempt = 8,
    /// `runtime.asyncPreempt2` entered: asynchronous preemption. Record: [`GoroutineHook`].
    #[cfg_attr(feature = "user", strum(serialize = "async_preempt"))]
    AsyncPreempt2 = 9,
    /// `runtime.goschedImpl` called on a preemption path (from `newstack`, `gopreempt_m`
    /// or `asyncPreempt2`): a preempted goroutine is put back on a run queue. The probes
    /// sit on those call sites, so voluntary yields never reach them. Record:
    /// [`GoroutineHook`].
    #[cfg_attr(feature = "user", strum(serialize = "gosched"))]
    GoschedImpl = 10,
    /// `runtime.goschedImpl` called from `gosched_m` or `goschedguarded_m`: a voluntary
    /// yield (`runtime.Gosched`). Attached only for `--yields` (counted in the kernel) and
    /// `--slices` (also a record on the bulk ring). Record: [`GoroutineHook`].
    Yield = 11,
    /// `runtime.preemptPark` entered. Record: [`GoroutineHook`].
    PreemptPark = 12,
    /// `runtime.suspendG` entered: the GC asks a goroutine to stop for a stack scan.
    /// Record: [`GoroutineHook`].
    SuspendG = 13,
    /// `runtime.execute` entered: a goroutine starts running on this thread (`--slices`
    /// only: it fires on every goroutine switch; bulk ring). Record: [`GoroutineHook`].
    Execute = 14,
    /// `tgkill(tgid, tid, SIGURG)` returned an error. Submitted from `sys_exit_tgkill`,
    /// which fires even when a seccomp filter refused the call (`sys_enter_tgkill` does
    /// not). Record: [`TgkillFailed`].
    TgkillFailed = 15,
    /// A process called `execve` (tracepoint `sched/sched_process_exec`), any process on
    /// the host: how `--all` finds new Go programs. Attached only for `--all`. Record:
    /// [`ProcessExec`].
    ProcessExec = 16,
}

/// One more than the largest [`EventKind`] value: the length of per-kind counter arrays.
pub const KIND_COUNT: u32 = 17;

impl EventKind {
    pub const ALL: [EventKind; 16] = [
        EventKind::SysmonTick,
        EventKind::PreemptOne,
        EventKind::PreemptM,
        EventKind::SignalM,
        EventKind::Tgkill,
        EventKind::SignalGenerate,
        EventKind::SignalDeliver,
        EventKind::DoSigPreempt,
        EventKind::AsyncPreempt2,
        EventKind::GoschedImpl,
        EventKind::Yield,
        EventKind::PreemptPark,
        EventKind::SuspendG,
        EventKind::Execute,
        EventKind::TgkillFailed,
        EventKind::ProcessExec,
    ];
}

/// The two ring buffers, by how often they are written.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// [`crate::names::EVENTS`]: the preemption chain (requests, signals, handler,
    /// preemptions): rare, and never crowded out by the bulk.
    Chain = 0,
    /// [`crate::names::BULK`]: voluntary yields and `execute` (`--slices`): up to
    /// millions a second.
    Bulk = 1,
}

impl EventKind {
    /// The ring a record of this kind goes to: the kernel side writes it there, and
    /// userspace tells chain losses (which mark attempts) from bulk ones by it.
    pub const fn stream(self) -> Stream {
        match self {
            EventKind::Execute | EventKind::Yield => Stream::Bulk,
            _ => Stream::Chain,
        }
    }
}

/// Number of [`Stream`]s: the length of [`crate::names::SEQUENCE`].
pub const STREAM_COUNT: u32 = 2;

/// Linux's SIGURG on x86_64, the signal the Go runtime uses for preemption (`sigPreempt`).
pub const SIGURG: u32 = 23;

/// Goroutine id when it could not be read (offset unknown or the read failed).
pub const GOID_UNKNOWN: u64 = u64::MAX;

/// Fixed header at the start of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u32,
    /// Kernel thread id of the current task (`bpf_get_current_pid_tgid` low half).
    pub tid: u32,
    /// Process id (thread-group id) of the current task.
    pub tgid: u32,
    /// CPU the program ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns`: CLOCK_MONOTONIC nanoseconds, the clock of Go's `nanotime`.
    pub ts_ns: u64,
    /// This CPU's count of records it tried to put in this record's [`Stream`], this one
    /// included. Consecutive on each CPU unless records were lost in between: a gap tells
    /// userspace when a loss happened, so it can mark the attempts it touched.
    pub seq: u64,
}

/// [`EventKind::SysmonTick`]: `runtime.retake(now int64) uint32`; the current thread is
/// sysmon's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysmonTick {
    pub header: EventHeader,
    /// The `now` argument (RAX): sysmon's `nanotime()` for this tick, CLOCK_MONOTONIC ns.
    pub now_ns: i64,
}

/// [`EventKind::PreemptOne`]: `runtime.preemptone(pp *p) bool`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptRequest {
    pub header: EventHeader,
    /// The `pp` argument (RAX).
    pub p_addr: u64,
    /// Return address at entry (`[RSP]`): who asked — `retake` (sysmon) or `preemptall`
    /// (stop-the-world). Symbolised in userspace.
    pub caller_pc: u64,
    /// `pp.sysmontick.schedwhen`: when sysmon first saw the P's current `schedtick`
    /// (CLOCK_MONOTONIC ns), so `now - schedwhen` bounds how long the G has run. 0 if
    /// unknown.
    pub schedwhen_ns: i64,
    /// `pp.m.procid`: thread id of the M running the P (0 if none/unknown), in the
    /// target's pid namespace (userspace maps it to the host's).
    pub m_tid: u64,
    /// `pp.m.curg.goid`: the goroutine asked to stop ([`GOID_UNKNOWN`] if not read).
    pub goid: u64,
    /// `pp.id` (-1 if unknown).
    pub p_id: i32,
    /// `pp.schedtick`: the P's scheduling counter.
    pub schedtick: u32,
}

/// [`EventKind::SignalM`] and [`EventKind::PreemptM`]: `runtime.signalM(mp *m, sig int)`
/// or `runtime.preemptM(mp *m)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalM {
    pub header: EventHeader,
    /// The `mp` argument (RAX).
    pub m_addr: u64,
    /// Return address at entry (`[RSP]`): `preemptone` (sysmon, STW) or `suspendG` (GC).
    pub caller_pc: u64,
    /// `mp.procid`: thread id the signal is aimed at (0 if unknown), in the target's pid
    /// namespace.
    pub m_tid: u64,
    /// `mp.id` (-1 if unknown).
    pub m_id: i64,
    /// `mp.curg.goid`: the goroutine running on that M ([`GOID_UNKNOWN`] if none/unread).
    pub goid: u64,
    /// `mp.p.id`: the P the M holds (-1 if none/unknown).
    pub p_id: i32,
    /// The `sig` argument (RBX); always SIGURG for `signalM` (filtered in the kernel), 0
    /// for `preemptM`.
    pub sig: u32,
}

/// [`EventKind::Tgkill`]: tracepoint `syscalls/sys_enter_tgkill` with sig == SIGURG. The
/// arguments are ids in the sender's pid namespace; the header's are the host's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tgkill {
    pub header: EventHeader,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub sig: u32,
    pub _pad: u32,
}

/// [`EventKind::TgkillFailed`]: tracepoint `syscalls/sys_exit_tgkill` with a negative
/// return, SIGURG (or a signal that could not be read: `sig` 0). The arguments are read
/// from the sender's saved user registers, since the exit tracepoint carries only the
/// return value; ids are in the sender's pid namespace, as for [`Tgkill`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TgkillFailed {
    pub header: EventHeader,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub sig: u32,
    /// The errno (positive): EPERM from a seccomp filter, ESRCH for a thread that exited.
    pub errno: u32,
}

/// [`EventKind::SignalGenerate`]: tracepoint `signal/signal_generate`, SIGURG. The current
/// task is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalGenerate {
    pub header: EventHeader,
    /// Thread the signal is for, host tid (the tracepoint's `pid`, `task->pid`).
    pub target_tid: u32,
    pub sig: u32,
    /// `si_code` (SI_TKILL = -6 for tgkill).
    pub code: i32,
    /// 1 if sent to the whole thread group.
    pub group: u32,
    /// `TRACE_SIGNAL_*`: 0 delivered (queued), 1 ignored, 2 already pending (coalesced),
    /// 3 overflow, 4 lose info. See [`signal_result`].
    pub result: u32,
    pub _pad: u32,
}

/// Values of [`SignalGenerate::result`] (`enum trace_signal_result` in the kernel).
pub mod signal_result {
    pub const DELIVERED: u32 = 0;
    pub const IGNORED: u32 = 1;
    pub const ALREADY_PENDING: u32 = 2;
    pub const OVERFLOW_FAIL: u32 = 3;
    pub const LOSE_INFO: u32 = 4;
}

/// [`EventKind::SignalDeliver`]: tracepoint `signal/signal_deliver`, SIGURG, on a traced
/// thread (the current task receives it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalDeliver {
    pub header: EventHeader,
    /// User-mode instruction pointer of the thread when the signal arrived (from
    /// `bpf_task_pt_regs`), 0 if unread.
    pub user_pc: u64,
    /// User-mode stack pointer at the same moment.
    pub user_sp: u64,
    pub sig: u32,
    pub code: i32,
}

/// [`EventKind::ProcessExec`]: the header's tgid is the process that exec'd (its new
/// program already mapped).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessExec {
    pub header: EventHeader,
}

/// Flags in [`GoroutineHook::flags`].
pub mod goroutine_flags {
    /// `goschedImpl` is on a preemption path: called from one (its probe sits on the
    /// call), or its `preempted` argument (RBX, Go 1.22+) was true.
    pub const PREEMPTED: u32 = 1 << 0;
    /// [`PREEMPTED`] is meaningful.
    pub const PREEMPTED_KNOWN: u32 = 1 << 1;
    /// `gp.preempt` was set (the runtime wants this goroutine to stop).
    pub const G_PREEMPT: u32 = 1 << 2;
    /// `gp.preemptStop` was set (stop = park for the GC / a suspendG, not reschedule).
    pub const G_PREEMPT_STOP: u32 = 1 << 3;
    /// `gp.preempt`/`gp.preemptStop` were read (offsets known and readable).
    pub const G_FLAGS_READ: u32 = 1 << 4;
}

/// [`EventKind::DoSigPreempt`], [`EventKind::AsyncPreempt2`], [`EventKind::GoschedImpl`],
/// [`EventKind::Yield`], [`EventKind::PreemptPark`], [`EventKind::SuspendG`],
/// [`EventKind::Execute`]: a runtime function that acts on one goroutine.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoroutineHook {
    pub header: EventHeader,
    /// The goroutine's `*g`: the `gp` argument (RAX), or R14 in `asyncPreempt2`.
    pub g_addr: u64,
    /// `g.goid` ([`GOID_UNKNOWN`] if not read).
    pub goid: u64,
    /// `doSigPreempt`: the interrupted PC from the signal context. `asyncPreempt2`: the PC
    /// the goroutine resumes at (return address of `asyncPreempt`). `goschedImpl`,
    /// `preemptPark`: `g.sched.pc`, which `morestack` set to the failing function's
    /// prologue on the stack-check path. Else 0.
    pub pc: u64,
    /// `g.atomicstatus` (`_Grunning` = 2, ...; u32::MAX if unread).
    pub g_status: u32,
    /// [`goroutine_flags`] bits.
    pub flags: u32,
}

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 32);
    assert!(core::mem::size_of::<SysmonTick>() == 40);
    assert!(core::mem::size_of::<PreemptRequest>() == 80);
    assert!(core::mem::size_of::<SignalM>() == 80);
    assert!(core::mem::size_of::<Tgkill>() == 48);
    assert!(core::mem::size_of::<TgkillFailed>() == 48);
    assert!(core::mem::size_of::<SignalGenerate>() == 56);
    assert!(core::mem::size_of::<SignalDeliver>() == 56);
    assert!(core::mem::size_of::<GoroutineHook>() == 64);
    assert!(core::mem::size_of::<ProcessExec>() == 32);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all are `#[repr(C)]`, integer-only, with explicit padding fields, so every
    // bit pattern is a valid value and there are no implicit padding bytes.
    unsafe impl aya::Pod for EventHeader {}
    unsafe impl aya::Pod for SysmonTick {}
    unsafe impl aya::Pod for PreemptRequest {}
    unsafe impl aya::Pod for SignalM {}
    unsafe impl aya::Pod for Tgkill {}
    unsafe impl aya::Pod for TgkillFailed {}
    unsafe impl aya::Pod for SignalGenerate {}
    unsafe impl aya::Pod for SignalDeliver {}
    unsafe impl aya::Pod for GoroutineHook {}
    unsafe impl aya::Pod for ProcessExec {}
}
