//! Loading the embedded BPF object and attaching it. [`LoadedTracer`] owns the object,
//! its maps and every link: [`LoadedTracer::detach`] closes the links in parallel, and
//! dropping it (or goprobe being killed: all links are file descriptors) detaches too.
//!
//! Uprobes are per binary (an inode), not per process: each binary gets its probes once,
//! as one uprobe_multi link where the kernel has them (6.6+, see [`multi`]) or one perf
//! link per probe otherwise, all running the one dispatching program `go_runtime` with
//! the probe's [`EventKind`] as attach cookie. Processes are then traced by entering them
//! in `TRACED_TGIDS` with their binary's slot in `BINARIES`.

pub mod multi;
mod sys;

use std::{collections::BTreeMap, num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{
        ProgramError, RawTracePoint, TracePoint, UProbe,
        uprobe::{UProbeAttachPoint, UProbeScope},
    },
    util::nr_cpus,
};
use thiserror::Error;
use tracer_common::{BinaryConfig, EventKind, Settings, TracedProcess, names, names::programs};

use crate::events::{KernelCounters, PerKind};

/// The kernel side, built by `build.rs` and embedded so `goprobe` is one file.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/goprobe-ebpf"));

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading the BPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("BPF program {program} not found in the embedded object (build mismatch)")]
    MissingProgram { program: &'static str },
    #[error("map {map} not found in the embedded object (build mismatch)")]
    MissingMap { map: &'static str },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the kernel rejected program {program}: {summary}{hint}")]
    Verifier {
        program: String,
        summary: String,
        /// Full verifier log, shown with -v.
        log: String,
        hint: &'static str,
    },
    #[error("program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("{0}")]
    Multi(#[source] multi::MultiError),
    #[error(
        "already tracing {} processes, the most goprobe can at once",
        tracer_common::MAX_PROCESSES
    )]
    TooManyProcesses,
}

/// How a binary's uprobes are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UprobeMode {
    /// One uprobe_multi link per binary (Linux 6.6+).
    Multi,
    /// One perf-event link per probe (older kernels).
    PerfLinks,
}

impl UprobeMode {
    pub fn describe(self) -> &'static str {
        match self {
            UprobeMode::Multi => "uprobe_multi (one link per binary)",
            UprobeMode::PerfLinks => {
                "perf-event links (one per probe; kernel without uprobe_multi)"
            }
        }
    }
}

/// The kernel counts the runs of a raw tracepoint program it skips since 6.2, of a
/// classic one since 6.7 (`bpf_prog_info.recursion_misses`).
pub const RAW_SKIPS_COUNTED_SINCE: (u32, u32) = (6, 2);
pub const CLASSIC_SKIPS_COUNTED_SINCE: (u32, u32) = (6, 7);

/// A link (a uprobe_multi fd, or one of aya's): dropping it detaches.
type OwnedLink = Box<dyn Send>;

pub struct LoadedTracer {
    ebpf: Ebpf,
    multi: Option<multi::MultiProgram>,
    /// Why uprobe_multi is not used, when it is not.
    multi_unavailable: Option<String>,
    links: Vec<OwnedLink>,
    /// Each traced process's index in [`names::YIELDS`], and the indexes free again.
    counters: std::collections::HashMap<u32, u32>,
    free_counters: Vec<u32>,
    /// The running kernel's `(major, minor)`: which programs' skipped runs it counts.
    kernel: (u32, u32),
}

/// aya-log's level global in the object (`aya_log_common::Level`: 0 off, 1 error … 5
/// trace), set before load so disabled log statements cost one load and a branch.
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

/// Kernel-side log records (aya-log), printed to stderr with a `goprobe[bpf]` prefix.
pub type KernelLog = aya_log::EbpfLogger<StderrLog>;

/// Prints the kernel side's log records as they come (only with -v).
pub async fn drain_kernel_log(log: KernelLog) -> std::io::Result<()> {
    // SAFETY: the logger owns its map fd for as long as the AsyncFd owns the logger.
    let mut fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(log, tokio::io::Interest::READABLE)
    }
    .map_err(|err| err.into_parts().1)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

/// Ring buffer sizes, bytes (powers of two, at least a page).
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    pub chain: u32,
    pub bulk: u32,
}

