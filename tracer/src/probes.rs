//! Probe planning: the declarative table of what goprobe hooks, and the decision, for one
//! Go binary, of where each probe goes (or why it is not attached).
//!
//! A missing optional function (inlined by this Go release) is a line in the attach
//! report, not a failure; a missing required one is an error naming the link of the
//! chain that would go unobserved.

use std::{
    fmt,
    io::{self, Write as _},
    path::Path,
};

use tracer_common::{EventKind, names::programs};

use crate::{
    chain::Link,
    gobin::{Function, GoBinary, GoVersion},
    placement::{self, ConstArg},
    summary::ProbeLine,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    /// A Go runtime function's entry (placed after its stack check), by its Go name (no
    /// `.abi0` suffix).
    Function {
        function: &'static str,
        /// Prefer the ABIInternal body over an 18-byte `.abi0` wrapper of the same name.
        skip_abi0_wrapper: bool,
    },
    /// The direct calls to `callee` from the functions `callers` (those present): a point
    /// only one path reaches, where the callee's entry is reached by others too.
    Calls {
        callee: &'static str,
        callers: &'static [&'static str],
        /// Only the calls whose argument register is loaded with this constant just
        /// before: which of a caller's several calls to `callee` the probe is for.
        arg: Option<ConstArg>,
        /// Where to probe when this release makes no such call (inlined differently): a
        /// function's entry, whose hook filters what the call site would have.
        entry_fallback: Option<&'static str>,
    },
    Tracepoint {
        category: &'static str,
        name: &'static str,
    },
    /// A raw tracepoint: the tracepoint's own arguments, no perf event.
    RawTracepoint { name: &'static str },
}

impl ProbeTarget {
    pub fn is_uprobe(&self) -> bool {
        matches!(self, Self::Function { .. } | Self::Calls { .. })
    }
}

impl fmt::Display for ProbeTarget {
    /// The function's Go name (`calls to X` for call sites), or `category:name` of a
    /// tracepoint; `pad` so that column widths such as `{:<26}` apply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Function { function, .. } => f.pad(function),
            Self::Calls { callee, .. } => f.pad(&format!("calls to {callee}")),
            Self::Tracepoint { category, name } => f.pad(&format!("{category}:{name}")),
            Self::RawTracepoint { name } => f.pad(&format!("raw:{name}")),
        }
    }
}

/// When a probe applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only when goroutine run slices were asked for (`--slices`, `--perfetto`): the hook
    /// fires on every goroutine switch.
    SlicesRequested,
    /// Only when voluntary yields are to be counted (`--yields`, `--slices`): a
    /// Gosched-heavy program makes millions a second.
    YieldsRequested,
    /// Where the kernel has BTF (raw tracepoints read `task_struct` through it).
    RawTracepoints,
    /// Where it has not: the classic tracepoints instead.
    ClassicTracepoints,
    /// `tgkill` from raw `sys_enter`/`sys_exit` (`--syscall-hooks raw`, with BTF).
    RawSyscalls,
    /// `sys_enter_tgkill` (`--syscall-hooks classic`).
    SyscallEntryEvent,
    /// `sys_exit_tgkill` (`--syscall-hooks exit` or `classic`).
    SyscallExitEvent,
    /// A successful `tgkill` recorded at the raw `signal_generate` (`--syscall-hooks none`,
    /// the default, or `exit`; with BTF).
    TgkillAtRawGenerate,
    /// The same at the classic `signal_generate` (no BTF).
    TgkillAtClassicGenerate,
}

