//! goprobe's kernel side.
//!
//! Uprobes on Go runtime functions and tracepoints on signal delivery. Each program only
//! filters (traced tgid, SIGURG), reads registers and a few words of Go memory at offsets
//! the loader supplies in [`PROBE_CONFIG`], timestamps, and submits one record to the
//! [`EVENTS`] ring buffer. Symbol resolution, pairing and formatting live in userspace.
//!
//! One file per hooked subsystem: [`sysmon`] (tick and preemption requests), [`signal`]
//! (the kernel's view of SIGURG) and [`goroutine`] (the handler and the preemption
//! itself).
//!
//! All Go hooks are entry uprobes (or uprobes at an offset inside the prologue): never
//! uretprobes, which corrupt goroutine stacks when the runtime moves them.
#![no_std]
#![no_main]

mod goroutine;
mod signal;
mod sysmon;

use aya_ebpf::{
    EbpfContext, Global,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use aya_log_ebpf::debug;
use tracer_common::{EventHeader, EventKind, KIND_COUNT, OFFSET_UNKNOWN, ProbeConfig};

/// Default ring buffer size; userspace overrides it with `--ringbuf-size`.
const DEFAULT_RINGBUF_BYTES: u32 = 4 << 20;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RINGBUF_BYTES, 0);

/// Processes being traced (tgid → unused flags). Uprobes are already scoped to the
/// target by the kernel; tracepoints see every process and filter here.
#[map]
static TRACED_TGIDS: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

#[map]
static SUBMITTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[map]
static READ_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[unsafe(no_mangle)]
static PROBE_CONFIG: Global<ProbeConfig> = Global::new(ProbeConfig::UNKNOWN);

/// The current task's header, or `None` if its process is not traced.
#[inline(always)]
fn traced_header<C: EbpfContext>(ctx: &C, kind: EventKind) -> Option<EventHeader> {
    // SAFETY: the value is a plain u32 and is only tested for presence.
    unsafe { TRACED_TGIDS.get(ctx.tgid()) }?;
    Some(header(ctx, kind))
}

/// The current task's header, unfiltered.
#[inline(always)]
fn header<C: EbpfContext>(ctx: &C, kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        tid: ctx.pid(),
        tgid: ctx.tgid(),
        // SAFETY: helpers without preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Copies `record` into the ring buffer and counts it as submitted or lost.
#[inline(always)]
fn submit<T: 'static, C: EbpfContext>(ctx: &C, kind: EventKind, record: &T) {
    match EVENTS.output::<T>(record, 0) {
        Ok(()) => bump(&SUBMITTED, kind),
        Err(_) => {
            bump(&LOST, kind);
            debug!(
                ctx,
                "ring buffer full: record of event kind {} lost", kind as u32
            );
        }
    }
}

#[inline(always)]
fn bump(counter: &PerCpuArray<u64>, kind: EventKind) {
    if let Some(slot) = counter.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *slot += 1 };
    }
}

/// Reads a `T` from Go memory at `base + offset`, or `None` if the offset is unknown, the
/// base is nil, or the read faults (the latter counted in [`READ_ERRORS`] and, with
/// `goprobe -vv`, logged: the usual sign of a wrong struct layout).
#[inline(always)]
fn read_go<T, C: EbpfContext>(ctx: &C, kind: EventKind, base: u64, offset: u32) -> Option<T> {
    if offset == OFFSET_UNKNOWN || base == 0 {
        return None;
    }
    let addr = base.wrapping_add(offset as u64);
    // SAFETY: bpf_probe_read_user tolerates any address; it fails instead of faulting.
    match unsafe { bpf_probe_read_user(addr as *const T) } {
        Ok(value) => Some(value),
        Err(_) => {
            bump(&READ_ERRORS, kind);
            debug!(
                ctx,
                "event kind {}: reading Go memory at {:x} (base {:x} + {}) failed",
                kind as u32,
                addr,
                base,
                offset
            );
            None
        }
    }
}

/// `g.goid` of the goroutine at `g_addr`.
#[inline(always)]
fn read_goid<C: EbpfContext>(ctx: &C, kind: EventKind, g_addr: u64) -> u64 {
    read_go::<u64, C>(ctx, kind, g_addr, PROBE_CONFIG.load().g_goid)
        .unwrap_or(tracer_common::GOID_UNKNOWN)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic; this is never linked in.
    loop {}
}
