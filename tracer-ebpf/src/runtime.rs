//! `go_runtime`: the one uprobe program for every hooked Go runtime function.
//!
//! Attached once per binary (one uprobe_multi link on 6.6+, else one perf link per
//! function), with the function's [`EventKind`] as attach cookie. A hit first finds its
//! process in `TRACED_TGIDS` (processes of the same binary that are not traced stop
//! there) and that process's binary config, then goes to the hook for the cookie.

use aya_ebpf::{
    EbpfContext, bindings::pt_regs, helpers::bpf_get_attach_cookie, macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{BinaryConfig, EventKind, TracedProcess};

use crate::{BINARIES, goroutine, sysmon, traced_process};

/// Everything a hook needs about the hit.
pub struct Hit<'a> {
    pub ctx: &'a ProbeContext,
    /// The user registers at the probed instruction (entry, or the `PUSHQ BP` after the
    /// stack check: the argument registers, RSP, RBP and R14 are the entry's there).
    pub regs: &'a pt_regs,
    pub binary: &'a BinaryConfig,
    pub process: &'a TracedProcess,
}

const SYSMON_TICK: u64 = EventKind::SysmonTick as u64;
const PREEMPT_ONE: u64 = EventKind::PreemptOne as u64;
const PREEMPT_M: u64 = EventKind::PreemptM as u64;
const SIGNAL_M: u64 = EventKind::SignalM as u64;
const DO_SIG_PREEMPT: u64 = EventKind::DoSigPreempt as u64;
const ASYNC_PREEMPT2: u64 = EventKind::AsyncPreempt2 as u64;
const GOSCHED_IMPL: u64 = EventKind::GoschedImpl as u64;
const YIELD: u64 = EventKind::Yield as u64;
const PREEMPT_PARK: u64 = EventKind::PreemptPark as u64;
const SUSPEND_G: u64 = EventKind::SuspendG as u64;
const EXECUTE: u64 = EventKind::Execute as u64;

#[uprobe]
pub fn go_runtime(ctx: ProbeContext) -> u32 {
    let raw = ctx.as_ptr();
    // Four copies of the body, each a BPF function with its own private stack: a hit while
    // runs preempted on this CPU hold some takes the next free one, and only a fifth at
    // once is lost (counted). With two, Debian's 7.2 under qemu without KVM still lost a
    // sysmon tick and its request now and then (the runs are slow there, so often
    // preempted).
    use crate::{exclusively, guard::GO_RUNTIME};
    if !exclusively(GO_RUNTIME, || run::<0>(raw))
        && !exclusively(GO_RUNTIME + 1, || run::<1>(raw))
        && !exclusively(GO_RUNTIME + 2, || run::<2>(raw))
        && !exclusively(GO_RUNTIME + 3, || run::<3>(raw))
    {
        // SAFETY: the helper reads the cookie of the link that fired.
        let kind = unsafe { bpf_get_attach_cookie(raw) };
        crate::count_lost(kind as u32);
    }
    0
}

/// The hit itself, in a BPF function of its own (one per `COPY`): its frame may be on the
/// per-CPU private stack (see [`crate::exclusively`]), the entry's never is.
#[inline(never)]
fn run<const COPY: u32>(ctx: *mut core::ffi::c_void) {
    let _ = try_go_runtime(&ProbeContext::new(ctx));
}

#[inline(always)]
fn try_go_runtime(ctx: &ProbeContext) -> Option<()> {
    let process = traced_process(ctx.tgid())?;
    let binary = BINARIES.get(process.binary)?;
    // SAFETY: uprobe context is the user pt_regs, readable by the program.
    let regs = unsafe { &*ctx.regs };
    let hit = Hit {
        ctx,
        regs,
        binary,
        process,
    };
    // SAFETY: the helper reads the cookie of the link that fired.
    match unsafe { bpf_get_attach_cookie(ctx.as_ptr()) } {
        SYSMON_TICK => sysmon::retake(&hit),
        PREEMPT_ONE => sysmon::preemptone(&hit),
        SIGNAL_M => sysmon::signal_m(&hit),
        PREEMPT_M => sysmon::preempt_m(&hit),
        DO_SIG_PREEMPT => goroutine::do_sig_preempt(&hit),
        ASYNC_PREEMPT2 => goroutine::async_preempt2(&hit),
        GOSCHED_IMPL => goroutine::gosched_impl(&hit),
        YIELD => goroutine::yield_(&hit),
        PREEMPT_PARK => goroutine::preempt_park(&hit),
        SUSPEND_G => goroutine::suspend_g(&hit),
        EXECUTE => goroutine::execute(&hit),
        _ => None,
    }
}
