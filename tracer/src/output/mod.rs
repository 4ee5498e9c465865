//! Output formats. Each renders the same two things: one event (with what correlation
//! made of it) and the final summary. Data goes to stdout or `--output`; diagnostics
//! never do.

pub mod json;
pub mod perfetto;
pub mod prometheus;
pub mod text;

use std::{io, rc::Rc};

use crate::{
    correlate::{Attempt, Meaning},
    events::Event,
    summary::Summary,
    symbolize::Location,
};

/// An event with everything needed to render it.
pub struct EventView<'a> {
    pub event: &'a Event,
    pub meaning: &'a Meaning,
    /// Where the thread or goroutine was (signal delivery, handler, async preemption).
    pub location: Option<Rc<Location>>,
    /// The function that made the call (`preemptone`'s and `signalM`'s callers).
    pub caller: Option<Rc<Location>>,
    /// Nanoseconds since tracing started.
    pub rel_ns: i64,
}

/// A finished preemption attempt with its interrupted location resolved.
pub struct AttemptView<'a> {
    pub attempt: &'a Attempt,
    pub location: Option<Rc<Location>>,
    /// Nanoseconds since tracing started, of the attempt's start.
    pub rel_ns: i64,
}

pub trait Output {
    fn event(&mut self, view: &EventView<'_>) -> io::Result<()>;
    fn attempt(&mut self, view: &AttemptView<'_>) -> io::Result<()>;
    fn summary(&mut self, summary: &Summary) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}
