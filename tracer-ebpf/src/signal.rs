//! The kernel's view of SIGURG: `tgkill` entry, signal generation (queued, or coalesced
//! with one already pending) and delivery to the target thread.
//!
//! Generation and delivery come from raw tracepoints where the kernel has BTF, else from
//! the classic tracepoints: a raw tracepoint's link detaches without the RCU waits a perf
//! tracepoint's close pays under the kernel's `event_mutex` (measured on 6.18: 2 ms
//! against 55 and 80 ms for the two `tgkill` syscall events, one after the other).
//!
//! `tgkill` is hooked one of four ways (`--syscall-hooks`). A syscall event, once enabled,
//! sends every syscall on the host through the kernel's slow path, so the default hooks none:
//! - `none` (default): a call that succeeds reaches `signal_generate` in the sender's
//!   context, which records its [`Tgkill`] from the sender's saved registers just before
//!   the generation. A call that fails leaves no record; userspace infers it.
//! - `exit`: `sys_exit_tgkill` too, for the errno of failures (one perf close on detach).
//! - `classic`: `sys_enter_tgkill` and `sys_exit_tgkill` (every call as it enters, SIGURGs
//!   sent from outside a traced process included).
//! - `raw`: `raw_syscalls`' `sys_enter`/`sys_exit`, which run for every syscall on the
//!   host and cost each more than the syscall events do.
//!
//! Classic field offsets come from tracefs `format` files and `task_struct.pid` from the
//! kernel's BTF, through [`SETTINGS`].

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext,
    bindings::pt_regs,
    helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use tracer_common::{
    EventKind, OFFSET_UNKNOWN, SIGURG, SignalDeliver, SignalGenerate, Tgkill, TgkillFailed,
};

use crate::{SETTINGS, count_lost, exclusively, guard, header, is_traced, submit};

/// `si_code` in `struct kernel_siginfo` (after `si_signo` and `si_errno`): kernel ABI.
const SIGINFO_CODE: u64 = 8;
/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: the special `info` pointers 0 and 1.
const SEND_SIG_PRIV: u64 = 1;
/// `si_code` the kernel reports for them (`SI_USER`, `SI_KERNEL`).
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;

/// `tgkill(tgid, tid, sig)` with sig == SIGURG, sent by a traced process or aimed at one.
/// The Go runtime signals its own threads, so the sender test covers every process, in a
/// pid namespace too (where `tgid` is not the host's); the target test adds SIGURGs sent
/// from outside, by host pid.
#[tracepoint]
pub fn tp_sys_enter_tgkill(ctx: TracePointContext) -> u32 {
    let raw = ctx.as_ptr();
    if !exclusively(guard::TP_SYS_ENTER_TGKILL, || sys_enter_tgkill::<0>(raw))
        && !exclusively(guard::TP_SYS_ENTER_TGKILL_SPARE, || {
            sys_enter_tgkill::<1>(raw)
        })
    {
        count_lost(EventKind::Tgkill as u32);
    }
    0
}

/// The hit, in a BPF function of its own, one per `COPY` (a syscall tracepoint may run
/// preemptibly: see [`crate::exclusively`]).
#[inline(never)]
fn sys_enter_tgkill<const COPY: u32>(ctx: *mut c_void) {
    let _ = try_tgkill(&TracePointContext::new(ctx));
}

#[inline(always)]
fn try_tgkill(ctx: &TracePointContext) -> Option<()> {
    let fields = SETTINGS.load().tracepoints;
    // SAFETY: offsets from the tracepoint's format; reads are bounds-checked helpers.
    let sig = unsafe { ctx.read_at::<u64>(fields.tgkill_sig as usize) }.ok()? as u32;
    if sig != SIGURG {
        return None;
    }
    let target_tgid = unsafe { ctx.read_at::<u64>(fields.tgkill_tgid as usize) }.ok()? as u32;
    if !is_traced(ctx.tgid()) && !is_traced(target_tgid) {
        return None;
    }
    let target_tid = unsafe { ctx.read_at::<u64>(fields.tgkill_pid as usize) }.ok()? as u32;
    submit_tgkill(ctx, target_tgid, target_tid, sig);
    Some(())
}