/// A ring this full (1/N of it unread) wakes its reader; below, it polls.
const WAKE_AT_FRACTION: u32 = 4;

impl LoadedTracer {
    /// Loads the object with `settings` baked in, the ring buffers sized as given, and
    /// kernel-side logging at `log_level` (0: off). Loads `go_runtime` for uprobe_multi
    /// too, where the kernel takes it.
    pub fn load(
        settings: &Settings,
        rings: RingSizes,
        log_level: u8,
    ) -> Result<LoadedTracer, LoadError> {
        let settings = Settings {
            chain_wake_bytes: rings.chain / WAKE_AT_FRACTION,
            bulk_wake_bytes: rings.bulk / WAKE_AT_FRACTION,
            ..*settings
        };
        let ebpf = EbpfLoader::new()
            .override_global(names::SETTINGS, &settings, true)
            .override_global(AYA_LOG_LEVEL, &log_level, true)
            .map_max_entries(names::EVENTS, rings.chain)
            .map_max_entries(names::BULK, rings.bulk)
            .load(OBJECT)
            .map_err(LoadError::Object)?;
        let (multi, multi_unavailable) =
            match multi::MultiProgram::load(&ebpf, OBJECT, programs::GO_RUNTIME) {
                Ok(program) => (Some(program), None),
                Err(err @ multi::MultiError::Unsupported) => (None, Some(err.to_string())),
                Err(multi::MultiError::Verifier {
                    program,
                    summary,
                    log,
                }) => {
                    return Err(LoadError::Verifier {
                        program,
                        summary,
                        log,
                        hint: " (run with -v for the verifier log)",
                    });
                }
                Err(err) => return Err(LoadError::Multi(err)),
            };
        Ok(LoadedTracer {
            ebpf,
            multi,
            multi_unavailable,
            links: Vec::new(),
            counters: std::collections::HashMap::new(),
            free_counters: (0..tracer_common::MAX_PROCESSES).rev().collect(),
            kernel: crate::host::kernel_version(&crate::host::kernel_release()),
        })
    }

    pub fn uprobe_mode(&self) -> UprobeMode {
        if self.multi.is_some() {
            UprobeMode::Multi
        } else {
            UprobeMode::PerfLinks
        }
    }

    /// Why uprobe_multi is not used (for the attach report), if it is not.
    pub fn multi_unavailable(&self) -> Option<&str> {
        self.multi_unavailable.as_deref()
    }

