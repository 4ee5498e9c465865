//! The target thread's side: the signal handler's decision (`doSigPreempt`), the
//! asynchronous preemption (`asyncPreempt2`), and where the goroutine goes next
//! (`goschedImpl` on a preemption path, `preemptPark`), the GC's request to stop a
//! goroutine (`suspendG`), and, for `--slices`, `execute`.
//!
//! Verified on Go 1.21.13 … 1.27.3 (linux/amd64). R14 holds the current g in ABIInternal
//! code, but it is the user goroutine only in `asyncPreempt2`; in `doSigPreempt` it is
//! `m.gsignal` and in the others g0, so the goroutine comes from the `gp` argument (RAX).

use tracer_common::{EventKind, Field, GoroutineHook, goroutine_flags};

use crate::{SETTINGS, YIELDS, header, read_go, read_goid, read_user, runtime::Hit, submit};

/// Offset of `uc_mcontext.gregs[REG_RIP]` in Linux/amd64's `ucontext_t` (kernel ABI):
/// uc_flags(8) + uc_link(8) + uc_stack(24) + 16 * 8.
const UCONTEXT_RIP: u64 = 168;
/// Offset of `ctxt` (the `*ucontext`) in Go's `sigctxt{info *siginfo; ctxt unsafe.Pointer}`.
const SIGCTXT_CTXT: u64 = 8;

/// `runtime.doSigPreempt(gp *g, ctxt *sigctxt)`: `gp` in RAX, `ctxt` in RBX. Records the
/// interrupted PC; the decision itself shows as an `asyncPreempt2` on this thread (or not).
#[inline(always)]
pub fn do_sig_preempt(hit: &Hit) -> Option<()> {
    let pc = read_user(hit.regs.rbx.wrapping_add(SIGCTXT_CTXT))
        .and_then(|ucontext| read_user(ucontext.wrapping_add(UCONTEXT_RIP)))
        .unwrap_or(0);
    record(hit, EventKind::DoSigPreempt, hit.regs.rax, pc, 0)
}

/// `runtime.asyncPreempt2()`, the ABIInternal function (not its `.abi0` wrapper): R14 is
/// the preempted goroutine. `asyncPreempt` (assembly) set up a frame pointer, so
/// `[RBP + 8]` is its return address: the PC the goroutine was interrupted at, pushed by
/// the signal handler's `pushCall`. This holds whatever `asyncPreempt`'s frame size (it
/// changed in Go 1.26).
#[inline(always)]
pub fn async_preempt2(hit: &Hit) -> Option<()> {
    let resume_pc = read_user(hit.regs.rbp.wrapping_add(8)).unwrap_or(0);
    record(hit, EventKind::AsyncPreempt2, hit.regs.r14, resume_pc, 0)
}

/// `runtime.goschedImpl(gp *g, preempted bool)` (Go 1.22+; `goschedImpl(gp *g)` in 1.21),
/// probed on its calls from the preemption path (`newstack`, `gopreempt_m`,
/// `asyncPreempt2.func1`): `gp` in RAX, `preempted` in the low byte of RBX, already set
/// at the `CALL`. Where no such call site was found the probe sits at the entry, and
/// there a `preempted` false is a voluntary yield.
#[inline(always)]
pub fn gosched_impl(hit: &Hit) -> Option<()> {
    let flags = if hit.binary.gosched_preempted_arg == 0 {
        // Go 1.21: no argument; a call site on the preemption path is a preemption.
        goroutine_flags::PREEMPTED_KNOWN | goroutine_flags::PREEMPTED
    } else if hit.regs.rbx & 0xff != 0 {
        goroutine_flags::PREEMPTED_KNOWN | goroutine_flags::PREEMPTED
    } else {
        return yield_(hit);
    };
    let g_addr = hit.regs.rax;
    let pc = sched_pc(hit, EventKind::GoschedImpl, g_addr);
    record(hit, EventKind::GoschedImpl, g_addr, pc, flags)
}

