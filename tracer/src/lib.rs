//! goprobe: a kernel-level preemption tracer for Go.
//!
//! The crate is laid out along the data flow:
//! [`cli`] → [`preflight`] (host checks) → [`target`] (the process) → [`gobin`] (the Go
//! binary: build info, pclntab, struct offsets) → [`probes`] (what to hook where) →
//! [`loader`] (the BPF object and its links) → [`ringbuf`] → [`events`] (decoding) →
//! [`correlate`] → [`summary`] → [`output`] (one module per format). [`run`] drives one
//! session through all of them.

/// Prints a diagnostic line to stderr. Never panics: stderr may be a closed pipe (a
/// wrapper that stopped reading), and losing a diagnostic must not kill the tracer.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod chain;
pub mod cli;
pub mod container;
pub mod correlate;
pub mod events;
pub mod gobin;
pub mod histogram;
pub mod host;
pub mod loader;
pub mod output;
pub mod pidns;
pub mod pipeline;
pub mod placement;
pub mod preflight;
pub mod probes;
pub mod ringbuf;
pub mod run;
pub mod summary;
pub mod symbolize;
pub mod target;
pub mod verify;