/// How `tgkill` is hooked (`--syscall-hooks`). A syscall event, once enabled, makes every
/// syscall on the host take the kernel's slow path, and its perf link waits for RCU on
/// close: the default hooks none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SyscallHooks {
    /// No syscall hook: a call that succeeds is recorded where it generates the signal; one
    /// that fails is inferred (a `signalM` whose thread generates no signal), errno unknown.
    #[default]
    None,
    /// `sys_exit_tgkill` too, for the errno of failed calls (`goprobe verify` uses it).
    Exit,
    /// `sys_enter_tgkill` too: every call as it enters, SIGURGs sent into a traced
    /// process from outside included.
    Classic,
    /// Raw `sys_enter`/`sys_exit` filtered in BPF (needs kernel BTF; without it,
    /// `classic`).
    Raw,
}

impl SyscallHooks {
    /// A successful `tgkill` is recorded at the `signal_generate` it causes, from the
    /// sender's saved registers, instead of at its syscall entry.
    pub fn tgkill_at_generate(self) -> bool {
        matches!(self, SyscallHooks::None | SyscallHooks::Exit)
    }
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
    /// The record it produces; for uprobes also the attach cookie.
    pub kind: EventKind,
    pub program: &'static str,
    /// The link of the chain it observes (`None`: run slices, voluntary yields).
    pub link: Option<Link>,
    pub target: ProbeTarget,
    pub requirement: Requirement,
    pub condition: Condition,
    /// What the probe tells the user, for the attach report.
    pub observes: &'static str,
}

impl ProbeSpec {
    /// The link's name for reports: the chain link, else what the probe observes.
    pub fn link_name(&self) -> &'static str {
        match (self.link, self.kind) {
            (Some(link), _) => link.describe(),
            (None, EventKind::Execute) => "run",
            (None, EventKind::TgkillFailed) => "SIGURG refused",
            (None, _) => "yield",
        }
    }
}

const fn go(function: &'static str) -> ProbeTarget {
    ProbeTarget::Function {
        function,
        skip_abi0_wrapper: false,
    }
}

/// Where the runtime reschedules a preempted goroutine: `goschedImpl(gp, true)`, called
/// from `gopreempt_m` (a real function up to 1.25; `asyncPreempt2` mcalls it), from
/// `newstack` (where 1.22+ inlines `gopreempt_m`: the stack-check path) and from
/// `asyncPreempt2.func1` (1.26+).
const PREEMPTION_CALLERS: &[&str] = &[
    "runtime.gopreempt_m",
    "runtime.newstack",
    "runtime.asyncPreempt2",
    "runtime.asyncPreempt2.func1",
];
/// `_Gscan | _Grunning` in `g.atomicstatus` (stable since Go 1.0).
const G_SCANRUNNING: u64 = 0x1002;

/// Where `runtime.Gosched` reaches it: voluntary yields.
const YIELD_CALLERS: &[&str] = &["runtime.gosched_m", "runtime.goschedguarded_m"];

