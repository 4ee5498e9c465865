//! Why tracing stopped, and what follows from it: the summary's `end_reason` and the
//! signal a command goprobe started is stopped with.

use std::{io, path::PathBuf};

use crate::target::ExitStatus;

/// Why tracing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    TargetExited(ExitStatus),
    Duration,
    Interrupt,
    Terminate,
    /// stdout is a closed pipe (`| head`): end quietly, as Unix tools do.
    OutputClosed,
    OutputFailed(String),
    /// The target exec'd another program, which the probes do not cover.
    TargetExec(PathBuf),
    /// Every one of several targets exited or exec'd (each says which in its summary).
    AllExited,
}

impl EndReason {
    pub fn describe(&self) -> String {
        match self {
            EndReason::TargetExited(ExitStatus::Code(code)) => {
                format!("target exit (status {code})")
            }
            EndReason::TargetExited(ExitStatus::Signal(sig)) => {
                format!("target exit (signal {sig})")
            }
            EndReason::TargetExited(ExitStatus::Unknown) => "target exit".into(),
            EndReason::Duration => "--duration".into(),
            EndReason::Interrupt => "SIGINT".into(),
            EndReason::Terminate => "SIGTERM".into(),
            EndReason::OutputClosed => "output closed".into(),
            EndReason::OutputFailed(err) => format!("output error: {err}"),
            EndReason::TargetExec(path) => format!("target exec ({})", path.display()),
            EndReason::AllExited => "every target exited".into(),
        }
    }

    /// The signal a command goprobe started gets when tracing ends first: the one goprobe
    /// got, else SIGTERM (as `timeout(1)` sends).
    pub fn stop_signal(&self) -> i32 {
        match self {
            EndReason::Interrupt => libc::SIGINT,
            _ => libc::SIGTERM,
        }
    }
}

/// How a failed write ends tracing: quietly for a closed pipe, else with the error.
pub fn output_end(err: io::Error) -> EndReason {
    if err.kind() == io::ErrorKind::BrokenPipe {
        EndReason::OutputClosed
    } else {
        EndReason::OutputFailed(err.to_string())
    }
}
