//! Probe planning: the declarative table of what goprobe hooks, and the decision, for one
//! Go binary, of where each probe goes (or why it is not attached).
//!
//! A missing optional function (inlined by this Go release) is a line in the attach
//! report, not a failure; a missing required one is an error naming the link of the
//! chain that would go unobserved.

use std::fmt;

use tracer_common::names::programs;

use crate::{
    gobin::{Function, GoBinary, GoVersion},
    placement,
};

/// A link of the preemption chain, as the user thinks of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainLink {
    SysmonTick,
    PreemptionRequest,
    SignalSent,
    SignalGenerated,
    SignalDelivered,
    HandlerDecision,
    AsyncPreemption,
    Reschedule,
    Park,
    /// Not a link of the chain: a goroutine starting to run.
    Run,
}

impl ChainLink {
    pub fn name(self) -> &'static str {
        match self {
            Self::SysmonTick => "sysmon tick",
            Self::PreemptionRequest => "preemption request",
            Self::SignalSent => "SIGURG sent",
            Self::SignalGenerated => "SIGURG generated",
            Self::SignalDelivered => "SIGURG delivered",
            Self::HandlerDecision => "handler decision",
            Self::AsyncPreemption => "async preemption",
            Self::Reschedule => "reschedule",
            Self::Park => "park",
            Self::Run => "run",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    /// A Go runtime function, by its Go name (no `.abi0` suffix).
    Uprobe {
        function: &'static str,
        /// Prefer the ABIInternal body over an 18-byte `.abi0` wrapper of the same name.
        skip_abi0_wrapper: bool,
    },
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
}

impl fmt::Display for ProbeTarget {
    /// The function's Go name, or `category:name` of a tracepoint; `pad` so that
    /// column widths such as `{:<26}` apply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uprobe { function, .. } => f.pad(function),
            Self::Tracepoint { category, name } => f.pad(&format!("{category}:{name}")),
        }
    }
}

/// When a probe applies to a binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only when goroutine run slices were asked for (`--slices`, `--perfetto`): the hook
    /// fires on every goroutine switch.
    SlicesRequested,
    /// Only Go releases whose `goschedImpl` lacks the `preempted` argument (1.21): there
    /// `gopreempt_m` is a real function and the only way to tell preemption from
    /// `Gosched`. From 1.22 it is inlined into `newstack`, so a probe on it would miss
    /// stack-check preemptions.
    GoschedLacksPreemptedArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Every supported release has it; its absence is a warning naming the link that
    /// goes unobserved (the rest is still traced).
    Required,
    /// Absent in some releases by design; its absence is a note, `absent_note`.
    Optional { absent_note: &'static str },
}

#[derive(Debug)]
pub struct ProbeSpec {
    pub program: &'static str,
    pub link: ChainLink,
    pub target: ProbeTarget,
    pub requirement: Requirement,
    pub condition: Condition,
    /// What the probe tells the user, for the attach report.
    pub observes: &'static str,
}

const fn go(function: &'static str) -> ProbeTarget {
    ProbeTarget::Uprobe {
        function,
        skip_abi0_wrapper: false,
    }
}