/// Every probe goprobe knows, in chain order.
pub const PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        kind: EventKind::SysmonTick,
        program: programs::GO_RUNTIME,
        link: Some(Link::Tick),
        target: go("runtime.retake"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "each sysmon tick and its `now`",
    },
    ProbeSpec {
        kind: EventKind::PreemptOne,
        program: programs::GO_RUNTIME,
        link: Some(Link::Request),
        target: go("runtime.preemptone"),
        requirement: Requirement::Optional {
            absent_note: "no per-P requests; signalM still shows them",
        },
        condition: Condition::Always,
        observes: "which P (and G) sysmon or stop-the-world asks to stop",
    },
    ProbeSpec {
        kind: EventKind::PreemptM,
        program: programs::GO_RUNTIME,
        link: Some(Link::SignalM),
        target: go("runtime.preemptM"),
        requirement: Requirement::Optional {
            absent_note: "inlined into preemptone and suspendG; observed through signalM",
        },
        condition: Condition::Always,
        observes: "every preemption request to an M",
    },
    ProbeSpec {
        kind: EventKind::SignalM,
        program: programs::GO_RUNTIME,
        link: Some(Link::SignalM),
        target: go("runtime.signalM"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "which M (thread) is sent SIGURG, and by whom (preemptone or suspendG)",
    },
    ProbeSpec {
        kind: EventKind::SuspendG,
        program: programs::GO_RUNTIME,
        link: Some(Link::Request),
        // The GC calls `suspendG` for every goroutine of every cycle (27 000 calls a second
        // in an HTTP server under load); only the `_Grunning` case, which claims the
        // goroutine with `castogscanstatus(gp, _Grunning, _Gscanrunning)`, preempts. That
        // call (`MOVL $0x1002, CX` before it in 1.21-1.27) is probed, else the entry.
        target: ProbeTarget::Calls {
            callee: "runtime.castogscanstatus",
            callers: &["runtime.suspendG"],
            arg: Some(ConstArg {
                register: placement::ArgRegister::Rcx,
                value: G_SCANRUNNING,
            }),
            entry_fallback: Some("runtime.suspendG"),
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "the GC asking a running goroutine to stop for a stack scan",
    },
    ProbeSpec {
        kind: EventKind::Execute,
        program: programs::GO_RUNTIME,
        link: None,
        target: go("runtime.execute"),
        requirement: Requirement::Required,
        condition: Condition::SlicesRequested,
        observes: "a goroutine starting to run (run slices)",
    },
    ProbeSpec {
        kind: EventKind::Tgkill,
        program: programs::RAW_SIGNAL_GENERATE,
        link: Some(Link::Tgkill),
        target: ProbeTarget::RawTracepoint {
            name: "signal_generate",
        },
        requirement: Requirement::Required,
        condition: Condition::TgkillAtRawGenerate,
        observes: "tgkill(SIGURG) that generates the signal: sender and target thread",
    },
    ProbeSpec {
        kind: EventKind::Tgkill,
        program: programs::TP_SIGNAL_GENERATE,
        link: Some(Link::Tgkill),
        target: ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_generate",
        },
        requirement: Requirement::Required,
        condition: Condition::TgkillAtClassicGenerate,
        observes: "tgkill(SIGURG) that generates the signal: sender and target thread",
    },
    ProbeSpec {
        kind: EventKind::Tgkill,
        program: programs::RAW_SYS_ENTER,
        link: Some(Link::Tgkill),
        target: ProbeTarget::RawTracepoint { name: "sys_enter" },
        requirement: Requirement::Required,
        condition: Condition::RawSyscalls,
        observes: "tgkill(SIGURG): sender and target thread",
    },
    ProbeSpec {
        kind: EventKind::Tgkill,
        program: programs::TP_SYS_ENTER_TGKILL,
        link: Some(Link::Tgkill),
        target: ProbeTarget::Tracepoint {
            category: "syscalls",
            name: "sys_enter_tgkill",
        },
        requirement: Requirement::Required,
        condition: Condition::SyscallEntryEvent,
        observes: "tgkill(SIGURG): sender and target thread",
    },
    ProbeSpec {
        kind: EventKind::TgkillFailed,
        program: programs::RAW_SYS_EXIT,
        link: None,
        target: ProbeTarget::RawTracepoint { name: "sys_exit" },
        requirement: Requirement::Required,
        condition: Condition::RawSyscalls,
        observes: "tgkill(SIGURG) failing, and its errno (seccomp refusals included)",
    },
    ProbeSpec {
        kind: EventKind::TgkillFailed,
        program: programs::TP_SYS_EXIT_TGKILL,
        link: None,
        target: ProbeTarget::Tracepoint {
            category: "syscalls",
            name: "sys_exit_tgkill",
        },
        requirement: Requirement::Required,
        condition: Condition::SyscallExitEvent,
        observes: "tgkill(SIGURG) failing, and its errno (seccomp refusals included)",
    },
    ProbeSpec {
        kind: EventKind::SignalGenerate,
        program: programs::RAW_SIGNAL_GENERATE,
        link: Some(Link::Generate),
        target: ProbeTarget::RawTracepoint {
            name: "signal_generate",
        },
        requirement: Requirement::Required,
        condition: Condition::RawTracepoints,
        observes: "SIGURG queued, or coalesced with one already pending",
    },
    ProbeSpec {
        kind: EventKind::SignalGenerate,
        program: programs::TP_SIGNAL_GENERATE,
        link: Some(Link::Generate),
        target: ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_generate",
        },
        requirement: Requirement::Required,
        condition: Condition::ClassicTracepoints,
        observes: "SIGURG queued, or coalesced with one already pending",
    },
    ProbeSpec {
        kind: EventKind::SignalDeliver,
        program: programs::RAW_SIGNAL_DELIVER,
        link: Some(Link::Deliver),
        target: ProbeTarget::RawTracepoint {
            name: "signal_deliver",
        },
        requirement: Requirement::Required,
        condition: Condition::RawTracepoints,
        observes: "SIGURG delivered to the target thread, and its user PC",
    },
    ProbeSpec {
        kind: EventKind::SignalDeliver,
        program: programs::TP_SIGNAL_DELIVER,
        link: Some(Link::Deliver),
        target: ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_deliver",
        },
        requirement: Requirement::Required,
        condition: Condition::ClassicTracepoints,
        observes: "SIGURG delivered to the target thread, and its user PC",
    },
    ProbeSpec {
        kind: EventKind::DoSigPreempt,
        program: programs::GO_RUNTIME,
        link: Some(Link::Handler),
        target: go("runtime.doSigPreempt"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "the signal handler examining the goroutine at the interrupted PC",
    },
    ProbeSpec {
        kind: EventKind::AsyncPreempt2,
        program: programs::GO_RUNTIME,
        link: Some(Link::AsyncPreempt2),
        target: ProbeTarget::Function {
            function: "runtime.asyncPreempt2",
            skip_abi0_wrapper: true,
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "each asynchronous preemption: goroutine and interrupted PC",
    },
    ProbeSpec {
        kind: EventKind::GoschedImpl,
        program: programs::GO_RUNTIME,
        link: Some(Link::Off),
        target: ProbeTarget::Calls {
            callee: "runtime.goschedImpl",
            callers: PREEMPTION_CALLERS,
            arg: None,
            entry_fallback: Some("runtime.goschedImpl"),
        },
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "a preempted goroutine put back on the run queue",
    },
    ProbeSpec {
        kind: EventKind::Yield,
        program: programs::GO_RUNTIME,
        link: None,
        target: ProbeTarget::Calls {
            callee: "runtime.goschedImpl",
            callers: YIELD_CALLERS,
            arg: None,
            entry_fallback: None,
        },
        requirement: Requirement::Required,
        condition: Condition::YieldsRequested,
        observes: "voluntary yields (runtime.Gosched), counted in the kernel",
    },
    ProbeSpec {
        kind: EventKind::PreemptPark,
        program: programs::GO_RUNTIME,
        link: Some(Link::Off),
        target: go("runtime.preemptPark"),
        requirement: Requirement::Required,
        condition: Condition::Always,
        observes: "goroutine parked for a suspendG (GC stack scan)",
    },
];

/// Facts about a Go release that change which functions exist and what they take, and
/// the user's choices that change the plan the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// `goschedImpl(gp *g, preempted bool)`: Go 1.22+.
    pub gosched_has_preempted_arg: bool,
    /// Put every uprobe at its function's entry instead of the emulated `PUSHQ BP` after
    /// the stack check (for the benchmark that compares the two).
    pub at_entry: bool,
    /// Attach `runtime.execute` for run slices.
    pub slices: bool,
    /// Count voluntary yields.
    pub yields: bool,
    /// The kernel's BTF gave `task_struct.pid`: raw tracepoints for the signal events.
    pub raw_tracepoints: bool,
    /// `--syscall-hooks`, as asked (README, "Limitations": detach time against the cost
    /// of every syscall on the host).
    pub syscall_hooks: SyscallHooks,
}