/// `tgkill` returned an error in a traced process. A seccomp filter that refuses the call
/// skips `sys_enter_tgkill` but not this exit tracepoint, so this is where a denied
/// SIGURG shows. The exit record carries only `ret`; the arguments are still in the
/// saved user registers (x86-64: rdi, rsi, rdx). Successful calls cost one comparison.
#[tracepoint]
pub fn tp_sys_exit_tgkill(ctx: TracePointContext) -> u32 {
    let raw = ctx.as_ptr();
    if !exclusively(guard::TP_SYS_EXIT_TGKILL, || sys_exit_tgkill::<0>(raw))
        && !exclusively(guard::TP_SYS_EXIT_TGKILL_SPARE, || {
            sys_exit_tgkill::<1>(raw)
        })
    {
        count_lost(EventKind::TgkillFailed as u32);
    }
    0
}

#[inline(never)]
fn sys_exit_tgkill<const COPY: u32>(ctx: *mut c_void) {
    let _ = try_tgkill_failed(&TracePointContext::new(ctx));
}

#[inline(always)]
fn try_tgkill_failed(ctx: &TracePointContext) -> Option<()> {
    let fields = SETTINGS.load().tracepoints;
    // SAFETY: offset from the tracepoint's format; the read is a bounds-checked helper.
    let ret = unsafe { ctx.read_at::<i64>(fields.tgkill_ret as usize) }.ok()?;
    if ret >= 0 || !is_traced(ctx.tgid()) {
        return None;
    }
    submit_tgkill_failed(ctx, user_args3(), ret);
    Some(())
}

/// `__NR_tgkill` on x86-64.
const NR_TGKILL: u64 = 234;

/// Raw `sys_enter(struct pt_regs *regs, long id)`: [`tp_sys_enter_tgkill`]'s test, for
/// `tgkill` only. The arguments are the user's registers (x86-64: rdi, rsi, rdx).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> u32 {
    if ctx.arg::<u64>(1) == NR_TGKILL {
        let raw = ctx.as_ptr();
        if !exclusively(guard::RAW_SYS_ENTER, || sys_enter::<0>(raw))
            && !exclusively(guard::RAW_SYS_ENTER_SPARE, || sys_enter::<1>(raw))
        {
            count_lost(EventKind::Tgkill as u32);
        }
    }
    0
}

#[inline(never)]
fn sys_enter<const COPY: u32>(ctx: *mut c_void) {
    let _ = try_raw_tgkill(&RawTracePointContext::new(ctx));
}

#[inline(always)]
fn try_raw_tgkill(ctx: &RawTracePointContext) -> Option<()> {
    let (target_tgid, target_tid, sig) = syscall_args3(ctx.arg::<*const pt_regs>(0));
    if sig != SIGURG || (!is_traced(ctx.tgid()) && !is_traced(target_tgid)) {
        return None;
    }
    submit_tgkill(ctx, target_tgid, target_tid, sig);
    Some(())
}

/// Raw `sys_exit(struct pt_regs *regs, long ret)`: [`tp_sys_exit_tgkill`]'s test. Which
/// syscall returns is `regs->orig_ax`; it is read only for a failed call.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> u32 {
    if ctx.arg::<i64>(1) < 0 {
        let raw = ctx.as_ptr();
        if !exclusively(guard::RAW_SYS_EXIT, || sys_exit::<0>(raw))
            && !exclusively(guard::RAW_SYS_EXIT_SPARE, || sys_exit::<1>(raw))
        {
            count_lost(EventKind::TgkillFailed as u32);
        }
    }
    0
}

#[inline(never)]
fn sys_exit<const COPY: u32>(ctx: *mut c_void) {
    let ctx = RawTracePointContext::new(ctx);
    let ret = ctx.arg::<i64>(1);
    if is_traced(ctx.tgid()) {
        let _ = try_raw_tgkill_failed(&ctx, ret);
    }
}

#[inline(always)]
fn try_raw_tgkill_failed(ctx: &RawTracePointContext, ret: i64) -> Option<()> {
    let regs = ctx.arg::<*const pt_regs>(0);
    // SAFETY: bpf_probe_read_kernel fails instead of faulting.
    let nr = unsafe { bpf_probe_read_kernel(&raw const (*regs).orig_rax) }.ok()?;
    if nr != NR_TGKILL {
        return None;
    }
    submit_tgkill_failed(ctx, syscall_args3(regs), ret);
    Some(())
}

