//! Builds the kernel side (`tracer-ebpf`, target bpfel-unknown-none, nightly) with
//! aya-build and leaves the object in OUT_DIR, where `src/loader.rs` embeds it: the
//! `goprobe` binary is self-contained.
//!
//! Needs the nightly toolchain with `rust-src` and `bpf-linker` on PATH; `cargo xtask
//! setup` installs both.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};
use cargo_metadata::MetadataCommand;

fn main() -> anyhow::Result<()> {
    let metadata = MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("tracer-ebpf manifest has no parent directory"))?;
    // aya-build watches the eBPF crate; the shared record types live next door.
    let common_dir = root_dir
        .parent()
        .map(|workspace| workspace.join("tracer-common"))
        .ok_or_else(|| anyhow!("workspace root not found"))?;
    println!("cargo:rerun-if-changed={common_dir}");
    // aya-build relays every line of the inner cargo's stderr as a `cargo:warning`: some
    // 100 "Compiling …" lines on each build. Quiet, that cargo prints only diagnostics,
    // which still come through (and a failure still fails this build).
    // SAFETY: the build script is single-threaded here; the inner cargo inherits this.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [Package {
            name: "tracer-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