impl ReleaseFacts {
    /// The hooks used: raw ones need BTF, else the syscall events.
    pub fn syscall_hooks(&self) -> SyscallHooks {
        match self.syscall_hooks {
            SyscallHooks::Raw if !self.raw_tracepoints => SyscallHooks::Classic,
            hooks => hooks,
        }
    }

    /// A successful `tgkill` is recorded at the `signal_generate` it causes.
    pub fn tgkill_at_generate(&self) -> bool {
        self.syscall_hooks().tgkill_at_generate()
    }

    pub fn for_version(version: &GoVersion) -> ReleaseFacts {
        ReleaseFacts {
            gosched_has_preempted_arg: (version.major, version.minor) >= (1, 22),
            at_entry: false,
            slices: false,
            yields: false,
            raw_tracepoints: true,
            syscall_hooks: SyscallHooks::None,
        }
    }

    fn allows(&self, condition: Condition) -> bool {
        match condition {
            Condition::Always => true,
            Condition::SlicesRequested => self.slices,
            Condition::YieldsRequested => self.yields || self.slices,
            Condition::RawTracepoints => self.raw_tracepoints,
            Condition::ClassicTracepoints => !self.raw_tracepoints,
            Condition::RawSyscalls => self.syscall_hooks() == SyscallHooks::Raw,
            Condition::SyscallEntryEvent => self.syscall_hooks() == SyscallHooks::Classic,
            Condition::SyscallExitEvent => matches!(
                self.syscall_hooks(),
                SyscallHooks::Exit | SyscallHooks::Classic
            ),
            Condition::TgkillAtRawGenerate => self.tgkill_at_generate() && self.raw_tracepoints,
            Condition::TgkillAtClassicGenerate => {
                self.tgkill_at_generate() && !self.raw_tracepoints
            }
        }
    }
}

