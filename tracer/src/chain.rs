//! The links of the preemption chain: the one definition every other module names them
//! from (probe table, correlation stamps, hops, text, JSON, Prometheus, Perfetto).
//!
//! ```text
//! tick → request → signalM → tgkill → generate → deliver → handler → asyncPreempt2 → off
//! ```
//! `off` is the goroutine leaving the CPU: rescheduled (`goschedImpl`) or parked
//! (`preemptPark`), after `asyncPreempt2` or at a function prologue (cooperatively).

use tracer_common::EventKind;

/// A link of the chain, in chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// sysmon's tick (`retake`) the request was made in.
    Tick,
    /// `preemptone` (sysmon, stop-the-world) or `suspendG` (GC).
    Request,
    /// `signalM(mp, SIGURG)`.
    SignalM,
    /// `tgkill(…, SIGURG)` entered.
    Tgkill,
    /// The kernel generated the signal (queued, or coalesced with a pending one).
    Generate,
    /// The kernel delivers it to the target thread.
    Deliver,
    /// The runtime's handler (`doSigPreempt`) looks at the interrupted goroutine.
    Handler,
    /// The injected call ran: `asyncPreempt2`.
    AsyncPreempt2,
    /// The goroutine is off the CPU: rescheduled or parked.
    Off,
}

/// Number of links: the length of per-link arrays.
pub const LINK_COUNT: usize = 9;

impl Link {
    pub const ALL: [Link; LINK_COUNT] = [
        Link::Tick,
        Link::Request,
        Link::SignalM,
        Link::Tgkill,
        Link::Generate,
        Link::Deliver,
        Link::Handler,
        Link::AsyncPreempt2,
        Link::Off,
    ];

    /// Name in text output and hop names (`request→signalM`).
    pub const fn name(self) -> &'static str {
        match self {
            Link::Tick => "tick",
            Link::Request => "request",
            Link::SignalM => "signalM",
            Link::Tgkill => "tgkill",
            Link::Generate => "generate",
            Link::Deliver => "deliver",
            Link::Handler => "handler",
            Link::AsyncPreempt2 => "asyncPreempt2",
            Link::Off => "off",
        }
    }

    /// Stable key in JSON (`stamps`), metrics labels and Perfetto names.
    pub const fn key(self) -> &'static str {
        match self {
            Link::Tick => "tick",
            Link::Request => "request",
            Link::SignalM => "signal",
            Link::Tgkill => "tgkill",
            Link::Generate => "generate",
            Link::Deliver => "deliver",
            Link::Handler => "handler",
            Link::AsyncPreempt2 => "preempt",
            Link::Off => "off",
        }
    }

    /// What the link is, for the attach report (`--list-probes`).
    pub const fn describe(self) -> &'static str {
        match self {
            Link::Tick => "sysmon tick",
            Link::Request => "preemption request",
            Link::SignalM => "signalM",
            Link::Tgkill => "SIGURG sent",
            Link::Generate => "SIGURG generated",
            Link::Deliver => "SIGURG delivered",
            Link::Handler => "handler decision",
            Link::AsyncPreempt2 => "async preemption",
            Link::Off => "off CPU",
        }
    }

    /// The link an event of `kind` stamps, if it is one of the chain's.
    pub const fn of(kind: EventKind) -> Option<Link> {
        Some(match kind {
            EventKind::SysmonTick => Link::Tick,
            EventKind::PreemptOne | EventKind::SuspendG => Link::Request,
            EventKind::SignalM | EventKind::PreemptM => Link::SignalM,
            EventKind::Tgkill => Link::Tgkill,
            EventKind::SignalGenerate => Link::Generate,
            EventKind::SignalDeliver => Link::Deliver,
            EventKind::DoSigPreempt => Link::Handler,
            EventKind::AsyncPreempt2 => Link::AsyncPreempt2,
            EventKind::GoschedImpl | EventKind::PreemptPark => Link::Off,
            EventKind::Yield
            | EventKind::Execute
            | EventKind::TgkillFailed
            | EventKind::ProcessExec => return None,
        })
    }

    /// Whether the link happens on the requesting thread (else on the target's).
    pub const fn on_requester(self) -> bool {
        matches!(
            self,
            Link::Tick | Link::Request | Link::SignalM | Link::Tgkill | Link::Generate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_in_chain_order_with_distinct_names() {
        for (i, link) in Link::ALL.iter().enumerate() {
            assert_eq!(*link as usize, i);
        }
        let mut names: Vec<_> = Link::ALL.iter().map(|l| l.name()).collect();
        let mut keys: Vec<_> = Link::ALL.iter().map(|l| l.key()).collect();
        names.sort_unstable();
        names.dedup();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!((names.len(), keys.len()), (LINK_COUNT, LINK_COUNT));
    }
}
