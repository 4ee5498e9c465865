//! Sysmon's side of the chain: the tick (`retake`) and the preemption request
//! (`preemptone` → [`preemptM`, inlined in Go 1.21–1.27] → `signalM`).
//!
//! Verified on Go 1.21.13, 1.22.10, 1.23.9, 1.24.11, 1.25.5, 1.26.6 and 1.27.3
//! (linux/amd64). All three functions are ABIInternal: arguments in RAX, RBX, and R14 is
//! g0, so the goroutine concerned is taken from the arguments, never from R14.

use aya_ebpf::{helpers::bpf_probe_read_user, macros::uprobe, programs::ProbeContext};
use tracer_common::{EventKind, PreemptRequest, SIGURG, SignalM, SysmonTick};

use crate::{PROBE_CONFIG, read_go, read_goid, submit, traced_header};

/// `runtime.retake(now int64) uint32`: `now` in RAX.
#[uprobe]
pub fn go_retake(ctx: ProbeContext) -> u32 {
    let _ = try_go_retake(&ctx);
    0
}

#[inline(always)]
fn try_go_retake(ctx: &ProbeContext) -> Option<()> {
    let kind = EventKind::SysmonTick;
    let header = traced_header(ctx, kind)?;
    // SAFETY: uprobe context is the user pt_regs, readable by the program.
    let regs = unsafe { &*ctx.regs };
    submit(
        ctx,
        kind,
        &SysmonTick {
            header,
            now_ns: regs.rax as i64,
        },
    );
    Some(())
}

/// `runtime.preemptone(pp *p) bool`: `pp` in RAX.
#[uprobe]
pub fn go_preemptone(ctx: ProbeContext) -> u32 {
    let _ = try_go_preemptone(&ctx);
    0
}

#[inline(always)]
fn try_go_preemptone(ctx: &ProbeContext) -> Option<()> {
    let kind = EventKind::PreemptOne;
    let header = traced_header(ctx, kind)?;
    // SAFETY: as above.
    let regs = unsafe { &*ctx.regs };
    let cfg = PROBE_CONFIG.load();
    let p_addr = regs.rax;
    let m_addr = read_go::<u64, _>(ctx, kind, p_addr, cfg.p_m).unwrap_or(0);
    let curg = read_go::<u64, _>(ctx, kind, m_addr, cfg.m_curg).unwrap_or(0);
    let record = PreemptRequest {
        header,
        p_addr,
        caller_pc: return_address(regs.rsp),
        schedwhen_ns: read_go::<i64, _>(ctx, kind, p_addr, cfg.p_sysmontick_schedwhen).unwrap_or(0),
        m_tid: read_go::<u64, _>(ctx, kind, m_addr, cfg.m_procid).unwrap_or(0),
        goid: read_goid(ctx, kind, curg),
        p_id: read_go::<i32, _>(ctx, kind, p_addr, cfg.p_id).unwrap_or(-1),
        schedtick: read_go::<u32, _>(ctx, kind, p_addr, cfg.p_schedtick).unwrap_or(0),
    };
    submit(ctx, kind, &record);
    Some(())
}

/// `runtime.signalM(mp *m, sig int)`: `mp` in RAX, `sig` in RBX. SIGURG only.
#[uprobe]
pub fn go_signalm(ctx: ProbeContext) -> u32 {
    // SAFETY: as above.
    let sig = unsafe { (*ctx.regs).rbx } as u32;
    if sig == SIGURG {
        let _ = try_signal_m(&ctx, EventKind::SignalM, sig);
    }
    0
}

/// `runtime.preemptM(mp *m)`: `mp` in RAX. Only attached where the symbol exists (no
/// Go release from 1.21 to 1.27 has it: it is inlined into `preemptone` and `suspendG`).
#[uprobe]
pub fn go_preemptm(ctx: ProbeContext) -> u32 {
    let _ = try_signal_m(&ctx, EventKind::PreemptM, 0);
    0
}

#[inline(always)]
fn try_signal_m(ctx: &ProbeContext, kind: EventKind, sig: u32) -> Option<()> {
    let header = traced_header(ctx, kind)?;
    // SAFETY: as above.
    let regs = unsafe { &*ctx.regs };
    let cfg = PROBE_CONFIG.load();
    let m_addr = regs.rax;
    let curg = read_go::<u64, _>(ctx, kind, m_addr, cfg.m_curg).unwrap_or(0);
    let p_addr = read_go::<u64, _>(ctx, kind, m_addr, cfg.m_p).unwrap_or(0);
    let record = SignalM {
        header,
        m_addr,
        caller_pc: return_address(regs.rsp),
        m_tid: read_go::<u64, _>(ctx, kind, m_addr, cfg.m_procid).unwrap_or(0),
        m_id: read_go::<i64, _>(ctx, kind, m_addr, cfg.m_id).unwrap_or(-1),
        goid: read_goid(ctx, kind, curg),
        p_id: read_go::<i32, _>(ctx, kind, p_addr, cfg.p_id).unwrap_or(-1),
        sig,
    };
    submit(ctx, kind, &record);
    Some(())
}

/// The return address at `[RSP]`. Valid at the function's entry and anywhere in the
/// prologue before its `PUSHQ BP`, where goprobe places its uprobes.
#[inline(always)]
fn return_address(rsp: u64) -> u64 {
    // SAFETY: bpf_probe_read_user fails instead of faulting.
    unsafe { bpf_probe_read_user(rsp as *const u64) }.unwrap_or(0)
}
