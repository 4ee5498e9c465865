//! goprobe's kernel side.
//!
//! Uprobes on Go runtime functions and tracepoints on signal delivery. Each program only
//! filters (traced process, SIGURG, preemption path), reads registers and a few words of
//! Go memory at offsets userspace supplies, timestamps, and submits one record. Symbol
//! resolution, pairing and formatting live in userspace.
//!
//! - [`runtime`]: the one uprobe program, `go_runtime`, attached to every hooked runtime
//!   function of a binary; the attach cookie says which, and it dispatches to
//! - [`sysmon`] (tick and preemption requests) and [`goroutine`] (the handler, the
//!   preemption itself, where the goroutine goes next);
//! - [`signal`]: the kernel's view of SIGURG (tgkill, generation, delivery);
//! - [`process`]: execs, for `--all` to find new Go programs.
//!
//! Two ring buffers: [`EVENTS`] for the preemption chain and [`BULK`] for the high-rate
//! records (voluntary yields and `execute`, only with `--slices`), so a flood of the
//! latter can never push out the former. Voluntary yields are otherwise only counted.
//!
//! All Go hooks are entry uprobes (or uprobes at an offset inside the prologue): never
//! uretprobes, which corrupt goroutine stacks when the runtime moves them.
#![no_std]
#![no_main]
// The BPF target has no `AtomicU64::fetch_add`/`swap` (no compare-and-swap), but the
// kernel does have atomic add and exchange (BPF_ATOMIC, 5.12+): the intrinsics emit them.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "core::intrinsics::atomic_* on the BPF target"
)]

mod goroutine;
mod process;
mod runtime;
mod signal;
mod sysmon;

use core::intrinsics::{AtomicOrdering, atomic_xadd, atomic_xchg};

use aya_ebpf::{
    EbpfContext, Global,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use aya_log_ebpf::debug;
use tracer_common::{
    BinaryConfig, EventHeader, EventKind, Field, KIND_COUNT, MAX_BINARIES, MAX_PROCESSES,
    OFFSET_UNKNOWN, STREAM_COUNT, Settings, Stream, TracedProcess, TracepointFields,
};

/// Default size of [`EVENTS`]; userspace sets it (`--ringbuf-kib`).
const DEFAULT_CHAIN_BYTES: u32 = 1 << 20;
/// Default size of [`BULK`]: one page, the smallest ring, when nothing goes there.
const DEFAULT_BULK_BYTES: u32 = 4096;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_CHAIN_BYTES, 0);

#[map]
static BULK: RingBuf = RingBuf::with_byte_size(DEFAULT_BULK_BYTES, 0);

/// Traced processes by host tgid. Uprobes fire for every process mapping a probed
/// binary, tracepoints for every process on the host: both stop here for the others.
#[map]
static TRACED_TGIDS: HashMap<u32, TracedProcess> = HashMap::with_max_entries(MAX_PROCESSES, 0);

#[map]
static YIELDS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_PROCESSES, 0);

#[map]
static BINARIES: Array<BinaryConfig> = Array::with_max_entries(MAX_BINARIES, 0);

#[map]
static SUBMITTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[map]
static READ_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_COUNT, 0);

#[map]
static SEQUENCE: PerCpuArray<u64> = PerCpuArray::with_max_entries(STREAM_COUNT, 0);

#[unsafe(no_mangle)]
static SETTINGS: Global<Settings> = Global::new(Settings {
    bulk: 0,
    task_pid: OFFSET_UNKNOWN,
    tgkill_at_generate: 0,
    chain_wake_bytes: 0,
    bulk_wake_bytes: 0,
    tracepoints: TracepointFields {
        tgkill_tgid: 16,
        tgkill_pid: 24,
        tgkill_sig: 32,
        tgkill_ret: 16,
        generate_sig: 8,
        generate_code: 16,
        generate_pid: 36,
        generate_group: 40,
        generate_result: 44,
        deliver_sig: 8,
        deliver_code: 16,
    },
});

