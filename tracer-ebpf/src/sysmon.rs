//! Sysmon's side of the chain: the tick (`retake`) and the preemption request
//! (`preemptone` → [`preemptM`, inlined in Go 1.21–1.27] → `signalM`).
//!
//! Verified on Go 1.21.13, 1.22.10, 1.23.9, 1.24.11, 1.25.5, 1.26.6 and 1.27.3
//! (linux/amd64). All three functions are ABIInternal: arguments in RAX, RBX, and R14 is
//! g0, so the goroutine concerned is taken from the arguments, never from R14.

use tracer_common::{EventKind, Field, PreemptRequest, SIGURG, SignalM, SysmonTick};

use crate::{header, read_go, read_goid, read_user, runtime::Hit, submit};

/// `runtime.retake(now int64) uint32`: `now` in RAX.
#[inline(always)]
pub fn retake(hit: &Hit) -> Option<()> {
    let kind = EventKind::SysmonTick;
    let record = SysmonTick {
        header: header(kind),
        now_ns: hit.regs.rax as i64,
    };
    submit(hit.ctx, kind, &record);
    Some(())
}

/// `runtime.preemptone(pp *p) bool`: `pp` in RAX.
#[inline(always)]
pub fn preemptone(hit: &Hit) -> Option<()> {
    let kind = EventKind::PreemptOne;
    let (ctx, binary) = (hit.ctx, hit.binary);
    let p_addr = hit.regs.rax;
    let m_addr = read_go::<u64, _>(ctx, kind, binary, p_addr, Field::PM).unwrap_or(0);
    let curg = read_go::<u64, _>(ctx, kind, binary, m_addr, Field::MCurg).unwrap_or(0);
    let record = PreemptRequest {
        header: header(kind),
        p_addr,
        caller_pc: read_user(hit.regs.rsp).unwrap_or(0),
        schedwhen_ns: read_go::<i64, _>(ctx, kind, binary, p_addr, Field::PSysmontickSchedwhen)
            .unwrap_or(0),
        m_tid: read_go::<u64, _>(ctx, kind, binary, m_addr, Field::MProcid).unwrap_or(0),
        goid: read_goid(ctx, kind, binary, curg),
        p_id: read_go::<i32, _>(ctx, kind, binary, p_addr, Field::PId).unwrap_or(-1),
        schedtick: read_go::<u32, _>(ctx, kind, binary, p_addr, Field::PSchedtick).unwrap_or(0),
    };
    submit(ctx, kind, &record);
    Some(())
}

/// `runtime.signalM(mp *m, sig int)`: `mp` in RAX, `sig` in RBX. SIGURG only.
#[inline(always)]
pub fn signal_m(hit: &Hit) -> Option<()> {
    let sig = hit.regs.rbx as u32;
    if sig != SIGURG {
        return None;
    }
    m_record(hit, EventKind::SignalM, sig)
}

/// `runtime.preemptM(mp *m)`: `mp` in RAX. Only attached where the symbol exists (no
/// Go release from 1.21 to 1.27 has it: it is inlined into `preemptone` and `suspendG`).
#[inline(always)]
pub fn preempt_m(hit: &Hit) -> Option<()> {
    m_record(hit, EventKind::PreemptM, 0)
}

#[inline(always)]
fn m_record(hit: &Hit, kind: EventKind, sig: u32) -> Option<()> {
    let (ctx, binary) = (hit.ctx, hit.binary);
    let m_addr = hit.regs.rax;
    let curg = read_go::<u64, _>(ctx, kind, binary, m_addr, Field::MCurg).unwrap_or(0);
    let p_addr = read_go::<u64, _>(ctx, kind, binary, m_addr, Field::MP).unwrap_or(0);
    let record = SignalM {
        header: header(kind),
        m_addr,
        // The return address at `[RSP]`: valid anywhere before the `PUSHQ BP`.
        caller_pc: read_user(hit.regs.rsp).unwrap_or(0),
        m_tid: read_go::<u64, _>(ctx, kind, binary, m_addr, Field::MProcid).unwrap_or(0),
        m_id: read_go::<i64, _>(ctx, kind, binary, m_addr, Field::MId).unwrap_or(-1),
        goid: read_goid(ctx, kind, binary, curg),
        p_id: read_go::<i32, _>(ctx, kind, binary, p_addr, Field::PId).unwrap_or(-1),
        sig,
    };
    submit(ctx, kind, &record);
    Some(())
}