/// Where in a function a uprobe goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The function the probed instruction is in.
    pub function: String,
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
    /// One uprobe per placement (several for call sites), all with the spec's cookie.
    Uprobe {
        placements: Vec<Placement>,
    },
    Tracepoint,
    /// Not used (its condition is false).
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

    /// `(file offset, cookie)` of each uprobe this probe puts in the binary.
    pub fn uprobe_points(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let placements = match &self.status {
            PlanStatus::Uprobe { placements } => placements.as_slice(),
            _ => &[],
        };
        placements
            .iter()
            .map(|placement| (placement.file_offset, self.spec.kind as u64))
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
    let mut names: Vec<&str> = Vec::new();
    for spec in PROBES {
        match spec.target {
            ProbeTarget::Function { function, .. } => names.push(function),
            ProbeTarget::Calls {
                callee,
                callers,
                entry_fallback,
                ..
            } => {
                names.push(callee);
                names.extend_from_slice(callers);
                names.extend(entry_fallback);
            }
            ProbeTarget::Tracepoint { .. } | ProbeTarget::RawTracepoint { .. } => {}
        }
    }
    names.sort_unstable();
    names.dedup();
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
            Condition::YieldsRequested => "yields not requested (--yields)",
            Condition::RawTracepoints => {
                "the classic tracepoint instead (no kernel BTF, or --classic-tracepoints)"
            }
            Condition::RawSyscalls if facts.syscall_hooks == SyscallHooks::Raw => {
                "the syscall events instead (no kernel BTF, or --classic-tracepoints)"
            }
            Condition::RawSyscalls => "not asked (--syscall-hooks raw)",
            Condition::SyscallEntryEvent if facts.syscall_hooks() == SyscallHooks::Raw => {
                "raw sys_enter/sys_exit instead (--syscall-hooks raw)"
            }
            Condition::SyscallEntryEvent => {
                "tgkill is recorded where it generates the signal (--syscall-hooks classic \
                 hooks its entry)"
            }
            Condition::SyscallExitEvent if facts.syscall_hooks() == SyscallHooks::Raw => {
                "raw sys_exit instead (--syscall-hooks raw)"
            }
            Condition::SyscallExitEvent => {
                "a failed tgkill is inferred, errno unknown (--syscall-hooks exit hooks it)"
            }
            Condition::TgkillAtRawGenerate | Condition::TgkillAtClassicGenerate
                if !facts.tgkill_at_generate() =>
            {
                "tgkill hooked at its syscall entry (--syscall-hooks)"
            }
            Condition::TgkillAtRawGenerate => {
                "the classic tracepoint instead (no kernel BTF, or --classic-tracepoints)"
            }
            _ => "the raw tracepoint instead",
        };
        return Ok(PlanStatus::NotApplicable {
            reason: reason.into(),
        });
    }
    let absent = || match spec.requirement {
        Requirement::Required => PlanStatus::Absent {
            note: format!(
                "not found: the {} link ({}) is not observed",
                spec.link_name(),
                spec.observes
            ),
            unexpected: true,
        },
        Requirement::Optional { absent_note } => PlanStatus::Absent {
            note: absent_note.into(),
            unexpected: false,
        },
    };
    match spec.target {
        ProbeTarget::Tracepoint { .. } | ProbeTarget::RawTracepoint { .. } => {
            Ok(PlanStatus::Tracepoint)
        }
        ProbeTarget::Function {
            function: name,
            skip_abi0_wrapper,
        } => {
            let Some(function) = pick_function(lookup(name), skip_abi0_wrapper) else {
                return Ok(absent());
            };
            Ok(PlanStatus::Uprobe {
                placements: vec![place(binary, &function, facts.at_entry)?],
            })
        }
        ProbeTarget::Calls {
            callee,
            callers,
            arg,
            entry_fallback,
        } => {
            let Some(target) = pick_function(lookup(callee), false) else {
                return Ok(absent());
            };
            let mut placements = Vec::new();
            for caller in callers {
                for function in lookup(caller) {
                    placements.extend(calls_in(binary, &function, &target, arg)?);
                }
            }
            if !placements.is_empty() {
                return Ok(PlanStatus::Uprobe { placements });
            }
            // No call site where this release makes them (a newer release inlining
            // differently): a function's entry, whose hook filters what the call site
            // would have. `goschedImpl`'s entry tells preemptions from yields by
            // `preempted` (Go 1.22+); Go 1.21 has no such argument.
            let usable = entry_fallback
                .filter(|_| spec.kind != EventKind::GoschedImpl || facts.gosched_has_preempted_arg);
            let Some(function) = usable.and_then(|name| pick_function(lookup(name), false)) else {
                return Ok(absent());
            };
            let mut at_entry = place(binary, &function, facts.at_entry)?;
            at_entry.reason = match spec.kind {
                EventKind::GoschedImpl => {
                    "entry (no call on the preemption path found); `preempted` tells \
                     preemptions from yields"
                }
                _ => "entry (no such call found); the hook filters",
            };
            Ok(PlanStatus::Uprobe {
                placements: vec![at_entry],
            })
        }
    }
}

