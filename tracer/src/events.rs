//! Owned events, decoded from the kernel's wire records as soon as they leave the ring
//! buffer. Nothing downstream sees raw bytes.

use std::mem::size_of;

use thiserror::Error;
use tracer_common::{
    EventHeader, EventKind, GOID_UNKNOWN, GoroutineHook, KIND_COUNT, PreemptRequest, ProcessExec,
    SignalDeliver, SignalGenerate, SignalM, SysmonTick, Tgkill, TgkillFailed, goroutine_flags,
    signal_result,
};

/// One decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// CLOCK_MONOTONIC nanoseconds (the clock of Go's `nanotime`).
    pub ts_ns: u64,
    /// Host thread id and process id.
    pub tid: u32,
    pub tgid: u32,
    pub cpu: u32,
    /// The CPU's sequence number in the record's ring ([`EventHeader::seq`]).
    pub seq: u64,
    pub data: EventData,
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
    pub fn add(&mut self, kind: EventKind) {
        self.0[kind as usize] += 1;
    }
}

/// What the kernel side counted, per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub submitted: PerKind,
    pub lost: PerKind,
    pub read_errors: PerKind,
    /// Runs of each program the kernel itself skipped, where it counts them
    /// (`bpf_prog_info.recursion_misses`): events goprobe never saw, of unknown kind.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

impl KernelCounters {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Events goprobe did not get: records lost to a full ring and runs the kernel skipped.
    pub fn lost_total(&self) -> u64 {
        self.lost.total() + self.skipped_total()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventData {
    SysmonTick {
        now_ns: i64,
    },
    PreemptRequest {
        p_addr: u64,
        caller_pc: u64,
        schedwhen_ns: Option<i64>,
        m_tid: Option<u32>,
        goid: Option<u64>,
        p_id: Option<i32>,
        schedtick: u32,
    },
    /// `signalM` or `preemptM`.
    SignalM {
        m_addr: u64,
        caller_pc: u64,
        m_tid: Option<u32>,
        m_id: Option<i64>,
        goid: Option<u64>,
        p_id: Option<i32>,
        sig: u32,
    },
    Tgkill {
        target_tgid: u32,
        target_tid: u32,
        sig: u32,
    },
    /// `tgkill` returned `-errno` (`sig` 0 when the sender's registers were unreadable).
    TgkillFailed {
        target_tgid: u32,
        target_tid: u32,
        sig: u32,
        errno: u32,
    },
    SignalGenerate {
        target_tid: u32,
        sig: u32,
        code: i32,
        group: bool,
        result: SignalResult,
    },
    /// A process exec'd (`--all` only).
    ProcessExec,
    SignalDeliver {
        user_pc: u64,
        user_sp: u64,
        sig: u32,
        code: i32,
    },
    /// `doSigPreempt`, `asyncPreempt2`, `goschedImpl`, yields, `preemptPark`, `suspendG`,
    /// `execute`.
    Goroutine {
        g_addr: u64,
        goid: Option<u64>,
        /// Interrupted PC (`doSigPreempt`) or resume PC (`asyncPreempt2`), else `None`.
        pc: Option<u64>,
        g_status: Option<u32>,
        /// `goschedImpl`'s `preempted` argument where the release has it.
        preempted: Option<bool>,
        /// `(gp.preempt, gp.preemptStop)` when readable.
        preempt_flags: Option<(bool, bool)>,
    },
}

/// `enum trace_signal_result` of the kernel's `signal_generate` tracepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SignalResult {
    /// Queued for delivery.
    Delivered,
    Ignored,
    /// Coalesced with a SIGURG already pending on the thread: no second delivery.
    AlreadyPending,
    OverflowFail,
    LoseInfo,
    Unknown(u32),
}

impl SignalResult {
    fn from_raw(raw: u32) -> Self {
        match raw {
            signal_result::DELIVERED => Self::Delivered,
            signal_result::IGNORED => Self::Ignored,
            signal_result::ALREADY_PENDING => Self::AlreadyPending,
            signal_result::OVERFLOW_FAIL => Self::OverflowFail,
            signal_result::LOSE_INFO => Self::LoseInfo,
            other => Self::Unknown(other),
        }
    }

    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("record has unknown kind {0}")]
    UnknownKind(u32),
}

/// Stable, user-facing name of a kind (JSON `kind`, text output, summary rows).
pub fn kind_name(kind: EventKind) -> &'static str {
    kind.into()
}

/// Reads a `T` from the start of `bytes`; ring buffer records are only 8-byte aligned
/// and may be shorter than expected if the two sides disagree, so check, then copy.
fn read<T: aya::Pod>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: length checked; `T: Pod` is valid for any bit pattern; unaligned read.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

