//! Fuzz the build info decoder (`.go.buildinfo`: version and modinfo strings, module
//! and `build` setting lines, Go string unquoting) through the public API.
//!
//! `GoBinary::from_bytes` only reads build info after it has found a valid pclntab, so
//! arbitrary bytes rarely get that far. This target keeps a real miniature Go binary as a
//! template (Go 1.24 seed without section headers, whose text start comes from the
//! pclntab header) and replaces its data segment with a build info header followed by
//! the fuzz input: the uvarint-prefixed version and modinfo strings of the Go 1.18+
//! format. Seeds: the real strings of several binaries (`make_seeds.py` writes them to
//! `corpus/buildinfo`).
#![no_main]

use std::sync::OnceLock;

use goprobe::gobin::{GoBinary, GoVersion};
use libfuzzer_sys::fuzz_target;

static TEMPLATE: &[u8] = include_bytes!("../seeds/gobinary/go1.24.11-spinner-nosections");

/// (file offset of the writable PT_LOAD, file offset of its program header).
fn data_segment() -> (usize, usize) {
    static AT: OnceLock<(usize, usize)> = OnceLock::new();
    *AT.get_or_init(|| {
        let t = TEMPLATE;
        let word = |at: usize| u64::from_le_bytes(t[at..at + 8].try_into().unwrap()) as usize;
        let phoff = word(32);
        let phnum = u16::from_le_bytes([t[56], t[57]]) as usize;
        (0..phnum)
            .map(|i| phoff + 56 * i)
            .find(|&ph| t[ph..ph + 4] == [1, 0, 0, 0] && t[ph + 4] & 2 != 0)
            .map(|ph| (word(ph + 8), ph))
            .expect("template has a writable PT_LOAD")
    })
}

fuzz_target!(|data: &[u8]| {
    let (data_off, ph) = data_segment();
    let mut file = TEMPLATE[..data_off].to_vec();
    file.extend_from_slice(b"\xff Go buildinf:\x08\x02");
    file.extend_from_slice(&[0u8; 16]);
    file.extend_from_slice(data);
    let size = (file.len() - data_off) as u64;
    file[ph + 32..ph + 40].copy_from_slice(&size.to_le_bytes()); // p_filesz
    file[ph + 40..ph + 48].copy_from_slice(&size.to_le_bytes()); // p_memsz

    let bin = GoBinary::from_bytes(file).expect("the template's pclntab is intact");
    if let Some(info) = bin.build_info() {
        let _ = GoVersion::parse(&info.go_version).map(|v| v.at_least(1, 21));
        for key in [
            "-buildmode",
            "-ldflags",
            "CGO_ENABLED",
            "GOAMD64",
            "vcs.revision",
        ] {
            let _ = info.setting(key);
        }
        let _ = (
            info.path.as_deref(),
            info.module_path.as_deref(),
            info.main_version.as_deref(),
        );
        let _ = info.main_replace.as_ref().map(|r| r.path.len());
        for dep in &info.deps {
            let _ = (
                dep.path.len(),
                dep.version.len(),
                dep.sum.len(),
                dep.replace.is_some(),
            );
        }
    }
    if let Some(v) = bin.go_version() {
        let _ = (v.to_string(), v.cmp(v));
    }
});