/// The emulated direct calls to `target` inside `function`.
fn calls_in(
    binary: &GoBinary,
    function: &Function,
    target: &Function,
    arg: Option<ConstArg>,
) -> Result<Vec<Placement>, PlanError> {
    let Some(code) = binary.read_code(function.entry, function.size() as usize) else {
        return Ok(Vec::new());
    };
    placement::call_sites(code, function.entry, target.entry, arg)
        .into_iter()
        .map(|offset| {
            let vaddr = function.entry + offset;
            Ok(Placement {
                function: function.name.clone(),
                vaddr,
                file_offset: file_offset(binary, function, vaddr)?,
                offset_in_function: offset,
                instruction: format!("CALL {}", target.name),
                reason: "call on this path only (CALL is emulated)",
            })
        })
        .collect()
}

fn file_offset(binary: &GoBinary, function: &Function, vaddr: u64) -> Result<u64, PlanError> {
    binary
        .file_offset(vaddr)
        .ok_or_else(|| PlanError::NoFileOffset {
            function: function.name.clone(),
            vaddr,
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
    Ok(Placement {
        function: function.name.clone(),
        vaddr,
        file_offset: file_offset(binary, function, vaddr)?,
        offset_in_function: offset,
        instruction,
        reason,
    })
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:#x} {} (file offset {:#x}; {})",
            self.function, self.offset_in_function, self.instruction, self.file_offset, self.reason
        )
    }
}