/// Every probe goprobe knows, in chain order.
pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: programs::GO_RETAKE,
        link: ChainLink::SysmonTick,
        target: go("runtime.retake"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "each sysmon tick and its `now`",
    },
    ProbeSpec {
        program: programs::GO_PREEMPTONE,
        link: ChainLink::PreemptionRequest,
        target: go("runtime.preemptone"),
        requirement: Requirement::Optional {
            absent_note: "no per-P requests; signalM still shows them",
        },
        condition: Condition::Always,
        observes: "which P (and G) sysmon or stop-the-world asks to stop",
    },
    ProbeSpec {
        program: programs::GO_PREEMPTM,
        link: ChainLink::PreemptionRequest,
        target: go("runtime.preemptM"),
        requirement: Requirement::Optional {
            absent_note: "inlined into preemptone and suspendG; observed through signalM",
        },
        condition: Condition::Always,
        observes: "every preemption request to an M",
    },
    ProbeSpec {
        program: programs::GO_SIGNALM,
        link: ChainLink::PreemptionRequest,
        target: go("runtime.signalM"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "which M (thread) is sent SIGURG, and by whom (preemptone or suspendG)",
    },
    ProbeSpec {
        program: programs::GO_SUSPEND_G,
        link: ChainLink::PreemptionRequest,
        target: go("runtime.suspendG"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "the GC asking a goroutine to stop for a stack scan",
    },
    ProbeSpec {
        program: programs::GO_EXECUTE,
        link: ChainLink::Run,
        target: go("runtime.execute"),
        requirement: Requirement::Required,
        condition: Condition::SlicesRequested,
        observes: "a goroutine starting to run (run slices)",
    },
    ProbeSpec {
        program: programs::TP_SYS_ENTER_TGKILL,
        link: ChainLink::SignalSent,
        target: ProbeTarget::Tracepoint {
            category: "syscalls",
            name: "sys_enter_tgkill",
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "tgkill(SIGURG): sender and target thread",
    },
    ProbeSpec {
        program: programs::TP_SIGNAL_GENERATE,
        link: ChainLink::SignalGenerated,
        target: ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_generate",
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "SIGURG queued, or coalesced with one already pending",
    },
    ProbeSpec {
        program: programs::TP_SIGNAL_DELIVER,
        link: ChainLink::SignalDelivered,
        target: ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_deliver",
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "SIGURG delivered to the target thread, and its user PC",
    },
    ProbeSpec {
        program: programs::GO_DO_SIG_PREEMPT,
        link: ChainLink::HandlerDecision,
        target: go("runtime.doSigPreempt"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "the signal handler examining the goroutine at the interrupted PC",
    },
    ProbeSpec {
        program: programs::GO_ASYNC_PREEMPT2,
        link: ChainLink::AsyncPreemption,
        target: ProbeTarget::Uprobe {
            function: "runtime.asyncPreempt2",
            skip_abi0_wrapper: true,
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "each asynchronous preemption: goroutine and interrupted PC",
    },
    ProbeSpec {
        program: programs::GO_GOSCHED_IMPL,
        link: ChainLink::Reschedule,
        target: go("runtime.goschedImpl"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "goroutine put back on the run queue (preempted, or Gosched)",
    },
    ProbeSpec {
        program: programs::GO_GOPREEMPT_M,
        link: ChainLink::Reschedule,
        target: go("runtime.gopreempt_m"),
        requirement: Requirement::Optional {
            absent_note: "not a real function in this release",
        },
        condition: Condition::GoschedLacksPreemptedArg,
        observes: "preemption (not Gosched) rescheduling a goroutine",
    },
    ProbeSpec {
        program: programs::GO_PREEMPT_PARK,
        link: ChainLink::Park,
        target: go("runtime.preemptPark"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "goroutine parked for a suspendG (GC stack scan)",
    },
];

/// Facts about a Go release that change which functions exist and what they take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// `goschedImpl(gp *g, preempted bool)`: Go 1.22+.
    pub gosched_has_preempted_arg: bool,
    /// Put every uprobe at its function's entry instead of the emulated `PUSHQ BP` after
    /// the stack check (for the benchmark that compares the two).
    pub at_entry: bool,
    /// Attach `runtime.execute` for run slices (a choice of the user, not of the release,
    /// but it decides the plan the same way).
    pub slices: bool,
}

impl ReleaseFacts {
    pub fn for_version(version: &GoVersion) -> ReleaseFacts {
        ReleaseFacts {
            gosched_has_preempted_arg: (version.major, version.minor) >= (1, 22),
            at_entry: false,
            slices: false,
        }
    }

    fn allows(&self, condition: Condition) -> bool {
        match condition {
            Condition::Always => true,
            Condition::GoschedLacksPreemptedArg => !self.gosched_has_preempted_arg,
            Condition::SlicesRequested => self.slices,
        }
    }
}

/// Where in a function the uprobe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Link-time virtual address of the probed instruction.
    pub vaddr: u64,
    /// Its offset in the binary file (what the kernel takes).
    pub file_offset: u64,
    /// Bytes from the function's entry (0 = entry).
    pub offset_in_function: u64,
    /// The probed instruction, Go assembler syntax (`PUSHQ BP`).
    pub instruction: String,
    /// Why there (see [`crate::placement::reasons`]).
    pub reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanStatus {
    Uprobe {
        function: Function,
        placement: Placement,
    },
    Tracepoint,
    /// Not used with this release (its condition is false).
    NotApplicable {
        reason: String,
    },
    /// The function is not in the binary. `unexpected` when every supported release has
    /// it (the user is warned that its link goes unobserved).
    Absent {
        note: String,
        unexpected: bool,
    },
}

#[derive(Debug)]
pub struct PlannedProbe {
    pub spec: &'static ProbeSpec,
    pub status: PlanStatus,
}

impl PlannedProbe {
    pub fn will_attach(&self) -> bool {
        matches!(
            self.status,
            PlanStatus::Uprobe { .. } | PlanStatus::Tracepoint
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "none of the Go runtime functions goprobe hooks (runtime.retake, runtime.signalM, \
         runtime.asyncPreempt2, ...) is in this binary"
    )]
    NothingToHook,
    #[error("{function} at {vaddr:#x} is outside every loadable segment of the binary")]
    NoFileOffset { function: String, vaddr: u64 },
}

/// Decides every probe's fate for `binary`.
pub fn plan(binary: &GoBinary, facts: ReleaseFacts) -> Result<Vec<PlannedProbe>, PlanError> {
    // One pass over the symbol table (or pclntab) for every name: a big binary has
    // hundreds of thousands of functions, and a dozen separate scans were most of
    // goprobe's start-up.
    let names: Vec<&str> = PROBES
        .iter()
        .filter_map(|spec| match spec.target {
            ProbeTarget::Uprobe { function, .. } => Some(function),
            ProbeTarget::Tracepoint { .. } => None,
        })
        .collect();
    let found = binary.functions_named_many(&names);
    let lookup = |name: &str| -> Vec<Function> {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| found.get(i).cloned())
            .unwrap_or_default()
    };
    let plan = PROBES
        .iter()
        .map(|spec| {
            let status = plan_one(binary, facts, spec, &lookup)?;
            Ok(PlannedProbe { spec, status })
        })
        .collect::<Result<Vec<_>, PlanError>>()?;
    if !plan
        .iter()
        .any(|p| matches!(p.status, PlanStatus::Uprobe { .. }))
    {
        return Err(PlanError::NothingToHook);
    }
    Ok(plan)
}

fn plan_one(
    binary: &GoBinary,
    facts: ReleaseFacts,
    spec: &'static ProbeSpec,
    lookup: &dyn Fn(&str) -> Vec<Function>,
) -> Result<PlanStatus, PlanError> {
    if !facts.allows(spec.condition) {
        let reason = match spec.condition {
            Condition::SlicesRequested => "run slices not requested (--slices)",
            _ => "goschedImpl's `preempted` argument tells preemption apart",
        };
        return Ok(PlanStatus::NotApplicable {
            reason: reason.into(),
        });
    }
    let ProbeTarget::Uprobe {
        function: name,
        skip_abi0_wrapper,
    } = spec.target
    else {
        return Ok(PlanStatus::Tracepoint);
    };
    let Some(function) = pick_function(lookup(name), skip_abi0_wrapper) else {
        return Ok(match spec.requirement {
            Requirement::Required => PlanStatus::Absent {
                note: format!("not found: the {} link is not observed", spec.link.name()),
                unexpected: true,
            },
            Requirement::Optional { absent_note } => PlanStatus::Absent {
                note: absent_note.into(),
                unexpected: false,
            },
        });
    };
    let placement = place(binary, &function, facts.at_entry)?;
    Ok(PlanStatus::Uprobe {
        function,
        placement,
    })
}

/// Among same-named functions, the real body: with a symbol table the wrapper is marked
/// `.abi0`; from pclntab alone both carry the plain name and the wrapper is the smaller.
fn pick_function(mut candidates: Vec<Function>, skip_abi0_wrapper: bool) -> Option<Function> {
    if skip_abi0_wrapper && candidates.iter().any(|f| !f.abi0) {
        candidates.retain(|f| !f.abi0);
    }
    candidates.into_iter().max_by_key(|f| f.end - f.entry)
}

/// Longest prologue we look at: the stack check and `PUSHQ BP` sit in the first 30 bytes.
const PROLOGUE_WINDOW: u64 = 64;

/// On the first instruction every call runs once and the kernel emulates (`PUSHQ BP` after
/// the stack check), else at the entry. An entry uprobe costs a single-step trap per hit,
/// and fires twice whenever the stack check fails — exactly on cooperative preemption.
fn place(binary: &GoBinary, function: &Function, at_entry: bool) -> Result<Placement, PlanError> {
    let entry = function.entry;
    let chosen = if at_entry {
        None
    } else {
        // The whole function when small (so the morestack stub is checked too), else the
        // prologue window.
        let len = (function.end - entry)
            .min(4096)
            .max(PROLOGUE_WINDOW.min(function.end - entry));
        binary
            .read_code(entry, len as usize)
            .map(|code| placement::placement(code, entry))
    };
    let (offset, instruction, reason) = match chosen {
        Some(p) => (p.offset, p.instruction, p.reason),
        None => (0, String::new(), "entry: requested (--entry-probes)"),
    };
    let vaddr = entry + offset;
    let file_offset = binary
        .file_offset(vaddr)
        .ok_or_else(|| PlanError::NoFileOffset {
            function: function.name.clone(),
            vaddr,
        })?;
    Ok(Placement {
        vaddr,
        file_offset,
        offset_in_function: offset,
        instruction,
        reason,
    })
}

impl fmt::Display for PlannedProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self.spec.target;
        let status = match &self.status {
            PlanStatus::Uprobe { placement, .. } => format!(
                "uprobe at +{:#x} {} (file offset {:#x}; {})",
                placement.offset_in_function,
                placement.instruction,
                placement.file_offset,
                placement.reason
            ),
            PlanStatus::Tracepoint => "tracepoint".into(),
            PlanStatus::NotApplicable { reason } => format!("not used: {reason}"),
            PlanStatus::Absent { note, .. } => format!("absent: {note}"),
        };
        write!(
            f,
            "{:<19} {:<26} {:<22} {status}",
            self.spec.link.name(),
            target,
            self.spec.program
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, entry: u64, size: u64, abi0: bool) -> Function {
        Function {
            name: name.into(),
            entry,
            end: entry + size,
            abi0,
        }
    }

    #[test]
    fn picks_real_async_preempt2_over_its_wrapper() {
        let wrapper = function("runtime.asyncPreempt2", 0x1000, 18, true);
        let real = function("runtime.asyncPreempt2", 0x2000, 90, false);
        assert_eq!(
            pick_function(vec![wrapper.clone(), real.clone()], true),
            Some(real.clone())
        );
        // Stripped binary: both unmarked, the larger is the body.
        let unmarked = function("runtime.asyncPreempt2", 0x1000, 18, false);
        assert_eq!(
            pick_function(vec![unmarked, real.clone()], true),
            Some(real)
        );
        assert_eq!(pick_function(vec![], true), None);
    }

    #[test]
    fn targets_display_as_go_name_or_tracepoint_path_and_pad() {
        let uprobe = ProbeTarget::Uprobe {
            function: "runtime.retake",
            skip_abi0_wrapper: false,
        };
        let tracepoint = ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_deliver",
        };
        assert_eq!(format!("{uprobe:<16}|"), "runtime.retake  |");
        assert_eq!(format!("{tracepoint:<22}|"), "signal:signal_deliver |");
    }

    #[test]
    fn table_names_are_unique_and_in_the_object_namespace() {
        let mut names: Vec<_> = PROBES.iter().map(|p| p.program).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PROBES.len());
    }

    #[test]
    fn gopreempt_m_only_without_preempted_arg() {
        let old = ReleaseFacts {
            gosched_has_preempted_arg: false,
            at_entry: false,
            slices: false,
        };
        let new = ReleaseFacts {
            gosched_has_preempted_arg: true,
            ..old
        };
        assert!(old.allows(Condition::GoschedLacksPreemptedArg));
        assert!(!new.allows(Condition::GoschedLacksPreemptedArg));
        let v = |minor| GoVersion {
            major: 1,
            minor,
            patch: 0,
            raw: format!("go1.{minor}"),
        };
        assert_eq!(ReleaseFacts::for_version(&v(21)), old);
        assert_eq!(ReleaseFacts::for_version(&v(22)), new);
        assert_eq!(ReleaseFacts::for_version(&v(27)), new);
    }
}
