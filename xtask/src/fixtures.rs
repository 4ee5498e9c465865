//! Builds the Go fixtures (tests/fixtures) per Go release and build variant into
//! `target/fixtures/<release>/<variant>/<name>`. Never committed.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use clap::{Args, ValueEnum};

use crate::{go, setup, util};

/// How a fixture binary is built: the shapes of Go binaries found in production.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// `go build`, static, with symbol table and DWARF.
    Default,
    /// `-ldflags='-s -w'`: no .symtab, no DWARF; pclntab only.
    Stripped,
    /// `-buildmode=pie`.
    Pie,
    /// CGO_ENABLED=1 with external linking (gcc), as most cgo programs are linked.
    Cgo,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::Default,
        Variant::Stripped,
        Variant::Pie,
        Variant::Cgo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::Cgo => "cgo",
        }
    }
}

#[derive(Args, Clone, Debug, Default)]
pub struct FixturesArgs {
    #[command(flatten)]
    pub setup: setup::SetupArgs,
    /// Build variants (comma separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub variant: Vec<Variant>,
}

/// Programs that need cgo, built only in the cgo variant.
const CGO_ONLY: [&str; 1] = ["cgoblock"];

pub fn fixtures_dir() -> PathBuf {
    util::workspace_root().join("tests/fixtures")
}

pub fn output_dir(release: &str, variant: Variant) -> PathBuf {
    util::workspace_root()
        .join("target/fixtures")
        .join(release)
        .join(variant.name())
}

/// Fixture program names: the directories of tests/fixtures with a main.go.
pub fn programs() -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("main.go").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

pub fn run(args: &FixturesArgs) -> anyhow::Result<Vec<go::Toolchain>> {
    let toolchains = setup::run(&args.setup)?.go;
    let variants = if args.variant.is_empty() {
        Variant::ALL.to_vec()
    } else {
        args.variant.clone()
    };
    for toolchain in &toolchains {
        for variant in &variants {
            build(toolchain, *variant)?;
        }
    }
    Ok(toolchains)
}

pub fn build(toolchain: &go::Toolchain, variant: Variant) -> anyhow::Result<PathBuf> {
    let out = output_dir(&toolchain.version, variant);
    std::fs::create_dir_all(&out)?;
    let packages: Vec<String> = programs()?
        .into_iter()
        .filter(|name| variant == Variant::Cgo || !CGO_ONLY.contains(&name.as_str()))
        .map(|name| format!("./{name}"))
        .collect();
    let mut cmd = toolchain.command();
    cmd.current_dir(fixtures_dir()).arg("build");
    match variant {
        Variant::Default => {
            cmd.env("CGO_ENABLED", "0");
        }
        Variant::Stripped => {
            cmd.env("CGO_ENABLED", "0").arg("-ldflags=-s -w");
        }
        Variant::Pie => {
            cmd.env("CGO_ENABLED", "0").arg("-buildmode=pie");
        }
        Variant::Cgo => {
            cmd.env("CGO_ENABLED", "1")
                .arg("-ldflags=-linkmode=external");
        }
    }
    // A trailing slash makes `-o` a directory receiving one binary per package.
    cmd.arg("-o")
        .arg(format!("{}/", out.display()))
        .args(&packages);
    util::run(&mut cmd)?;
    Ok(out)
}

/// Ships the newest release's spinner beside a goprobe build as `goprobe-workload`: what
/// `goprobe verify` with no target runs to prove preemption end to end on the host.
pub fn ship_workload(toolchain: &go::Toolchain, profile_dir: &Path) -> anyhow::Result<()> {
    let from = output_dir(&toolchain.version, Variant::Default).join("spinner");
    let to = profile_dir.join("goprobe-workload");
    std::fs::copy(&from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
