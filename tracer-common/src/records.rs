//! Wire records (kernel → user) and the configuration global (user → kernel).

/// What a record is. Stored as `u32` in [`EventHeader::kind`]; the user side converts with
/// `EventKind::try_from`, so an unknown value is an error, not undefined behaviour.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `runtime.retake` entered: one sysmon tick. Record: [`SysmonTick`].
    SysmonTick = 1,
    /// `runtime.preemptone` entered. Record: [`PreemptRequest`].
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
    AsyncPreempt2 = 9,
    /// `runtime.goschedImpl` entered. Record: [`GoroutineHook`].
    GoschedImpl = 10,
    /// `runtime.gopreempt_m` entered (Go 1.21 only: a real function there). Record:
    /// [`GoroutineHook`].
    GopreemptM = 11,
    /// `runtime.preemptPark` entered. Record: [`GoroutineHook`].
    PreemptPark = 12,
    /// `runtime.suspendG` entered: the GC asks a goroutine to stop for a stack scan.
    /// Record: [`GoroutineHook`].
    SuspendG = 13,
    /// `runtime.execute` entered: a goroutine starts running on this thread (opt-in: it
    /// fires on every goroutine switch). Record: [`GoroutineHook`].
    Execute = 14,
}

/// One more than the largest [`EventKind`] value: the length of per-kind counter arrays.
pub const KIND_COUNT: u32 = 15;

impl EventKind {
    pub const ALL: [EventKind; 14] = [
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
        EventKind::GopreemptM,
        EventKind::PreemptPark,
        EventKind::SuspendG,
        EventKind::Execute,
    ];
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, u32> {
        EventKind::ALL
            .into_iter()
            .find(|kind| *kind as u32 == value)
            .ok_or(value)
    }
}

/// Linux's SIGURG on x86_64, the signal the Go runtime uses for preemption (`sigPreempt`).
pub const SIGURG: u32 = 23;

/// Goroutine id when it could not be read (offset unknown or the read failed).
pub const GOID_UNKNOWN: u64 = u64::MAX;

/// [`ProbeConfig`] offset value meaning "not known for this binary: don't read".
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

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
    /// `pp.m.procid`: kernel thread id of the M running the P (0 if none/unknown).
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
    /// `mp.procid`: kernel thread id the signal is aimed at (0 if unknown).
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

/// [`EventKind::Tgkill`]: tracepoint `syscalls/sys_enter_tgkill` with sig == SIGURG.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tgkill {
    pub header: EventHeader,
    pub target_tgid: u32,
    pub target_tid: u32,
    pub sig: u32,
    pub _pad: u32,
}

/// [`EventKind::SignalGenerate`]: tracepoint `signal/signal_generate`, SIGURG. The current
/// task is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalGenerate {
    pub header: EventHeader,
    /// Thread the signal is for (the tracepoint's `pid`).
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

/// Flags in [`GoroutineHook::flags`].
pub mod goroutine_flags {
    /// `goschedImpl`'s `preempted` argument (RBX, Go 1.22+) was true.
    pub const PREEMPTED: u32 = 1 << 0;
    /// The `preempted` argument exists in this Go release, so [`PREEMPTED`] is meaningful.
    pub const PREEMPTED_KNOWN: u32 = 1 << 1;
    /// `gp.preempt` was set (the runtime wants this goroutine to stop).
    pub const G_PREEMPT: u32 = 1 << 2;
    /// `gp.preemptStop` was set (stop = park for the GC / a suspendG, not reschedule).
    pub const G_PREEMPT_STOP: u32 = 1 << 3;
    /// `gp.preempt`/`gp.preemptStop` were read (offsets known and readable).
    pub const G_FLAGS_READ: u32 = 1 << 4;
}

/// [`EventKind::DoSigPreempt`], [`EventKind::AsyncPreempt2`], [`EventKind::GoschedImpl`],
/// [`EventKind::GopreemptM`], [`EventKind::PreemptPark`], [`EventKind::SuspendG`],
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
    /// `gopreempt_m`, `preemptPark`: `g.sched.pc`, which `morestack` set to the failing
    /// function's prologue on the stack-check path. Else 0.
    pub pc: u64,
    /// `g.atomicstatus` (`_Grunning` = 2, ...; u32::MAX if unread).
    pub g_status: u32,
    /// [`goroutine_flags`] bits.
    pub flags: u32,
}

/// Struct offsets and per-release facts for the traced binary, set as a global before
/// load. An offset of [`OFFSET_UNKNOWN`] makes the kernel side skip that read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub g_goid: u32,
    pub g_atomicstatus: u32,
    pub g_preempt: u32,
    pub g_preempt_stop: u32,
    pub m_procid: u32,
    pub m_id: u32,
    pub m_curg: u32,
    pub m_p: u32,
    pub p_id: u32,
    pub p_m: u32,
    pub p_schedtick: u32,
    /// Offset of `p.sysmontick.schedwhen` from the start of `p`.
    pub p_sysmontick_schedwhen: u32,
    /// Offset of `g.sched.pc`.
    pub g_sched_pc: u32,
    /// 1 if `goschedImpl` takes `preempted bool` in RBX (Go 1.22+).
    pub gosched_has_preempted_arg: u32,
}

impl ProbeConfig {
    /// Nothing known: the kernel side reads no Go memory, records carry only registers.
    pub const UNKNOWN: ProbeConfig = ProbeConfig {
        g_goid: OFFSET_UNKNOWN,
        g_atomicstatus: OFFSET_UNKNOWN,
        g_preempt: OFFSET_UNKNOWN,
        g_preempt_stop: OFFSET_UNKNOWN,
        m_procid: OFFSET_UNKNOWN,
        m_id: OFFSET_UNKNOWN,
        m_curg: OFFSET_UNKNOWN,
        m_p: OFFSET_UNKNOWN,
        p_id: OFFSET_UNKNOWN,
        p_m: OFFSET_UNKNOWN,
        p_schedtick: OFFSET_UNKNOWN,
        p_sysmontick_schedwhen: OFFSET_UNKNOWN,
        g_sched_pc: OFFSET_UNKNOWN,
        gosched_has_preempted_arg: 0,
    };
}

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 24);
    assert!(core::mem::size_of::<SysmonTick>() == 32);
    assert!(core::mem::size_of::<PreemptRequest>() == 72);
    assert!(core::mem::size_of::<SignalM>() == 72);
    assert!(core::mem::size_of::<Tgkill>() == 40);
    assert!(core::mem::size_of::<SignalGenerate>() == 48);
    assert!(core::mem::size_of::<SignalDeliver>() == 48);
    assert!(core::mem::size_of::<GoroutineHook>() == 56);
    assert!(core::mem::size_of::<ProbeConfig>() == 56);
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
    unsafe impl aya::Pod for SignalGenerate {}
    unsafe impl aya::Pod for SignalDeliver {}
    unsafe impl aya::Pod for GoroutineHook {}
    unsafe impl aya::Pod for ProbeConfig {}
}
