//! Processes coming into view: `sched_process_exec` for `--all`, which decides in
//! userspace whether the new program is Go and worth tracing.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use tracer_common::{EventKind, ProcessExec};

use crate::{header, submit};

/// Any process's `execve`: the header's tgid is the process, now running its new program.
/// Execs are rare next to the chain's records, so none is filtered here.
#[tracepoint]
pub fn tp_sched_process_exec(ctx: TracePointContext) -> u32 {
    let kind = EventKind::ProcessExec;
    let record = ProcessExec {
        header: header(kind),
    };
    submit(&ctx, kind, &record);
    0
}