#[inline(always)]
fn submit_tgkill<C: EbpfContext>(ctx: &C, target_tgid: u32, target_tid: u32, sig: u32) {
    let kind = EventKind::Tgkill;
    let record = Tgkill {
        header: header(kind),
        target_tgid,
        target_tid,
        sig,
        _pad: 0,
    };
    submit(ctx, kind, &record);
}

/// A failed `tgkill(tgid, tid, sig)` returning `ret`. A failure with another signal is not
/// the chain's; sig 0 means the registers could not be read, and is kept.
#[inline(always)]
fn submit_tgkill_failed<C: EbpfContext>(ctx: &C, (tgid, tid, sig): (u32, u32, u32), ret: i64) {
    if sig != SIGURG && sig != 0 {
        return;
    }
    let kind = EventKind::TgkillFailed;
    let record = TgkillFailed {
        header: header(kind),
        target_tgid: tgid,
        target_tid: tid,
        sig,
        errno: ret.unsigned_abs() as u32,
    };
    submit(ctx, kind, &record);
}

/// The first three syscall arguments of the current task, from its saved user registers.
#[inline(always)]
fn user_args3() -> (u32, u32, u32) {
    match user_regs() {
        Some(regs) => syscall_args3(regs),
        None => (0, 0, 0),
    }
}

/// The first three syscall arguments in saved user registers `regs` (0 if unreadable).
#[inline(always)]
fn syscall_args3(regs: *const pt_regs) -> (u32, u32, u32) {
    // SAFETY: read with bpf_probe_read_kernel, which fails instead of faulting.
    unsafe {
        let di = bpf_probe_read_kernel(&raw const (*regs).rdi).unwrap_or(0);
        let si = bpf_probe_read_kernel(&raw const (*regs).rsi).unwrap_or(0);
        let dx = bpf_probe_read_kernel(&raw const (*regs).rdx).unwrap_or(0);
        (di as u32, si as u32, dx as u32)
    }
}

/// Raw `signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task,
/// int group, int result)`, in the sender's context; SIGURG from a traced process.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn raw_signal_generate(ctx: RawTracePointContext) -> u32 {
    let _ = try_raw_signal_generate(&ctx);
    0
}

#[inline(always)]
fn try_raw_signal_generate(ctx: &RawTracePointContext) -> Option<()> {
    let sig = ctx.arg::<u64>(0) as u32;
    if sig != SIGURG || !is_traced(ctx.tgid()) {
        return None;
    }
    let task_pid = SETTINGS.load().task_pid;
    if task_pid == OFFSET_UNKNOWN {
        return None;
    }
    let task = ctx.arg::<u64>(2);
    // SAFETY: bpf_probe_read_kernel fails instead of faulting.
    let target_tid =
        unsafe { bpf_probe_read_kernel((task + task_pid as u64) as *const i32) }.unwrap_or(0);
    let code = siginfo_code(ctx.arg::<u64>(1));
    tgkill_at_generate(ctx, code);
    let kind = EventKind::SignalGenerate;
    let record = SignalGenerate {
        header: header(kind),
        target_tid: target_tid as u32,
        sig,
        code,
        group: ctx.arg::<u64>(3) as u32,
        result: ctx.arg::<u64>(4) as u32,
        _pad: 0,
    };
    submit(ctx, kind, &record);
    Some(())
}

/// Raw `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`: a
/// SIGURG is being delivered to the current (traced) thread.
#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn raw_signal_deliver(ctx: RawTracePointContext) -> u32 {
    let sig = ctx.arg::<u64>(0) as u32;
    if sig == SIGURG && is_traced(ctx.tgid()) {
        deliver(&ctx, sig, siginfo_code(ctx.arg::<u64>(1)));
    }
    0
}

/// `si_code` of a signal sent by `tkill`/`tgkill`.
const SI_TKILL: i32 = -6;

