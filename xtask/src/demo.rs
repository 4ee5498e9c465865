//! `cargo xtask demo`: set up, build goprobe and the demo workload, and trace it.

use std::process::Command;

use clap::Args;

use crate::{
    fixtures::{self, Variant},
    go, setup, util,
};

#[derive(Args, Clone, Debug, Default)]
pub struct DemoArgs {
    /// Go release to build the demo with (default: `go` on PATH if 1.21+, else the newest).
    #[arg(long)]
    pub go: Option<String>,
    /// Extra goprobe options, after `--` (e.g. `-- --json`).
    #[arg(last = true)]
    pub goprobe_args: Vec<String>,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let setup = setup::run(&setup::SetupArgs {
        go: args.go.iter().cloned().collect(),
        all_go: false,
    })?;
    let toolchain: &go::Toolchain = &setup.go[0];
    build_goprobe()?;
    let dir = fixtures::build(toolchain, Variant::Default)?;
    fixtures::ship_workload(toolchain, &util::workspace_root().join("target/release"))?;
    let goprobe = util::workspace_root().join("target/release/goprobe");
    let mut cmd = privileged(&goprobe);
    cmd.args(&args.goprobe_args).arg("--").arg(dir.join("demo"));
    util::run(&mut cmd)
}

pub fn build_goprobe() -> anyhow::Result<()> {
    util::run(
        Command::new("cargo")
            .current_dir(util::workspace_root())
            .args(["build", "--release", "--package", "goprobe"]),
    )
}

/// `program` run as root: directly when we are, else through `sudo -E`.
pub fn privileged(program: &std::path::Path) -> Command {
    if util::is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg("-E").arg(program);
        cmd
    }
}