    /// Starts reading the kernel side's log records. The returned value must be kept (and
    /// flushed when readable): dropping it closes the log map.
    pub fn kernel_log(&mut self) -> Result<KernelLog, aya_log::Error> {
        aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, StderrLog)
    }

    fn map_mut(&mut self, map: &'static str) -> Result<&mut aya::maps::Map, LoadError> {
        self.ebpf.map_mut(map).ok_or(LoadError::MissingMap { map })
    }

    /// Puts a binary's struct layout in slot `slot` of `BINARIES`.
    pub fn set_binary(&mut self, slot: u32, config: &BinaryConfig) -> Result<(), LoadError> {
        let map = names::BINARIES;
        let mut binaries: Array<_, BinaryConfig> =
            Array::try_from(self.map_mut(map)?).map_err(|source| LoadError::Map { map, source })?;
        binaries
            .set(slot, config, 0)
            .map_err(|source| LoadError::Map { map, source })
    }

    /// Traces the process `tgid` (host pid) as a process of the binary in `slot`, with a
    /// zeroed yield counter.
    pub fn trace_process(&mut self, tgid: u32, slot: u32) -> Result<(), LoadError> {
        let map = names::YIELDS;
        let counter = match self.counters.get(&tgid) {
            Some(&counter) => counter,
            None => self
                .free_counters
                .pop()
                .ok_or(LoadError::TooManyProcesses)?,
        };
        self.counters.insert(tgid, counter);
        let cpus = nr_cpus().map_or(1, |n| n.max(1));
        let mut yields: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map_mut(map)?)
            .map_err(|source| LoadError::Map { map, source })?;
        let zeros = PerCpuValues::try_from(vec![0u64; cpus]).map_err(|source| LoadError::Map {
            map,
            source: aya::maps::MapError::IoError(source),
        })?;
        yields
            .set(counter, zeros, 0)
            .map_err(|source| LoadError::Map { map, source })?;
        let map = names::TRACED_TGIDS;
        let mut tgids: HashMap<_, u32, TracedProcess> = HashMap::try_from(self.map_mut(map)?)
            .map_err(|source| LoadError::Map { map, source })?;
        tgids
            .insert(
                tgid,
                TracedProcess {
                    binary: slot,
                    counter,
                },
                0,
            )
            .map_err(|source| LoadError::Map { map, source })
    }

    /// Stops tracing `tgid` (it exited, or its pid is about to be reused); its yield
    /// counter is zeroed when it is given to another process.
    pub fn untrace_process(&mut self, tgid: u32) -> Result<(), LoadError> {
        let map = names::TRACED_TGIDS;
        let mut tgids: HashMap<_, u32, TracedProcess> = HashMap::try_from(self.map_mut(map)?)
            .map_err(|source| LoadError::Map { map, source })?;
        let _ = tgids.remove(&tgid);
        if let Some(counter) = self.counters.remove(&tgid) {
            self.free_counters.push(counter);
        }
        Ok(())
    }

    /// Voluntary yields the kernel counted for `tgid` so far (0 if none or not traced).
    pub fn yields(&self, tgid: u32) -> u64 {
        let (Some(map), Some(&counter)) = (self.ebpf.map(names::YIELDS), self.counters.get(&tgid))
        else {
            return 0;
        };
        PerCpuArray::<_, u64>::try_from(map)
            .ok()
            .and_then(|yields| yields.get(&counter, 0).ok())
            .map_or(0, |values| values.iter().sum())
    }

    /// Attaches the uprobes `points` (file offset, cookie) in `binary` (pass
    /// `/proc/PID/exe` so the right inode is probed even across mount namespaces), for
    /// every process mapping it or only `pid`. Returns one result per point: all alike
    /// with uprobe_multi, which attaches them together. A failure to load is fatal (the
    /// object is ours: a bug or an unsupported kernel).
    pub fn attach_uprobes(
        &mut self,
        binary: &Path,
        points: &[(u64, u64)],
        pid: Option<NonZeroU32>,
    ) -> Result<Vec<Result<(), String>>, LoadError> {
        if points.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(program) = &self.multi {
            return Ok(
                match program.attach(binary, points, pid.map(NonZeroU32::get)) {
                    Ok(fd) => {
                        self.links.push(Box::new(fd));
                        vec![Ok(()); points.len()]
                    }
                    Err(err) => vec![Err(err.to_string()); points.len()],
                },
            );
        }
        let program = programs::GO_RUNTIME;
        let uprobe: &mut UProbe = program_mut(&mut self.ebpf, program)?;
        load_once(uprobe, program)?;
        let scope = pid.map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        let mut results = Vec::with_capacity(points.len());
        for &(offset, cookie) in points {
            let point = UProbeAttachPoint {
                location: offset.into(),
                cookie: Some(cookie),
            };
            let attached = uprobe
                .attach(point, binary, scope)
                .and_then(|id| uprobe.take_link(id));
            results.push(attached);
        }
        Ok(results
            .into_iter()
            .map(|attached| self.keep(attached))
            .collect())
    }

    /// Attaches the classic tracepoint `category:name` with `program`.
    pub fn attach_tracepoint(
        &mut self,
        program: &'static str,
        category: &str,
        name: &str,
    ) -> Result<Result<(), String>, LoadError> {
        let tracepoint: &mut TracePoint = program_mut(&mut self.ebpf, program)?;
        load_once(tracepoint, program)?;
        let attached = tracepoint
            .attach(category, name)
            .and_then(|id| tracepoint.take_link(id));
        Ok(self.keep(attached))
    }

    /// Attaches the raw tracepoint `name` with `program`.
    pub fn attach_raw_tracepoint(
        &mut self,
        program: &'static str,
        name: &str,
    ) -> Result<Result<(), String>, LoadError> {
        let tracepoint: &mut RawTracePoint = program_mut(&mut self.ebpf, program)?;
        load_once(tracepoint, program)?;
        let attached = tracepoint
            .attach(name)
            .and_then(|id| tracepoint.take_link(id));
        Ok(self.keep(attached))
    }

    /// Keeps a new link until detach; an attach error as text for the report.
    fn keep<L: Send + 'static>(&mut self, attached: Result<L, ProgramError>) -> Result<(), String> {
        attached
            .map(|link| self.links.push(Box::new(link)))
            .map_err(|err| error_chain(&err))
    }

    /// Takes the ring buffer `map` out of the object (once).
    pub fn take_ring(&mut self, map: &'static str) -> Result<RingBuf<MapData>, LoadError> {
        let data = self
            .ebpf
            .take_map(map)
            .ok_or(LoadError::MissingMap { map })?;
        RingBuf::try_from(data).map_err(|source| LoadError::Map { map, source })
    }

    /// The kernel side's per-kind counters so far, summed over CPUs.
    pub fn counters(&self) -> Result<KernelCounters, LoadError> {
        let read = |map: &'static str| {
            let data = self.ebpf.map(map).ok_or(LoadError::MissingMap { map })?;
            let array = PerCpuArray::<_, u64>::try_from(data)
                .map_err(|source| LoadError::Map { map, source })?;
            per_kind_of(&array, map)
        };
        Ok(KernelCounters {
            submitted: read(names::SUBMITTED)?,
            lost: read(names::LOST)?,
            read_errors: read(names::READ_ERRORS)?,
            skipped: self.skipped_runs(),
        })
    }

    /// Runs the kernel skipped, per loaded tracepoint program, on kernels that count
    /// them: raw tracepoint programs since 6.2, classic ones since 6.7. uprobe programs
    /// are never skipped (the kernel runs them nested; the program's own guard counts
    /// what it cannot take as lost). A count that cannot be read is left out: it is a
    /// safeguard, not worth failing a run over.
    fn skipped_runs(&self) -> BTreeMap<String, u64> {
        use std::os::fd::AsFd as _;
        let counted = |program: &aya::programs::Program| match program {
            aya::programs::Program::RawTracePoint(_) => self.kernel >= RAW_SKIPS_COUNTED_SINCE,
            aya::programs::Program::TracePoint(_) => self.kernel >= CLASSIC_SKIPS_COUNTED_SINCE,
            _ => false,
        };
        let mut skipped = BTreeMap::new();
        for (name, program) in self.ebpf.programs().filter(|(_, p)| counted(p)) {
            let Ok(fd) = program.fd() else { continue };
            if let Ok(Some(misses)) = sys::recursion_misses(fd.as_fd()) {
                skipped.insert(name.to_string(), misses);
            }
        }
        skipped
    }

    /// Detaches every probe, closing the links in parallel (each uprobe or tracepoint
    /// close waits for an RCU grace period; side by side the waits overlap), then returns
    /// the kernel side's final counters. Records counted as submitted are in the ring
    /// buffers.
    pub fn detach(mut self) -> Result<KernelCounters, LoadError> {
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|scope| {
            for link in links {
                // A thread that cannot start closes its link here, serially.
                let spawned = std::thread::Builder::new()
                    .name("goprobe-detach".into())
                    .spawn_scoped(scope, move || drop(link));
                drop(spawned);
            }
        });
        self.counters()
    }
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let found = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram { program })?;
    found
        .try_into()
        .map_err(|source| LoadError::Program { program, source })
}