/// `--syscall-hooks none` or `exit`: a SIGURG generated (`code` SI_TKILL) while its traced sender
/// is in `tgkill` is that call's [`Tgkill`], recorded before the generation it causes;
/// the arguments are still in the sender's saved user registers. Calls refused before
/// generation show only at `sys_exit_tgkill`.
#[inline(always)]
fn tgkill_at_generate<C: EbpfContext>(ctx: &C, code: i32) {
    if code != SI_TKILL || SETTINGS.load().tgkill_at_generate == 0 {
        return;
    }
    let Some(regs) = user_regs() else {
        return;
    };
    // SAFETY: bpf_probe_read_kernel fails instead of faulting.
    let nr = unsafe { bpf_probe_read_kernel(&raw const (*regs).orig_rax) }.unwrap_or(0);
    if nr != NR_TGKILL {
        return;
    }
    let (target_tgid, target_tid, sig) = syscall_args3(regs);
    if sig == SIGURG {
        submit_tgkill(ctx, target_tgid, target_tid, sig);
    }
}

/// The classic `signal/signal_generate` tracepoint (kernels without BTF).
#[tracepoint]
pub fn tp_signal_generate(ctx: TracePointContext) -> u32 {
    let _ = try_signal_generate(&ctx);
    0
}

#[inline(always)]
fn try_signal_generate(ctx: &TracePointContext) -> Option<()> {
    let fields = SETTINGS.load().tracepoints;
    // SAFETY: as above.
    let sig = unsafe { ctx.read_at::<i32>(fields.generate_sig as usize) }.ok()? as u32;
    if sig != SIGURG || !is_traced(ctx.tgid()) {
        return None;
    }
    let read = |offset: u32| unsafe { ctx.read_at::<i32>(offset as usize) }.unwrap_or(0);
    let code = read(fields.generate_code);
    tgkill_at_generate(ctx, code);
    let kind = EventKind::SignalGenerate;
    let record = SignalGenerate {
        header: header(kind),
        target_tid: read(fields.generate_pid) as u32,
        sig,
        code,
        group: read(fields.generate_group) as u32,
        result: read(fields.generate_result) as u32,
        _pad: 0,
    };
    submit(ctx, kind, &record);
    Some(())
}

/// The classic `signal/signal_deliver` tracepoint (kernels without BTF).
#[tracepoint]
pub fn tp_signal_deliver(ctx: TracePointContext) -> u32 {
    let fields = SETTINGS.load().tracepoints;
    // SAFETY: as above.
    let sig = unsafe { ctx.read_at::<i32>(fields.deliver_sig as usize) }.unwrap_or(0) as u32;
    if sig == SIGURG && is_traced(ctx.tgid()) {
        let code = unsafe { ctx.read_at::<i32>(fields.deliver_code as usize) }.unwrap_or(0);
        deliver(&ctx, sig, code);
    }
    0
}

/// Submits a [`SignalDeliver`] for the current thread, with where it was in user mode.
#[inline(always)]
fn deliver<C: EbpfContext>(ctx: &C, sig: u32, code: i32) {
    let kind = EventKind::SignalDeliver;
    let (user_pc, user_sp) = user_pc_sp();
    let record = SignalDeliver {
        header: header(kind),
        user_pc,
        user_sp,
        sig,
        code,
    };
    submit(ctx, kind, &record);
}

/// `info->si_code`, or what the kernel reports for the special `info` values.
#[inline(always)]
fn siginfo_code(info: u64) -> i32 {
    match info {
        0 => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        // SAFETY: bpf_probe_read_kernel fails instead of faulting.
        _ => unsafe { bpf_probe_read_kernel((info + SIGINFO_CODE) as *const i32) }.unwrap_or(0),
    }
}

/// User-mode PC and SP of the current task. `signal_deliver` fires in `get_signal`,
/// before the signal frame is built, so these are still the interrupted values.
#[inline(always)]
fn user_pc_sp() -> (u64, u64) {
    let Some(regs) = user_regs() else {
        return (0, 0);
    };
    // SAFETY: read with bpf_probe_read_kernel, which fails instead of faulting.
    unsafe {
        let pc = bpf_probe_read_kernel(&raw const (*regs).rip).unwrap_or(0);
        let sp = bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0);
        (pc, sp)
    }
}

/// The current task's saved user-mode registers (only ever read with
/// bpf_probe_read_kernel).
#[inline(always)]
fn user_regs() -> Option<*const pt_regs> {
    // SAFETY: both helpers accept the current task.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    (!regs.is_null()).then_some(regs)
}
