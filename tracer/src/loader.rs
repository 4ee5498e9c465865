//! Loading the embedded BPF object and attaching it. [`LoadedTracer`] owns the object,
//! its maps and every link: dropping it detaches everything (and the kernel does the same
//! if goprobe is killed, since all links are file descriptors).

use std::{num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, TracePoint, UProbe, uprobe::UProbeScope},
};
use thiserror::Error;
use tracer_common::{EventKind, KIND_COUNT, ProbeConfig, names};

use crate::probes::{PlanStatus, PlannedProbe, ProbeTarget};

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
        program: &'static str,
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
}

/// How one planned probe ended up.
#[derive(Debug)]
pub struct AttachOutcome {
    pub program: &'static str,
    pub result: Result<(), String>,
}

pub struct LoadedTracer {
    ebpf: Ebpf,
}

/// aya-log's level global in the object (`aya_log_common::Level`: 0 off, 1 error … 5
/// trace), set before load so disabled log statements cost one load and a branch.
const AYA_LOG_LEVEL: &str = "AYA_LOG_LEVEL";

/// Kernel-side log records (aya-log), printed to stderr with a `goprobe[bpf]` prefix.
pub type KernelLog = aya_log::EbpfLogger<StderrLog>;

impl LoadedTracer {
    /// Loads the object with `config` baked in, a ring buffer of `ringbuf_bytes`, and
    /// kernel-side logging at `log_level` (0: off).
    pub fn load(
        config: &ProbeConfig,
        ringbuf_bytes: u32,
        log_level: u8,
    ) -> Result<LoadedTracer, LoadError> {
        let ebpf = EbpfLoader::new()
            .override_global(names::PROBE_CONFIG, config, true)
            .override_global(AYA_LOG_LEVEL, &log_level, true)
            .map_max_entries(names::EVENTS, ringbuf_bytes)
            .load(OBJECT)
            .map_err(LoadError::Object)?;
        Ok(LoadedTracer { ebpf })
    }

    /// Starts reading the kernel side's log records. The returned value must be kept (and
    /// flushed when readable): dropping it closes the log map.
    pub fn kernel_log(&mut self) -> Result<KernelLog, aya_log::Error> {
        aya_log::EbpfLogger::init_with_logger(&mut self.ebpf, StderrLog)
    }

    /// Keeps events of `tgid` (tracepoints see every process; uprobes are scoped anyway).
    pub fn trace_tgid(&mut self, tgid: u32) -> Result<(), LoadError> {
        let map = self
            .ebpf
            .map_mut(names::TRACED_TGIDS)
            .ok_or(LoadError::MissingMap {
                map: names::TRACED_TGIDS,
            })?;
        let mut tgids: HashMap<_, u32, u32> =
            HashMap::try_from(map).map_err(|source| LoadError::Map {
                map: names::TRACED_TGIDS,
                source,
            })?;
        tgids.insert(tgid, 1, 0).map_err(|source| LoadError::Map {
            map: names::TRACED_TGIDS,
            source,
        })
    }

    /// Loads and attaches every probe the plan keeps. Uprobes are scoped to `pid` and
    /// placed in `binary` (pass `/proc/PID/exe` so the right inode is probed even across
    /// mount namespaces). A failure to load is fatal (the object is ours: it's a bug or an
    /// unsupported kernel); a failure to attach one probe is reported and the rest go on.
    pub fn attach(
        &mut self,
        plan: &[PlannedProbe],
        binary: &Path,
        pid: NonZeroU32,
    ) -> Result<Vec<AttachOutcome>, LoadError> {
        let mut outcomes = Vec::new();
        for planned in plan.iter().filter(|p| p.will_attach()) {
            let program = planned.spec.program;
            let result = match (&planned.status, planned.spec.target) {
                (PlanStatus::Uprobe { placement, .. }, ProbeTarget::Uprobe { .. }) => {
                    let uprobe: &mut UProbe = self.program_mut(program)?;
                    load_once(uprobe, program)?;
                    uprobe
                        .attach(placement.file_offset, binary, UProbeScope::OneProcess(pid))
                        .map(drop)
                }
                (_, ProbeTarget::Tracepoint { category, name }) => {
                    let tracepoint: &mut TracePoint = self.program_mut(program)?;
                    load_once(tracepoint, program)?;
                    tracepoint.attach(category, name).map(drop)
                }
                _ => unreachable!("plan status and target kind always agree"),
            };
            outcomes.push(AttachOutcome {
                program,
                result: result.map_err(|err| error_chain(&err)),
            });
        }
        Ok(outcomes)
    }

    fn program_mut<'a, P>(&'a mut self, program: &'static str) -> Result<&'a mut P, LoadError>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let found = self
            .ebpf
            .program_mut(program)
            .ok_or(LoadError::MissingProgram { program })?;
        found
            .try_into()
            .map_err(|source| LoadError::Program { program, source })
    }

    /// Takes the ring buffer out of the object (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or(LoadError::MissingMap { map: names::EVENTS })?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            map: names::EVENTS,
            source,
        })
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
        })
    }

    /// Detaches every probe and unloads the programs, then returns the kernel side's
    /// final per-kind counters. Records counted as submitted are in the ring buffer.
    pub fn detach(mut self) -> Result<KernelCounters, LoadError> {
        let mut take = |map: &'static str| {
            let data = self
                .ebpf
                .take_map(map)
                .ok_or(LoadError::MissingMap { map })?;
            PerCpuArray::<MapData, u64>::try_from(data)
                .map_err(|source| LoadError::Map { map, source })
        };
        let (submitted, lost, read_errors) = (
            take(names::SUBMITTED)?,
            take(names::LOST)?,
            take(names::READ_ERRORS)?,
        );
        drop(self.ebpf);
        Ok(KernelCounters {
            submitted: per_kind_of(&submitted, names::SUBMITTED)?,
            lost: per_kind_of(&lost, names::LOST)?,
            read_errors: per_kind_of(&read_errors, names::READ_ERRORS)?,
        })
    }
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

/// Loads `program` unless it already is (one program may serve several attach points).
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
                program: name,
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

/// One line out of a verifier log: the last line that says what went wrong.
fn verifier_summary(io_error: &str, log: &str) -> String {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|line| {
            !line.is_empty()
                && !line.starts_with("processed ")
                && !line.starts_with("verification time")
                && !line.starts_with("stack depth")
        })
        .map_or_else(
            || io_error.to_string(),
            |line| format!("{line} ({io_error})"),
        )
}

trait Loadable {
    fn is_loaded(&self) -> bool;
    fn load_program(&mut self) -> Result<(), ProgramError>;
}

impl Loadable for UProbe {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

impl Loadable for TracePoint {
    fn is_loaded(&self) -> bool {
        self.fd().is_ok()
    }
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
}

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

/// Counts indexed by [`EventKind`] value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerKind(pub [u64; KIND_COUNT as usize]);

impl PerKind {
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind as usize]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub submitted: PerKind,
    pub lost: PerKind,
    pub read_errors: PerKind,
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
            names::TRACED_TGIDS,
            names::SUBMITTED,
            names::LOST,
            names::READ_ERRORS,
            names::PROBE_CONFIG,
        ] {
            assert!(symbols.contains(&map), "map/global {map}");
        }
    }
}