fn known_goid(goid: u64) -> Option<u64> {
    (goid != GOID_UNKNOWN).then_some(goid)
}

fn nonzero_tid(tid: u64) -> Option<u32> {
    (tid != 0).then_some(tid as u32)
}

impl Event {
    /// Decodes one ring buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let header: EventHeader = read(bytes, "header")?;
        let kind =
            EventKind::try_from(header.kind).map_err(|err| DecodeError::UnknownKind(err.number))?;
        let data = match kind {
            EventKind::SysmonTick => {
                let SysmonTick { now_ns, .. } = read(bytes, "sysmon tick")?;
                EventData::SysmonTick { now_ns }
            }
            EventKind::PreemptOne => {
                let r: PreemptRequest = read(bytes, "preemption request")?;
                EventData::PreemptRequest {
                    p_addr: r.p_addr,
                    caller_pc: r.caller_pc,
                    schedwhen_ns: (r.schedwhen_ns != 0).then_some(r.schedwhen_ns),
                    m_tid: nonzero_tid(r.m_tid),
                    goid: known_goid(r.goid),
                    p_id: (r.p_id >= 0).then_some(r.p_id),
                    schedtick: r.schedtick,
                }
            }
            EventKind::PreemptM | EventKind::SignalM => {
                let r: SignalM = read(bytes, "signalM record")?;
                EventData::SignalM {
                    m_addr: r.m_addr,
                    caller_pc: r.caller_pc,
                    m_tid: nonzero_tid(r.m_tid),
                    m_id: (r.m_id >= 0).then_some(r.m_id),
                    goid: known_goid(r.goid),
                    p_id: (r.p_id >= 0).then_some(r.p_id),
                    sig: r.sig,
                }
            }
            EventKind::Tgkill => {
                let r: Tgkill = read(bytes, "tgkill record")?;
                EventData::Tgkill {
                    target_tgid: r.target_tgid,
                    target_tid: r.target_tid,
                    sig: r.sig,
                }
            }
            EventKind::TgkillFailed => {
                let r: TgkillFailed = read(bytes, "tgkill failure record")?;
                EventData::TgkillFailed {
                    target_tgid: r.target_tgid,
                    target_tid: r.target_tid,
                    sig: r.sig,
                    errno: r.errno,
                }
            }
            EventKind::SignalGenerate => {
                let r: SignalGenerate = read(bytes, "signal_generate record")?;
                EventData::SignalGenerate {
                    target_tid: r.target_tid,
                    sig: r.sig,
                    code: r.code,
                    group: r.group != 0,
                    result: SignalResult::from_raw(r.result),
                }
            }
            EventKind::ProcessExec => {
                let _: ProcessExec = read(bytes, "exec record")?;
                EventData::ProcessExec
            }
            EventKind::SignalDeliver => {
                let r: SignalDeliver = read(bytes, "signal_deliver record")?;
                EventData::SignalDeliver {
                    user_pc: r.user_pc,
                    user_sp: r.user_sp,
                    sig: r.sig,
                    code: r.code,
                }
            }
            EventKind::DoSigPreempt
            | EventKind::AsyncPreempt2
            | EventKind::GoschedImpl
            | EventKind::Yield
            | EventKind::PreemptPark
            | EventKind::SuspendG
            | EventKind::Execute => {
                let r: GoroutineHook = read(bytes, "goroutine record")?;
                let flag = |bit: u32| r.flags & bit != 0;
                EventData::Goroutine {
                    g_addr: r.g_addr,
                    goid: known_goid(r.goid),
                    pc: (r.pc != 0).then_some(r.pc),
                    g_status: (r.g_status != u32::MAX).then_some(r.g_status),
                    preempted: flag(goroutine_flags::PREEMPTED_KNOWN)
                        .then(|| flag(goroutine_flags::PREEMPTED)),
                    preempt_flags: flag(goroutine_flags::G_FLAGS_READ).then(|| {
                        (
                            flag(goroutine_flags::G_PREEMPT),
                            flag(goroutine_flags::G_PREEMPT_STOP),
                        )
                    }),
                }
            }
        };
        Ok(Event {
            kind,
            ts_ns: header.ts_ns,
            tid: header.tid,
            tgid: header.tgid,
            cpu: header.cpu,
            seq: header.seq,
            data,
        })
    }

    /// The goroutine this event is about, where the runtime has one at that point.
    pub fn goid(&self) -> Option<u64> {
        match self.data {
            EventData::PreemptRequest { goid, .. }
            | EventData::SignalM { goid, .. }
            | EventData::Goroutine { goid, .. } => goid,
            _ => None,
        }
    }
}