/// Sums a per-CPU per-kind counter array.
fn per_kind_of<T: std::borrow::Borrow<MapData>>(
    array: &PerCpuArray<T, u64>,
    map: &'static str,
) -> Result<PerKind, LoadError> {
    let mut counts = PerKind::default();
    for kind in EventKind::ALL {
        let values = array
            .get(&(kind as u32), 0)
            .map_err(|source| LoadError::Map { map, source })?;
        counts.0[kind as usize] = values.iter().sum();
    }
    Ok(counts)
}

/// How this kernel attaches a binary's uprobes, found by loading the object with small
/// rings (needs CAP_BPF and CAP_PERFMON): a load error is the kernel refusing the object.
pub fn probe_uprobe_mode(settings: &Settings) -> Result<String, LoadError> {
    let rings = RingSizes {
        chain: 64 * 1024,
        bulk: 4096,
    };
    let tracer = LoadedTracer::load(settings, rings, 0)?;
    Ok(match tracer.uprobe_mode() {
        UprobeMode::Multi => "uprobe_multi".to_string(),
        UprobeMode::PerfLinks => format!(
            "perf-event uprobe links ({})",
            tracer.multi_unavailable().unwrap_or("no uprobe_multi")
        ),
    })
}

/// A `log::Log` for the kernel side's records: stderr, never panicking.
pub struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        crate::diag!("goprobe[bpf] {}: {}", record.level(), record.args());
    }

    fn flush(&self) {}
}