impl fmt::Display for PlannedProbe {
    /// One line for `--list-probes`: link, target, program, status (each placement of a
    /// call-site probe on a line of its own).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match &self.status {
            PlanStatus::Uprobe { placements } => placements
                .iter()
                .map(|placement| format!("uprobe at {placement}"))
                .collect::<Vec<_>>()
                .join(&format!("\n{:71}", "")),
            PlanStatus::Tracepoint => "tracepoint".into(),
            PlanStatus::NotApplicable { reason } => format!("not used: {reason}"),
            PlanStatus::Absent { note, .. } => format!("absent: {note}"),
        };
        write!(
            f,
            "{:<19} {:<28} {:<21} {status}",
            self.spec.link_name(),
            self.spec.target,
            self.spec.program
        )
    }
}

/// Warnings about the plan: a function every supported release has was not found.
pub fn plan_warnings(plan: &[PlannedProbe]) -> impl Iterator<Item = String> + '_ {
    plan.iter().filter_map(|planned| match &planned.status {
        PlanStatus::Absent {
            note,
            unexpected: true,
        } => Some(format!("{} {note}", planned.spec.target)),
        _ => None,
    })
}

/// `--list-probes`: the binary, its release and layout, then one line per probe.
pub fn print_plan(
    path: &Path,
    version: &str,
    offsets_source: &str,
    plan: &[PlannedProbe],
) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} ({version}; struct offsets from {offsets_source})",
        path.display()
    )?;
    writeln!(
        out,
        "{:<19} {:<28} {:<21} status",
        "link", "hooked", "program"
    )?;
    for planned in plan {
        writeln!(out, "{planned}")?;
    }
    out.flush()
}