/// The symbolic name of an errno `tgkill` can return (and a few more), else `"errno N"`,
/// so that distinct errnos never share a name (they are keys of the JSON summary).
pub fn errno_name(errno: u32) -> std::borrow::Cow<'static, str> {
    let name = match errno as i32 {
        libc::EPERM => "EPERM",
        libc::ESRCH => "ESRCH",
        libc::EINVAL => "EINVAL",
        libc::EAGAIN => "EAGAIN",
        libc::EFAULT => "EFAULT",
        libc::ENOSYS => "ENOSYS",
        libc::EACCES => "EACCES",
        _ => return format!("errno {errno}").into(),
    };
    name.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn errno_names_are_distinct() {
        assert_eq!(errno_name(libc::EPERM as u32), "EPERM");
        assert_eq!(errno_name(200), "errno 200");
        assert_ne!(errno_name(200), errno_name(201));
    }

    /// The kinds' names are the JSON schema's and the metrics' `kind` label values.
    #[test]
    fn kind_names_are_the_schemas() {
        let names: Vec<&str> = EventKind::ALL.iter().map(|k| kind_name(*k)).collect();
        assert_eq!(
            names,
            [
                "sysmon_tick",
                "preempt_request",
                "preempt_m",
                "signal_m",
                "tgkill",
                "signal_generate",
                "signal_deliver",
                "do_sig_preempt",
                "async_preempt",
                "gosched",
                "yield",
                "preempt_park",
                "suspend_g",
                "execute",
                "tgkill_failed",
                "process_exec",
            ]
        );
    }

    pub(crate) fn bytes_of<T: aya::Pod>(value: &T) -> Vec<u8> {
        // SAFETY: Pod types have no padding and any bytes are valid to read.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    pub(crate) fn header(kind: EventKind, ts_ns: u64, tid: u32) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            tid,
            tgid: 100,
            cpu: 1,
            ts_ns,
            seq: 1,
        }
    }

    #[test]
    fn decodes_sysmon_tick() {
        let record = SysmonTick {
            header: header(EventKind::SysmonTick, 5_000, 7),
            now_ns: 4_990,
        };
        let event = Event::decode(&bytes_of(&record)).unwrap();
        assert_eq!(event.kind, EventKind::SysmonTick);
        assert_eq!(
            (event.ts_ns, event.tid, event.tgid, event.cpu),
            (5_000, 7, 100, 1)
        );
        assert_eq!(event.data, EventData::SysmonTick { now_ns: 4_990 });
    }

    #[test]
    fn decodes_goroutine_hook_flags() {
        let record = GoroutineHook {
            header: header(EventKind::GoschedImpl, 1, 2),
            g_addr: 0xc000001a00,
            goid: 17,
            pc: 0,
            g_status: 2,
            flags: goroutine_flags::PREEMPTED_KNOWN
                | goroutine_flags::PREEMPTED
                | goroutine_flags::G_FLAGS_READ
                | goroutine_flags::G_PREEMPT_STOP,
        };
        let event = Event::decode(&bytes_of(&record)).unwrap();
        assert_eq!(
            event.data,
            EventData::Goroutine {
                g_addr: 0xc000001a00,
                goid: Some(17),
                pc: None,
                g_status: Some(2),
                preempted: Some(true),
                preempt_flags: Some((false, true)),
            }
        );
        assert_eq!(event.goid(), Some(17));
    }

    #[test]
    fn unknown_values_become_none() {
        let record = SignalM {
            header: header(EventKind::SignalM, 1, 2),
            goid: GOID_UNKNOWN,
            m_id: -1,
            p_id: -1,
            ..Default::default()
        };
        let event = Event::decode(&bytes_of(&record)).unwrap();
        let EventData::SignalM {
            m_tid,
            m_id,
            goid,
            p_id,
            ..
        } = event.data
        else {
            panic!("wrong variant: {event:?}");
        };
        assert_eq!((m_tid, m_id, goid, p_id), (None, None, None, None));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let record = SignalM {
            header: header(EventKind::SignalM, 1, 2),
            ..Default::default()
        };
        let bytes = bytes_of(&record);
        assert!(matches!(
            Event::decode(&bytes[..40]),
            Err(DecodeError::Short { need: 80, .. })
        ));
        assert!(matches!(
            Event::decode(&bytes[..10]),
            Err(DecodeError::Short { .. })
        ));
        let mut unknown = bytes.clone();
        unknown[0] = 99;
        assert_eq!(Event::decode(&unknown), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn signal_results_map_to_names() {
        assert_eq!(SignalResult::from_raw(2), SignalResult::AlreadyPending);
        assert_eq!(SignalResult::from_raw(2).name(), "already_pending");
        assert_eq!(SignalResult::from_raw(77), SignalResult::Unknown(77));
    }

    #[test]
    fn every_kind_has_a_distinct_name() {
        let mut names: Vec<_> = EventKind::ALL.iter().map(|k| kind_name(*k)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
    }
}
