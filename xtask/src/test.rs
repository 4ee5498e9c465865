//! `cargo xtask test`: the whole gate, as CI runs it.
//!
//! Lints, unit tests (no root), then the privileged integration tests (tests/): real BPF
//! programs loaded into this kernel against real Go fixtures. They need root; when not
//! root they run through `sudo -E`, and if that is impossible they fail — never skip.

use std::process::Command;

use anyhow::Context as _;
use clap::Args;

use crate::{
    fixtures::{self, Variant},
    go, offsets, setup, util,
};

#[derive(Args, Clone, Debug, Default)]
pub struct TestArgs {
    /// Go releases for the integration matrix (comma separated). Default: the oldest, a
    /// middle and the newest supported release.
    #[arg(long, value_delimiter = ',')]
    pub go: Vec<String>,
    /// Run the integration matrix on every supported release (1.21 … 1.27).
    #[arg(long, conflicts_with = "go")]
    pub all_go: bool,
    /// Skip fmt and clippy.
    #[arg(long)]
    pub no_lint: bool,
    /// Arguments for the integration test harness, after `--` (e.g. a test name filter).
    #[arg(last = true)]
    pub harness_args: Vec<String>,
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let releases: Vec<String> = if args.all_go {
        go::RELEASES.iter().map(ToString::to_string).collect()
    } else if args.go.is_empty() {
        go::CI_RELEASES.iter().map(ToString::to_string).collect()
    } else {
        args.go.clone()
    };
    let setup = setup::run(&setup::SetupArgs {
        go: releases.clone(),
        all_go: false,
    })?;
    let root = util::workspace_root();
    let cargo = || {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&root);
        cmd
    };

    if !args.no_lint {
        util::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
        util::run(
            cargo()
                .args(["clippy", "--workspace", "--exclude", "tracer-ebpf"])
                .args(["--all-targets", "--", "-D", "warnings"]),
        )?;
        // The kernel crate is linted on its own target.
        util::run(
            cargo()
                .current_dir(root.join("tracer-ebpf"))
                .args(["+nightly", "clippy", "-Z", "build-std=core"])
                .args([
                    "--target",
                    "bpfel-unknown-none",
                    "--release",
                    "--",
                    "-D",
                    "warnings",
                ]),
        )?;
    }

    // Unit tests read real Go binaries built by the releases under test.
    util::run(
        cargo()
            .args(["test", "--workspace", "--exclude", "tracer-ebpf"])
            .args(["--exclude", "goprobe-integration"])
            .env("GOPROBE_GO_RELEASES", releases.join(",")),
    )?;

    // The debug build: the integration tests check behaviour, not speed (that is
    // `cargo xtask bench`), and it is already mostly built by the unit tests.
    util::run(cargo().args(["build", "--package", "goprobe"]))?;
    for toolchain in &setup.go {
        for variant in Variant::ALL {
            fixtures::build(toolchain, variant)?;
        }
    }
    let newest_built = setup
        .go
        .iter()
        .find(|t| t.version == go::NEWEST)
        .unwrap_or(&setup.go[setup.go.len() - 1]);
    fixtures::ship_workload(newest_built, &root.join("target/debug"))?;

    // The committed struct-offset table must equal the DWARF of the releases under test.
    offsets::generate(&setup.go, true)?;

    // tests/tracecount decodes the fixtures' runtime/trace files with the newest Go's
    // `go tool trace`, which reads every release's format.
    let newest = go::ensure(go::NEWEST)?;
    let tracecount = root.join("target/tools/tracecount");
    util::run(
        newest
            .command()
            .current_dir(root.join("tests/tracecount"))
            .args(["build", "-o"])
            .arg(&tracecount)
            .arg("."),
    )?;

    let mut integration = cargo();
    integration
        .args(["test", "--package", "goprobe-integration"])
        .env("GOPROBE_BIN", root.join("target/debug/goprobe"))
        .env("GOPROBE_FIXTURES", root.join("target/fixtures"))
        .env("GOPROBE_GO_RELEASES", releases.join(","))
        .env("GOPROBE_TRACECOUNT", &tracecount)
        .env("GOPROBE_TRACE_GO", &newest.go)
        // Where tracecount's `go tool trace` keeps its build.
        .env("GOCACHE", root.join("target/go-cache"))
        .env("GOPATH", root.join("target/go-path"));
    if !util::is_root() {
        eprintln!("xtask: integration tests need root: running them through sudo -E");
        integration.args(["--config", r#"target."cfg(all())".runner="sudo -E""#]);
    }
    // One at a time: the tests measure preemption on a 2-core machine; running them side
    // by side would make them measure each other.
    integration
        .args(["--", "--test-threads=1"])
        .args(&args.harness_args);
    util::run(&mut integration).context("integration tests failed")
}
