//! goprobe's counts against independent sources.

use std::fs;

use goprobe_integration::{
    env, temp_path, trace_command,
    tracefs::{TracefsUprobe, planned_offset},
};

/// The number of asynchronous preemptions goprobe reports equals the number of times
/// `runtime.asyncPreempt2` executed, as counted by a kernel uprobe goprobe knows nothing
/// of.
#[test]
fn async_preemptions_equal_kernel_counted_async_preempt2_executions() {
    let env = env();
    for release in &env.releases {
        // A private copy: no other process can hit a uprobe on this inode.
        let binary = temp_path("spinner");
        fs::copy(env.fixture(release, "default", "spinner"), &binary).unwrap();
        let offset = planned_offset(&env.goprobe, &binary, "runtime.asyncPreempt2");
        let probe = TracefsUprobe::new("ap2", &binary, offset);
        let traced = trace_command(
            &env,
            &[],
            &binary,
            &["-workers", "4", "-procs", "1", "-duration", "2s"],
            &[],
        );
        let hits = probe.hits();
        drop(probe);
        let _ = fs::remove_file(&binary);
        let asyncs = traced.count("async_preempt");
        eprintln!(
            "{release}: goprobe async preemptions {asyncs}, kernel-counted asyncPreempt2 \
             executions {hits}"
        );
        assert!(
            hits >= 50,
            "{release}: kernel counted only {hits} executions"
        );
        assert_eq!(asyncs, hits, "{release}: goprobe vs kernel uprobe_profile");
    }
}
