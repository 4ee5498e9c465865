//! `cargo xtask gen-offsets`: regenerate (or `--check`) the per-release struct offset
//! table from the DWARF of fixture builds of every supported Go release, in every build
//! variant that keeps DWARF (the generator refuses if they disagree).

use std::process::Command;

use clap::Args;

use crate::{
    fixtures::{self, Variant},
    go, setup, util,
};

#[derive(Args, Clone, Debug, Default)]
pub struct GenOffsetsArgs {
    /// Compare with the committed table instead of writing it.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: &GenOffsetsArgs) -> anyhow::Result<()> {
    let setup = setup::run(&setup::SetupArgs {
        go: go::RELEASES.iter().map(ToString::to_string).collect(),
        all_go: false,
    })?;
    generate(&setup.go, args.check)
}

/// Runs the generator on the DWARF-bearing fixture builds of `toolchains`.
pub fn generate(toolchains: &[go::Toolchain], check: bool) -> anyhow::Result<()> {
    let mut pairs = Vec::new();
    for toolchain in toolchains {
        for variant in [Variant::Default, Variant::Pie, Variant::Cgo] {
            let dir = fixtures::build(toolchain, variant)?;
            pairs.push(format!(
                "go{}={}",
                toolchain.version,
                dir.join("spinner").display()
            ));
        }
    }
    let mut cmd = Command::new("cargo");
    cmd.current_dir(util::workspace_root()).args([
        "run",
        "--quiet",
        "--package",
        "goprobe",
        "--example",
        "gen_offsets",
        "--",
    ]);
    if check {
        cmd.arg("--check");
    }
    util::run(cmd.args(pairs))
}