/// `goschedImpl(gp, false)` called from `gosched_m` or `goschedguarded_m`: a voluntary
/// yield. Counted per process; a bulk record only with `--slices`.
#[inline(always)]
pub fn yield_(hit: &Hit) -> Option<()> {
    if let Some(count) = YIELDS.get_ptr_mut(hit.process.counter) {
        // SAFETY: per-CPU value, no concurrent writer on this CPU while we run.
        unsafe { *count += 1 };
    }
    if SETTINGS.load().bulk == 0 {
        return None;
    }
    bulk_record(hit, EventKind::Yield, goroutine_flags::PREEMPTED_KNOWN)
}

/// `runtime.preemptPark(gp *g)`: `gp` in RAX.
#[inline(always)]
pub fn preempt_park(hit: &Hit) -> Option<()> {
    let g_addr = hit.regs.rax;
    let pc = sched_pc(hit, EventKind::PreemptPark, g_addr);
    record(hit, EventKind::PreemptPark, g_addr, pc, 0)
}

/// `runtime.suspendG(gp *g)`: `gp` in RAX. The GC wants `gp` stopped to scan its stack.
/// Only a running goroutine has to be preempted for that (the others are scanned where
/// they stand), and the GC calls this for every goroutine of every cycle: others are
/// dropped here, unless the status cannot be read.
#[inline(always)]
pub fn suspend_g(hit: &Hit) -> Option<()> {
    let g_addr = hit.regs.rax;
    let status = read_go::<u32, _>(
        hit.ctx,
        EventKind::SuspendG,
        hit.binary,
        g_addr,
        Field::GAtomicstatus,
    );
    if status.is_some_and(|status| status & !G_SCAN != G_RUNNING) {
        return None;
    }
    record(hit, EventKind::SuspendG, g_addr, 0, 0)
}

/// `_Grunning` and the `_Gscan` bit of `g.atomicstatus` (stable since Go 1.0).
const G_RUNNING: u32 = 2;
const G_SCAN: u32 = 0x1000;

/// `runtime.execute(gp *g, inheritTime bool)`: `gp` in RAX starts running on this thread's
/// M. Attached only for `--slices`; bulk ring.
#[inline(always)]
pub fn execute(hit: &Hit) -> Option<()> {
    bulk_record(hit, EventKind::Execute, 0)
}

/// A [`GoroutineHook`] for the high-rate kinds (yields, `execute`, at millions a second):
/// the goroutine at `gp` (RAX) by id only. Nothing downstream reads their status or
/// preemption flags, and each read of Go memory costs the traced thread.
#[inline(always)]
fn bulk_record(hit: &Hit, kind: EventKind, flags: u32) -> Option<()> {
    let g_addr = hit.regs.rax;
    let record = GoroutineHook {
        header: header(kind),
        g_addr,
        goid: read_goid(hit.ctx, kind, hit.binary, g_addr),
        pc: 0,
        g_status: u32::MAX,
        flags,
    };
    submit(hit.ctx, kind, &record);
    Some(())
}

/// `g.sched.pc`: where the goroutine will resume. On the stack-check path `morestack`
/// saved it inside the prologue whose check failed — the cooperative preemption point.
#[inline(always)]
fn sched_pc(hit: &Hit, kind: EventKind, g_addr: u64) -> u64 {
    read_go::<u64, _>(hit.ctx, kind, hit.binary, g_addr, Field::GSchedPc).unwrap_or(0)
}

/// Builds and submits a [`GoroutineHook`] for the goroutine at `g_addr`.
#[inline(always)]
fn record(hit: &Hit, kind: EventKind, g_addr: u64, pc: u64, flags: u32) -> Option<()> {
    let (ctx, binary) = (hit.ctx, hit.binary);
    let mut flags = flags;
    if let (Some(preempt), Some(stop)) = (
        read_go::<u8, _>(ctx, kind, binary, g_addr, Field::GPreempt),
        read_go::<u8, _>(ctx, kind, binary, g_addr, Field::GPreemptStop),
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
        header: header(kind),
        g_addr,
        goid: read_goid(ctx, kind, binary, g_addr),
        pc,
        g_status: read_go::<u32, _>(ctx, kind, binary, g_addr, Field::GAtomicstatus)
            .unwrap_or(u32::MAX),
        flags,
    };
    submit(ctx, kind, &record);
    Some(())
}