/// Loads `program` unless it already is (one program serves many attach points).
fn load_once<P: Loadable>(program: &mut P, name: &'static str) -> Result<(), LoadError> {
    if program.is_loaded() {
        return Ok(());
    }
    program.load_program().map_err(|source| match source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            LoadError::Verifier {
                program: name.to_owned(),
                summary: verifier_summary(&io_error.to_string(), &log),
                log,
                hint: " (run with -v for the verifier log)",
            }
        }
        source => LoadError::Program {
            program: name,
            source,
        },
    })
}

/// One line out of a verifier log: the last line that says what went wrong, with any
/// helper the kernel does not know named.
fn verifier_summary(io_error: &str, log: &str) -> String {
    if log.trim().is_empty() {
        return io_error.to_string();
    }
    format!("{} ({io_error})", multi::last_complaint(log))
}

/// BPF helpers the kernel side calls that are newer than the ring buffer (5.8), by id,
/// with the release that added them (include/uapi/linux/bpf.h).
const NEWER_HELPERS: [(u32, &str, &str); 4] = [
    (158, "bpf_get_current_task_btf", "5.11"),
    (173, "bpf_get_func_ip", "5.15"),
    (174, "bpf_get_attach_cookie", "5.15"),
    (175, "bpf_task_pt_regs", "5.15"),
];

/// A kernel too old for a helper calls it `unknown#ID`: say which one, and which Linux
/// release has it.
pub(crate) fn name_unknown_helpers(complaint: &str) -> String {
    let mut text = complaint.to_string();
    for (id, name, release) in NEWER_HELPERS {
        let unknown = format!("unknown#{id}");
        if let Some(at) = text.find(&unknown) {
            let end = at + unknown.len();
            // `unknown#15` must not match inside `unknown#158`.
            if !text[end..].starts_with(|c: char| c.is_ascii_digit()) {
                text.insert_str(
                    end,
                    &format!(" (helper {name}: needs Linux {release} or newer)"),
                );
            }
        }
    }
    text
}

trait Loadable {
    fn is_loaded(&self) -> bool;
    fn load_program(&mut self) -> Result<(), ProgramError>;
}

macro_rules! loadable {
    ($($program:ty),*) => {$(
        impl Loadable for $program {
            fn is_loaded(&self) -> bool {
                self.fd().is_ok()
            }
            fn load_program(&mut self) -> Result<(), ProgramError> {
                self.load()
            }
        }
    )*};
}