/// The attach report: one line per probe of the plan, from how its uprobe points
/// (`uprobe_results`, in [`PlannedProbe::uprobe_points`] order over the plan) and its
/// tracepoints fared. A required probe that failed to attach is an error naming its link.
pub fn attach_report(
    plan: &[PlannedProbe],
    uprobe_results: &[Result<(), String>],
    tracepoint_results: &[(&'static str, EventKind, Result<(), String>)],
) -> anyhow::Result<Vec<ProbeLine>> {
    let mut uprobe_results = uprobe_results.iter();
    let mut lines = Vec::new();
    for planned in plan {
        let spec = planned.spec;
        let result: Option<Result<(), String>> = match &planned.status {
            PlanStatus::Uprobe { placements } => {
                let mut first_error = None;
                for _ in placements {
                    if let Some(Err(err)) = uprobe_results.next() {
                        first_error.get_or_insert_with(|| err.clone());
                    }
                }
                Some(first_error.map_or(Ok(()), Err))
            }
            PlanStatus::Tracepoint => tracepoint_results
                .iter()
                .find(|(program, kind, _)| *program == spec.program && *kind == spec.kind)
                .map(|(_, _, result)| result.clone()),
            _ => None,
        };
        let (status, attached) = match (&planned.status, result) {
            (status, Some(Ok(()))) => (attached_text(status), true),
            (_, Some(Err(err))) => {
                if spec.requirement == Requirement::Required {
                    anyhow::bail!(
                        "attaching {} ({}) failed: {err}; the {} link cannot be observed",
                        spec.program,
                        spec.target,
                        spec.link_name()
                    );
                }
                crate::diag!(
                    "goprobe: warning: {} not attached ({err}); the {} link is not observed",
                    spec.target,
                    spec.link_name()
                );
                (format!("failed: {err}"), false)
            }
            (PlanStatus::Absent { note, .. }, None) => (format!("absent: {note}"), false),
            (PlanStatus::NotApplicable { reason }, None) => (format!("not used: {reason}"), false),
            (_, None) => ("not attached".into(), false),
        };
        lines.push(ProbeLine {
            link: spec.link_name(),
            program: spec.program,
            target: spec.target.to_string(),
            status,
            attached,
        });
    }
    Ok(lines)
}

fn attached_text(status: &PlanStatus) -> String {
    match status {
        PlanStatus::Uprobe { placements } => placements
            .iter()
            .map(|p| match p.instruction.as_str() {
                "" => format!("attached at {} entry", p.function),
                instruction => format!(
                    "attached at {}+{:#x} {instruction}",
                    p.function, p.offset_in_function
                ),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "attached".into(),
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
        let uprobe = go("runtime.retake");
        let tracepoint = ProbeTarget::Tracepoint {
            category: "signal",
            name: "signal_deliver",
        };
        let calls = ProbeTarget::Calls {
            callee: "runtime.goschedImpl",
            callers: YIELD_CALLERS,
            arg: None,
            entry_fallback: None,
        };
        assert_eq!(format!("{uprobe:<16}|"), "runtime.retake  |");
        assert_eq!(format!("{tracepoint:<22}|"), "signal:signal_deliver |");
        assert_eq!(format!("{calls}"), "calls to runtime.goschedImpl");
        assert_eq!(
            format!(
                "{}",
                ProbeTarget::RawTracepoint {
                    name: "signal_generate"
                }
            ),
            "raw:signal_generate"
        );
    }

    #[test]
    fn each_kind_has_one_probe_per_tracepoint_flavour() {
        // Uprobe cookies are kinds: two uprobe specs of one kind would be indistinguishable.
        let mut uprobe_kinds: Vec<_> = PROBES
            .iter()
            .filter(|p| p.target.is_uprobe())
            .map(|p| p.kind)
            .collect();
        uprobe_kinds.sort_unstable();
        let len = uprobe_kinds.len();
        uprobe_kinds.dedup();
        assert_eq!(uprobe_kinds.len(), len);
        assert!(
            PROBES
                .iter()
                .filter(|p| p.target.is_uprobe())
                .all(|p| p.program == programs::GO_RUNTIME)
        );
        for kind in [EventKind::SignalGenerate, EventKind::SignalDeliver] {
            let flavours: Vec<_> = PROBES.iter().filter(|p| p.kind == kind).collect();
            assert_eq!(flavours.len(), 2, "{kind:?}: raw and classic");
        }
    }

    #[test]
    fn conditions_follow_the_facts() {
        let v = |minor| GoVersion {
            major: 1,
            minor,
            patch: 0,
            raw: format!("go1.{minor}"),
        };
        let old = ReleaseFacts::for_version(&v(21));
        assert!(!old.gosched_has_preempted_arg);
        assert!(ReleaseFacts::for_version(&v(22)).gosched_has_preempted_arg);
        assert!(ReleaseFacts::for_version(&v(27)).gosched_has_preempted_arg);
        assert!(!old.allows(Condition::YieldsRequested));
        assert!(!old.allows(Condition::SlicesRequested));
        let slices = ReleaseFacts {
            slices: true,
            ..old
        };
        assert!(
            slices.allows(Condition::YieldsRequested),
            "slices need the yields"
        );
        assert!(old.allows(Condition::RawTracepoints));
        let no_btf = ReleaseFacts {
            raw_tracepoints: false,
            ..old
        };
        assert!(no_btf.allows(Condition::ClassicTracepoints));
        assert!(!no_btf.allows(Condition::RawTracepoints));
    }
}
