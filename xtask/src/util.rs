//! Small process helpers shared by the tasks.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Runs `cmd`, inheriting stdio; fails with the command line if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: $ {}", display(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and captures its output; fails if it fails.
pub fn output(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}\n{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Stdout of a successful command, trimmed.
pub fn stdout(cmd: &mut Command) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&output(cmd)?.stdout)
        .trim()
        .to_string())
}

pub fn display(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Installs each Debian package whose tool does not run (`tool --help` fails to start),
/// as `(tool, package)` pairs. Needs root; says which package is missing otherwise.
pub fn apt_install_missing(wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    for (tool, package) in wanted {
        if Command::new(tool).arg("--help").output().is_ok() {
            eprintln!("xtask: {tool}: present");
            continue;
        }
        if !is_root() {
            bail!("{tool} is missing: install the Debian package {package} (as root)");
        }
        let install = || {
            run(Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        // A stale package index names versions the mirror no longer has (404): refresh it
        // and try once more.
        if install().is_err() {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            install()?;
        }
    }
    Ok(())
}

/// `pip install --target dir packages`: PyPI packages into a project-local folder, with
/// no effect on the system's Python (and so no PEP 668 refusal on Debian).
pub fn pip_install_target(
    dir: &Path,
    packages: &[&str],
    extra_args: &[&str],
) -> anyhow::Result<()> {
    if Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        bail!(
            "python3 with pip is needed to fetch {} from PyPI: `apt-get install python3-pip`",
            packages.join(", ")
        );
    }
    run(Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--root-user-action=ignore")
        .args(extra_args)
        .arg("--target")
        .arg(dir)
        .args(packages))
}