loadable!(UProbe, TracePoint, RawTracePoint);

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_summary_picks_the_complaint() {
        let log = "0: (79) r1 = *(u64 *)(r1 +0)\nR1 invalid mem access 'scalar'\n\
                   processed 12 insns (limit 1000000)\n";
        assert_eq!(
            verifier_summary("Permission denied (os error 13)", log),
            "R1 invalid mem access 'scalar' (Permission denied (os error 13))"
        );
        assert_eq!(verifier_summary("EINVAL", ""), "EINVAL");
        assert_eq!(
            verifier_summary(
                "EINVAL",
                "0: (85) call unknown#158\ninvalid func unknown#158\n"
            ),
            "invalid func unknown#158 (helper bpf_get_current_task_btf: needs Linux 5.11 or \
             newer) (EINVAL)"
        );
    }

    #[test]
    fn embedded_object_has_every_program_and_map() {
        // The object is an ELF file whose symbol table names every program and map; a
        // name defined on one side only would fail here, not at load time on a user's host.
        use object::{Object as _, ObjectSymbol as _};
        let file = object::File::parse(OBJECT).expect("embedded object parses");
        let symbols: Vec<_> = file.symbols().filter_map(|s| s.name().ok()).collect();
        for probe in crate::probes::PROBES {
            assert!(
                symbols.contains(&probe.program),
                "program {}",
                probe.program
            );
        }
        for map in [
            names::EVENTS,
            names::BULK,
            names::TRACED_TGIDS,
            names::YIELDS,
            names::BINARIES,
            names::SUBMITTED,
            names::LOST,
            names::READ_ERRORS,
            names::SEQUENCE,
            names::SETTINGS,
        ] {
            assert!(symbols.contains(&map), "map/global {map}");
        }
    }

    /// Bytes of BPF stack a function's code uses: the deepest `r10 - N` it reads, writes or
    /// points at (what the verifier takes as the function's stack depth).
    fn stack_depth(code: &[u8]) -> u32 {
        let mut deepest = 0i64;
        let mut copies_of_fp = [false; 11];
        for insn in code.chunks_exact(8) {
            let (op, dst, src) = (insn[0], insn[1] & 0xf, insn[1] >> 4);
            let off = i64::from(i16::from_le_bytes([insn[2], insn[3]]));
            let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            let class = op & 0x07;
            let base = match class {
                0x01 => Some(src),        // LDX
                0x02 | 0x03 => Some(dst), // ST, STX
                _ => None,
            };
            if base == Some(10) {
                deepest = deepest.min(off);
            }
            let dst = usize::from(dst);
            match op {
                // r_dst = r10 (MOV64 X): a pointer into the frame.
                0xbf if dst < 11 => copies_of_fp[dst] = src == 10,
                // r_dst += imm on such a copy.
                0x07 if dst < 11 && copies_of_fp[dst] => deepest = deepest.min(imm),
                _ if (class == 0x07 || class == 0x04 || class == 0x01) && dst < 11 => {
                    copies_of_fp[dst] = false;
                }
                _ => {}
            }
        }
        u32::try_from(-deepest).unwrap_or(0)
    }

    /// Linux 6.13+ runs a kprobe- or tracepoint-type program whose frame is 64 bytes or
    /// more (rounded up to 16) on a per-CPU private stack, which a preempted run shares with
    /// the next run on that CPU (see `exclusively` in tracer-ebpf). The programs that can be
    /// preempted keep their entry function, which takes the per-CPU guard, under that: its
    /// frame is the task's own kernel stack.
    #[test]
    fn preemptible_programs_guard_on_the_kernel_stack() {
        use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
        let file = object::File::parse(OBJECT).expect("embedded object parses");
        for program in [
            programs::GO_RUNTIME,
            programs::TP_SYS_ENTER_TGKILL,
            programs::TP_SYS_EXIT_TGKILL,
            programs::RAW_SYS_ENTER,
            programs::RAW_SYS_EXIT,
        ] {
            let symbol = file
                .symbols()
                .find(|s| s.kind() == SymbolKind::Text && s.name() == Ok(program))
                .unwrap_or_else(|| panic!("no function {program}"));
            let section = file
                .section_by_index(symbol.section_index().expect("in a section"))
                .expect("its section");
            let data = section.data().expect("section data");
            let start = usize::try_from(symbol.address()).unwrap();
            let code = &data[start..start + usize::try_from(symbol.size()).unwrap()];
            let depth = stack_depth(code);
            assert!(
                depth <= 48,
                "{program}: its entry uses {depth} bytes of BPF stack; at 64 or more (rounded \
                 up to 16) Linux 6.13+ moves it to the private stack its guard protects"
            );
        }
    }

    #[test]
    fn stack_depth_of_bpf_code() {
        // *(u32 *)(r10 -4) = r1; r2 = r10; r2 += -120; exit
        let code = [
            [0x63, 0x1a, 0xfc, 0xff, 0, 0, 0, 0],
            [0xbf, 0xa2, 0, 0, 0, 0, 0, 0],
            [0x07, 0x02, 0, 0, 0x88, 0xff, 0xff, 0xff],
            [0x95, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(stack_depth(&code), 120);
        assert_eq!(stack_depth(&code[..8]), 4);
    }
}
