//! Names of maps, programs and globals, used verbatim by both sides so a typo is a
//! compile error on one side or a load error ("symbol not found") on the other, never a
//! silently unused map.

/// Ring buffer carrying every record to userspace.
pub const EVENTS: &str = "EVENTS";
/// `HashMap<u32 tgid, u32 flags>`: the processes whose events are kept.
pub const TRACED_TGIDS: &str = "TRACED_TGIDS";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: records submitted.
pub const SUBMITTED: &str = "SUBMITTED";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: records lost because the ring
/// buffer was full.
pub const LOST: &str = "LOST";
/// `PerCpuArray<u64>` indexed by [`crate::EventKind`]: reads of Go memory that failed
/// (the record is still sent, with the affected fields zeroed).
pub const READ_ERRORS: &str = "READ_ERRORS";

/// Global [`crate::ProbeConfig`]: Go struct offsets of the traced binary.
pub const PROBE_CONFIG: &str = "PROBE_CONFIG";

/// Program names: each is named after what it hooks.
pub mod programs {
    /// uprobe on `runtime.retake(now int64)`: one sysmon tick.
    pub const GO_RETAKE: &str = "go_retake";
    /// uprobe on `runtime.preemptone(pp *p)`: a preemption request for one P.
    pub const GO_PREEMPTONE: &str = "go_preemptone";
    /// uprobe on `runtime.preemptM(mp *m)`, only where a binary has the symbol.
    pub const GO_PREEMPTM: &str = "go_preemptm";
    /// uprobe on `runtime.signalM(mp *m, sig int)`, SIGURG only.
    pub const GO_SIGNALM: &str = "go_signalm";
    /// uprobe on `runtime.doSigPreempt(gp *g, ctxt *sigctxt)`: the handler's decision.
    pub const GO_DO_SIG_PREEMPT: &str = "go_do_sig_preempt";
    /// uprobe on `runtime.asyncPreempt2()`: an asynchronous preemption.
    pub const GO_ASYNC_PREEMPT2: &str = "go_async_preempt2";
    /// uprobe on `runtime.goschedImpl(gp *g[, preempted bool])`.
    pub const GO_GOSCHED_IMPL: &str = "go_gosched_impl";
    /// uprobe on `runtime.gopreempt_m(gp *g)`, where it is a real function.
    pub const GO_GOPREEMPT_M: &str = "go_gopreempt_m";
    /// uprobe on `runtime.preemptPark(gp *g)`.
    pub const GO_PREEMPT_PARK: &str = "go_preempt_park";
    /// uprobe on `runtime.suspendG(gp *g)`: the GC asking a goroutine to stop.
    pub const GO_SUSPEND_G: &str = "go_suspend_g";
    /// uprobe on `runtime.execute(gp *g, inheritTime bool)`: a goroutine starts running.
    pub const GO_EXECUTE: &str = "go_execute";
    /// tracepoint `syscalls/sys_enter_tgkill`, SIGURG only.
    pub const TP_SYS_ENTER_TGKILL: &str = "tp_sys_enter_tgkill";
    /// tracepoint `signal/signal_generate`, SIGURG only.
    pub const TP_SIGNAL_GENERATE: &str = "tp_signal_generate";
    /// tracepoint `signal/signal_deliver`, SIGURG only.
    pub const TP_SIGNAL_DELIVER: &str = "tp_signal_deliver";
}
