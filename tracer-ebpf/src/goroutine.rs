//! The target thread's side: the signal handler's decision (`doSigPreempt`), the
//! asynchronous preemption (`asyncPreempt2`), and where the goroutine goes next
//! (`goschedImpl` with `preempted`, `gopreempt_m` in Go 1.21, `preemptPark`), and the GC's
//! request to stop a goroutine (`suspendG`).
//!
//! Verified on Go 1.21.13 … 1.27.3 (linux/amd64). R14 holds the current g in ABIInternal
//! code, but it is the user goroutine only in `asyncPreempt2`; in `doSigPreempt` it is
//! `m.gsignal` and in the others g0, so the goroutine comes from the `gp` argument (RAX).

use aya_ebpf::{helpers::bpf_probe_read_user, macros::uprobe, programs::ProbeContext};
use tracer_common::{EventKind, GoroutineHook, goroutine_flags};

use crate::{PROBE_CONFIG, read_go, read_goid, submit, traced_header};

/// Offset of `uc_mcontext.gregs[REG_RIP]` in Linux/amd64's `ucontext_t` (kernel ABI):
/// uc_flags(8) + uc_link(8) + uc_stack(24) + 16 * 8.
const UCONTEXT_RIP: u64 = 168;
/// Offset of `ctxt` (the `*ucontext`) in Go's `sigctxt{info *siginfo; ctxt unsafe.Pointer}`.
const SIGCTXT_CTXT: u64 = 8;

/// `runtime.doSigPreempt(gp *g, ctxt *sigctxt)`: `gp` in RAX, `ctxt` in RBX. Records the
/// interrupted PC; the decision itself shows as an `asyncPreempt2` on this thread (or not).
#[uprobe]
pub fn go_do_sig_preempt(ctx: ProbeContext) -> u32 {
    let _ = try_do_sig_preempt(&ctx);
    0
}

#[inline(always)]
fn try_do_sig_preempt(ctx: &ProbeContext) -> Option<()> {
    // SAFETY: uprobe context is the user pt_regs.
    let regs = unsafe { &*ctx.regs };
    let pc = read_user(regs.rbx.wrapping_add(SIGCTXT_CTXT))
        .and_then(|ucontext| read_user(ucontext.wrapping_add(UCONTEXT_RIP)))
        .unwrap_or(0);
    hook(ctx, EventKind::DoSigPreempt, regs.rax, pc, 0)
}

/// `runtime.asyncPreempt2()`, the ABIInternal function (not its `.abi0` wrapper): R14 is
/// the preempted goroutine. `asyncPreempt` (assembly) set up a frame pointer, so
/// `[RBP + 8]` is its return address: the PC the goroutine was interrupted at, pushed by
/// the signal handler's `pushCall`. This holds whatever `asyncPreempt`'s frame size (it
/// changed in Go 1.26).
#[uprobe]
pub fn go_async_preempt2(ctx: ProbeContext) -> u32 {
    let _ = try_async_preempt2(&ctx);
    0
}

#[inline(always)]
fn try_async_preempt2(ctx: &ProbeContext) -> Option<()> {
    // SAFETY: as above.
    let regs = unsafe { &*ctx.regs };
    let resume_pc = read_user(regs.rbp.wrapping_add(8)).unwrap_or(0);
    hook(ctx, EventKind::AsyncPreempt2, regs.r14, resume_pc, 0)
}

/// `runtime.goschedImpl(gp *g, preempted bool)` (Go 1.22+; `goschedImpl(gp *g)` in 1.21):
/// `gp` in RAX, `preempted` in the low byte of RBX.
#[uprobe]
pub fn go_gosched_impl(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let regs = unsafe { &*ctx.regs };
    let flags = if PROBE_CONFIG.load().gosched_has_preempted_arg != 0 {
        let preempted = if regs.rbx & 0xff != 0 {
            goroutine_flags::PREEMPTED
        } else {
            0
        };
        goroutine_flags::PREEMPTED_KNOWN | preempted
    } else {
        0
    };
    let g_addr = regs.rax;
    let pc = sched_pc(&ctx, EventKind::GoschedImpl, g_addr);
    let _ = hook(&ctx, EventKind::GoschedImpl, g_addr, pc, flags);
    0
}

/// `runtime.gopreempt_m(gp *g)`: `gp` in RAX. Attached only where it is a real,
/// un-inlined function (Go 1.21).
#[uprobe]
pub fn go_gopreempt_m(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let g_addr = unsafe { (*ctx.regs).rax };
    let pc = sched_pc(&ctx, EventKind::GopreemptM, g_addr);
    let _ = hook(&ctx, EventKind::GopreemptM, g_addr, pc, 0);
    0
}

/// `runtime.preemptPark(gp *g)`: `gp` in RAX.
#[uprobe]
pub fn go_preempt_park(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let g_addr = unsafe { (*ctx.regs).rax };
    let pc = sched_pc(&ctx, EventKind::PreemptPark, g_addr);
    let _ = hook(&ctx, EventKind::PreemptPark, g_addr, pc, 0);
    0
}

/// `g.sched.pc`: where the goroutine will resume. On the stack-check path `morestack`
/// saved it inside the prologue whose check failed — the cooperative preemption point.
#[inline(always)]
fn sched_pc(ctx: &ProbeContext, kind: EventKind, g_addr: u64) -> u64 {
    read_go::<u64, _>(ctx, kind, g_addr, PROBE_CONFIG.load().g_sched_pc).unwrap_or(0)
}

/// `runtime.suspendG(gp *g)`: `gp` in RAX. The GC wants `gp` stopped to scan its stack;
/// the status read here tells whether it is running (and so must be preempted).
#[uprobe]
pub fn go_suspend_g(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let g_addr = unsafe { (*ctx.regs).rax };
    let _ = hook(&ctx, EventKind::SuspendG, g_addr, 0, 0);
    0
}

/// `runtime.execute(gp *g, inheritTime bool)`: `gp` in RAX. `gp` starts running on this
/// thread's M; attached only when goroutine run slices are asked for.
#[uprobe]
pub fn go_execute(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let g_addr = unsafe { (*ctx.regs).rax };
    let _ = hook(&ctx, EventKind::Execute, g_addr, 0, 0);
    0
}

/// Builds and submits a [`GoroutineHook`] for the goroutine at `g_addr`.
#[inline(always)]
fn hook(ctx: &ProbeContext, kind: EventKind, g_addr: u64, pc: u64, flags: u32) -> Option<()> {
    let header = traced_header(ctx, kind)?;
    let cfg = PROBE_CONFIG.load();
    let mut flags = flags;
    if let (Some(preempt), Some(stop)) = (
        read_go::<u8, _>(ctx, kind, g_addr, cfg.g_preempt),
        read_go::<u8, _>(ctx, kind, g_addr, cfg.g_preempt_stop),
    ) {
        flags |= goroutine_flags::G_FLAGS_READ;
        if preempt != 0 {
            flags |= goroutine_flags::G_PREEMPT;
        }
        if stop != 0 {
            flags |= goroutine_flags::G_PREEMPT_STOP;
        }
    }
    let record = GoroutineHook {
        header,
        g_addr,
        goid: read_goid(ctx, kind, g_addr),
        pc,
        g_status: read_go::<u32, _>(ctx, kind, g_addr, cfg.g_atomicstatus).unwrap_or(u32::MAX),
        flags,
    };
    submit(ctx, kind, &record);
    Some(())
}

#[inline(always)]
fn read_user(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user fails instead of faulting.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}
