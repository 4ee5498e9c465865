//! Idempotent set-up: installs what is missing, says what it skipped.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{go, util};

const BPF_LINKER_VERSION: &str = "0.13.0";

#[derive(Args, Clone, Debug, Default)]
pub struct SetupArgs {
    /// Go releases to install (comma separated), e.g. 1.21.13,1.27.3. Default: a `go` on
    /// PATH if it is 1.21+, else the newest release.
    #[arg(long, value_delimiter = ',')]
    pub go: Vec<String>,
    /// Install every supported Go release (1.21 … 1.27).
    #[arg(long)]
    pub all_go: bool,
}

/// What set-up found or installed.
pub struct Setup {
    pub go: Vec<go::Toolchain>,
}

pub fn run(args: &SetupArgs) -> anyhow::Result<Setup> {
    nightly_with_rust_src()?;
    bpf_linker()?;
    let go = if args.all_go {
        go::RELEASES
            .iter()
            .map(|v| go::ensure(v))
            .collect::<Result<_, _>>()?
    } else if args.go.is_empty() {
        vec![go::default_toolchain()?]
    } else {
        args.go
            .iter()
            .map(|v| go::ensure(v))
            .collect::<Result<_, _>>()?
    };
    perfetto_protos()?;
    // A real Prometheus server scrapes `goprobe --all --metrics` in the tests.
    // bpftrace: another tracing tool attached at the same time, whose program makes the
    // kernel skip goprobe's (the `skipped` test).
    util::apt_install_missing(&[("prometheus", "prometheus"), ("bpftrace", "bpftrace")])?;
    tracefs();
    Ok(Setup { go })
}

/// Independent checkers the tests use, from PyPI, project-local like the Go toolchains:
/// the official Perfetto protos (for `--perfetto` files), the Prometheus client's
/// exposition parser (for `--metrics`) and Kubernetes' own JSON schemas with a validator
/// (for the DaemonSet in `deploy/`).
const PYTHON_PACKAGES: [&str; 3] = [
    "perfetto==0.59.1",
    "prometheus-client==0.26.0",
    "kubernetes-validate==1.37.0",
];

fn perfetto_protos() -> anyhow::Result<()> {
    let dir = util::workspace_root().join(".goprobe/python");
    let probe = Command::new("python3")
        .args([
            "-c",
            "import google.protobuf.unknown_fields, \
             perfetto.protos.perfetto.trace.perfetto_trace_pb2, prometheus_client.parser, \
             kubernetes_validate, yaml",
        ])
        .env("PYTHONPATH", &dir)
        .output();
    if probe.is_ok_and(|out| out.status.success()) {
        eprintln!("xtask: python {}: present", PYTHON_PACKAGES.join(", "));
        return Ok(());
    }
    util::pip_install_target(&dir, &PYTHON_PACKAGES, &["--upgrade"])
        .context("installing the Perfetto protos, the Prometheus parser and kubernetes-validate")
}

fn nightly_with_rust_src() -> anyhow::Result<()> {
    let toolchains = util::stdout(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed (https://rustup.rs)")?;
    if toolchains.lines().any(|line| line.starts_with("nightly")) {
        eprintln!("xtask: rust nightly: present");
    } else {
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = util::stdout(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if components.lines().any(|line| line.starts_with("rust-src")) {
        eprintln!("xtask: nightly rust-src: present");
        Ok(())
    } else {
        util::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))
    }
}

/// bpf-linker built against the nightly toolchain's own LLVM, so the bitcode rustc emits
/// and the LLVM that links it are the same version.
fn bpf_linker() -> anyhow::Result<()> {
    let present = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    if let Some(version) = present.filter(|v| v.contains(BPF_LINKER_VERSION)) {
        eprintln!("xtask: bpf-linker: present ({})", version.trim());
        return Ok(());
    }
    let sysroot = util::stdout(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib = Path::new(&sysroot).join("lib");
    // The versioned library, e.g. libLLVM.so.22.1-rust-1.97.0-nightly.
    let llvm_lib = std::fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so."))
        .with_context(|| {
            format!(
                "no libLLVM.so.* in {}: is the nightly toolchain complete?",
                lib.display()
            )
        })?;
    let major = llvm_lib
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .filter(|major| major.chars().all(|c| c.is_ascii_digit()))
        .with_context(|| format!("cannot read the LLVM version from {llvm_lib}"))?
        .to_string();
    let link = lib.join("libLLVM.so");
    if !link.exists() {
        std::os::unix::fs::symlink(&llvm_lib, &link)
            .with_context(|| format!("linking {} -> {llvm_lib}", link.display()))?;
    }
    eprintln!("xtask: bpf-linker: building {BPF_LINKER_VERSION} against nightly's LLVM {major}");
    util::run(
        Command::new("cargo")
            .args(["install", &format!("bpf-linker@{BPF_LINKER_VERSION}")])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &sysroot),
    )?;
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("bpf-linker installed but not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// goprobe mounts tracefs itself when it runs as root; do it here too so the
/// tracepoint formats are visible to tests.
fn tracefs() {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.exists() {
        eprintln!("xtask: tracefs: mounted");
    } else if util::is_root() {
        match util::run(Command::new("mount").args([
            "-t",
            "tracefs",
            "nodev",
            "/sys/kernel/tracing",
        ])) {
            Ok(()) => eprintln!("xtask: tracefs: mounted at /sys/kernel/tracing"),
            Err(err) => {
                eprintln!("xtask: tracefs: mount failed ({err}); goprobe will say what to do")
            }
        }
    } else {
        eprintln!("xtask: tracefs: not mounted; goprobe mounts it when run as root");
    }
}