/// The traced process the current task belongs to.
#[inline(always)]
fn traced_process(tgid: u32) -> Option<&'static TracedProcess> {
    // SAFETY: userspace only inserts and removes whole entries; the value is plain data.
    unsafe { TRACED_TGIDS.get(tgid) }
}

/// Whether the current task belongs to a traced process.
#[inline(always)]
fn is_traced(tgid: u32) -> bool {
    // SAFETY: presence test only.
    unsafe { TRACED_TGIDS.get(tgid) }.is_some()
}

/// The current task's header for a record of `kind`; takes the next number of this CPU's
/// sequence for the kind's stream.
#[inline(always)]
fn header(kind: EventKind) -> EventHeader {
    let seq = bump_at(&SEQUENCE, kind.stream() as u32);
    // One helper call for both ids (`ctx.pid()` and `ctx.tgid()` would make two).
    let pid_tgid = bpf_get_current_pid_tgid();
    EventHeader {
        kind: kind as u32,
        tid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        // SAFETY: helpers without preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: unsafe { bpf_ktime_get_ns() },
        seq,
    }
}

/// How often (in records of a kind, per CPU) [`submit`] checks its ring's fill level.
const WAKE_CHECK_EVERY: u64 = 16;

/// Copies `record` into its kind's ring buffer and counts it as submitted or lost.
///
/// Userspace reads the rings on a timer, so a record wakes it only once its ring is a
/// quarter full (or for an exec, which `--all` acts on at once). The kernel's default
/// wakes a reader that has caught up at every record: an `irq_work` on the traced thread,
/// which cost more than the rest of the program (measured on 6.18 in a VM: 2-7 µs a
/// record against under 1 µs).
#[inline(always)]
fn submit<T: 'static, C: EbpfContext>(ctx: &C, kind: EventKind, record: &T) {
    let settings = SETTINGS.load();
    let (ring, wake_bytes) = match kind.stream() {
        Stream::Chain => (&EVENTS, settings.chain_wake_bytes),
        Stream::Bulk => (&BULK, settings.bulk_wake_bytes),
    };
    let Some(submitted) = SUBMITTED.get_ptr_mut(kind as u32) else {
        return;
    };
    // SAFETY: a valid per-CPU map value; a racing update only shifts which record checks.
    let count = unsafe { *submitted };
    // The fill level is looked at every 16th record of a kind on a CPU: a ring a quarter
    // full is then at most 16 records fuller before its reader is woken.
    let filling = count % WAKE_CHECK_EVERY == 0
        && ring.query(BPF_RB_AVAIL_DATA as u64) >= u64::from(wake_bytes);
    let flags = if filling || kind == EventKind::ProcessExec {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    match ring.output::<T>(record, flags as u64) {
        Ok(()) => {
            // SAFETY: as above; atomically (see `bump_at`).
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(submitted, 1) };
        }
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
    bump_at(counter, kind as u32);
}

/// Adds one to this CPU's slot `index` of `counter`, atomically: a uprobe program runs
/// preemptibly, so another program can update the same slot on this CPU meanwhile.
#[inline(always)]
fn bump_at(counter: &PerCpuArray<u64>, index: u32) -> u64 {
    match counter.get_ptr_mut(index) {
        // SAFETY: a valid, aligned per-CPU map value for as long as the program runs.
        Some(slot) => {
            (unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(slot, 1) }) + 1
        }
        None => 0,
    }
}

/// A hit skipped because the same program was already running on this CPU: its record
/// is counted lost under `kind`.
#[inline(always)]
fn count_lost(kind: u32) {
    if kind < KIND_COUNT {
        bump_at(&LOST, kind);
    }
}

