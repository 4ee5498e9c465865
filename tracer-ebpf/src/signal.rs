//! The kernel's view of SIGURG: `tgkill` entry, signal generation (queued, or coalesced
//! with one already pending) and delivery to the target thread.
//!
//! Field offsets are those of this kernel's tracefs `format` files (6.x, stable ABI of
//! these tracepoints since 3.x).

use aya_ebpf::{
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::tracepoint,
    programs::TracePointContext,
};
use tracer_common::{EventKind, SIGURG, SignalDeliver, SignalGenerate, Tgkill};

use crate::{TRACED_TGIDS, header, submit, traced_header};

// syscalls/sys_enter_tgkill
const TGKILL_TGID: usize = 16;
const TGKILL_PID: usize = 24;
const TGKILL_SIG: usize = 32;
// signal/signal_generate
const GENERATE_SIG: usize = 8;
const GENERATE_CODE: usize = 16;
const GENERATE_PID: usize = 36;
const GENERATE_GROUP: usize = 40;
const GENERATE_RESULT: usize = 44;
// signal/signal_deliver
const DELIVER_SIG: usize = 8;
const DELIVER_CODE: usize = 16;

/// `tgkill(tgid, tid, sig)` with sig == SIGURG aimed at a traced process.
#[tracepoint]
pub fn tp_sys_enter_tgkill(ctx: TracePointContext) -> u32 {
    let _ = try_tgkill(&ctx);
    0
}

#[inline(always)]
fn try_tgkill(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: offsets from the tracepoint's format; reads are bounds-checked helpers.
    let sig = unsafe { ctx.read_at::<u64>(TGKILL_SIG) }.ok()? as u32;
    if sig != SIGURG {
        return None;
    }
    let target_tgid = unsafe { ctx.read_at::<u64>(TGKILL_TGID) }.ok()? as u32;
    // SAFETY: presence test only.
    unsafe { TRACED_TGIDS.get(target_tgid) }?;
    let target_tid = unsafe { ctx.read_at::<u64>(TGKILL_PID) }.ok()? as u32;
    let kind = EventKind::Tgkill;
    let record = Tgkill {
        header: header(ctx, kind),
        target_tgid,
        target_tid,
        sig,
        _pad: 0,
    };
    submit(ctx, kind, &record);
    Some(())
}

/// The kernel generated a SIGURG; the sender (current task) belongs to a traced process.
#[tracepoint]
pub fn tp_signal_generate(ctx: TracePointContext) -> u32 {
    let _ = try_signal_generate(&ctx);
    0
}

#[inline(always)]
fn try_signal_generate(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: as above.
    let sig = unsafe { ctx.read_at::<i32>(GENERATE_SIG) }.ok()? as u32;
    if sig != SIGURG {
        return None;
    }
    let kind = EventKind::SignalGenerate;
    let header = traced_header(ctx, kind)?;
    let record = unsafe {
        SignalGenerate {
            header,
            target_tid: ctx.read_at::<i32>(GENERATE_PID).unwrap_or(0) as u32,
            sig,
            code: ctx.read_at::<i32>(GENERATE_CODE).unwrap_or(0),
            group: ctx.read_at::<i32>(GENERATE_GROUP).unwrap_or(0) as u32,
            result: ctx.read_at::<i32>(GENERATE_RESULT).unwrap_or(0) as u32,
            _pad: 0,
        }
    };
    submit(ctx, kind, &record);
    Some(())
}

/// A SIGURG is being delivered to the current (traced) thread. Also records where the
/// thread was in user mode, read from its saved registers.
#[tracepoint]
pub fn tp_signal_deliver(ctx: TracePointContext) -> u32 {
    let _ = try_signal_deliver(&ctx);
    0
}

#[inline(always)]
fn try_signal_deliver(ctx: &TracePointContext) -> Option<()> {
    // SAFETY: as above.
    let sig = unsafe { ctx.read_at::<i32>(DELIVER_SIG) }.ok()? as u32;
    if sig != SIGURG {
        return None;
    }
    let kind = EventKind::SignalDeliver;
    let header = traced_header(ctx, kind)?;
    let (user_pc, user_sp) = user_pc_sp();
    let record = SignalDeliver {
        header,
        user_pc,
        user_sp,
        sig,
        code: unsafe { ctx.read_at::<i32>(DELIVER_CODE) }.unwrap_or(0),
    };
    submit(ctx, kind, &record);
    Some(())
}

/// User-mode PC and SP of the current task. `signal_deliver` fires in `get_signal`,
/// before the signal frame is built, so these are still the interrupted values.
#[inline(always)]
fn user_pc_sp() -> (u64, u64) {
    // SAFETY: both helpers accept the current task; the regs pointer is read with
    // bpf_probe_read_kernel, which fails instead of faulting.
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const pt_regs;
        if regs.is_null() {
            return (0, 0);
        }
        let pc = bpf_probe_read_kernel(&raw const (*regs).rip).unwrap_or(0);
        let sp = bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0);
        (pc, sp)
    }
}