/// Indexes in [`RUNNING`], one per program that can run preemptibly: the uprobe program,
/// and those on syscall tracepoints (faultable, and so preemptible, since Linux 6.14). The
/// signal and exec tracepoints run with preemption off (under the signal lock, or in a
/// tracepoint's own preempt-disabled section).
mod guard {
    /// The uprobe program's four copies (see `go_runtime`): 0 to 3.
    pub const GO_RUNTIME: u32 = 0;
    pub const TP_SYS_ENTER_TGKILL: u32 = 4;
    pub const TP_SYS_ENTER_TGKILL_SPARE: u32 = 5;
    pub const TP_SYS_EXIT_TGKILL: u32 = 6;
    pub const TP_SYS_EXIT_TGKILL_SPARE: u32 = 7;
    pub const RAW_SYS_ENTER: u32 = 8;
    pub const RAW_SYS_ENTER_SPARE: u32 = 9;
    pub const RAW_SYS_EXIT: u32 = 10;
    pub const RAW_SYS_EXIT_SPARE: u32 = 11;
    pub const COUNT: u32 = 12;
}

/// Per CPU and program: 1 while a run of the program is in progress on the CPU.
#[map]
static RUNNING: PerCpuArray<u64> = PerCpuArray::with_max_entries(guard::COUNT, 0);

/// Runs `body` unless a run of the same program (`slot`) is already in progress on this
/// CPU, and says whether it ran.
///
/// Linux 6.13+ gives a kprobe-type program whose BPF stack frame is 64 bytes or more a
/// per-CPU *private* stack, on the assumption that such programs are not preempted. Uprobe
/// programs are (since 6.0 they run with migration, not preemption, disabled), so on a
/// preemptible kernel a second task on the same CPU can run the program while the first
/// is halfway through and overwrite its frame: measured in Debian's 7.2 (PREEMPT_LAZY)
/// under qemu, a spilled map-value pointer was replaced by a timestamp and the kernel
/// oopsed (the same bug crashed OpenTelemetry's OBI, its issue 3056). The entry function
/// checks and sets this CPU's flag with one atomic exchange before calling `body`, in a
/// BPF function of its own whose frame may be private; the entry's frame stays under 48
/// bytes, so it is on the task's own kernel stack (checked by a unit test of the object).
/// A second run meanwhile touches no private frame and counts its record lost.
#[inline(always)]
fn exclusively(slot: u32, body: impl FnOnce()) -> bool {
    let Some(flag) = RUNNING.get_ptr_mut(slot) else {
        return false;
    };
    // SAFETY: a valid, aligned per-CPU map value for as long as the program runs.
    if unsafe { atomic_xchg::<u64, { AtomicOrdering::Acquire }>(flag, 1) } != 0 {
        return false;
    }
    body();
    // A plain store: only this CPU writes its flag, and an aligned 8-byte store is whole.
    // SAFETY: as above.
    unsafe { flag.write_volatile(0) };
    true
}

/// Reads a `T` from Go memory at `base + offset of field`, or `None` if the offset is
/// unknown, the base is nil, or the read faults (the latter counted in [`READ_ERRORS`]
/// and, with `goprobe -vv`, logged: the usual sign of a wrong struct layout).
#[inline(always)]
fn read_go<T, C: EbpfContext>(
    ctx: &C,
    kind: EventKind,
    binary: &BinaryConfig,
    base: u64,
    field: Field,
) -> Option<T> {
    let offset = binary.offset(field);
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
fn read_goid<C: EbpfContext>(ctx: &C, kind: EventKind, binary: &BinaryConfig, g_addr: u64) -> u64 {
    read_go::<u64, C>(ctx, kind, binary, g_addr, Field::GGoid)
        .unwrap_or(tracer_common::GOID_UNKNOWN)
}

/// A word of user memory, `None` if unreadable.
#[inline(always)]
fn read_user(addr: u64) -> Option<u64> {
    // SAFETY: bpf_probe_read_user fails instead of faulting.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic; this is never linked in.
    loop {}
}
