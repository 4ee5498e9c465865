//! Regenerates `tracer/src/gobin/offsets_table.json` from the DWARF of reference binaries:
//! `gen_offsets [--check] VERSION=BINARY...` (run by `cargo xtask gen-offsets`, which
//! builds the binaries with every supported Go release). Refuses when two binaries of one
//! release disagree; with `--check`, fails if any release given differs from its entry in
//! the committed table (so it also works on a subset of releases, as in CI).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use goprobe::gobin::offsets;

fn main() -> anyhow::Result<()> {
    let mut check = false;
    let mut binaries = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--check" {
            check = true;
            continue;
        }
        let (version, path) = arg
            .split_once('=')
            .with_context(|| format!("expected VERSION=BINARY, got {arg}"))?;
        binaries.push((version.to_string(), PathBuf::from(path)));
    }
    if binaries.is_empty() {
        bail!("usage: gen_offsets [--check] VERSION=BINARY...");
    }
    let entries = offsets::table_entries_from_binaries(&binaries)?;
    let table = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/gobin/offsets_table.json");
    if !check {
        std::fs::write(&table, offsets::generate_table_json(&entries))?;
        eprintln!("wrote {} from {} binaries", table.display(), binaries.len());
        return Ok(());
    }
    for ((major, minor), version, derived) in &entries {
        let Some((committed, true)) = offsets::from_table(*major, *minor) else {
            bail!(
                "go{major}.{minor} ({version}) has no entry in {}",
                table.display()
            );
        };
        if committed != *derived {
            bail!(
                "go{major}.{minor}: {} differs from the DWARF of {version}: {:?}; run \
                 `cargo xtask gen-offsets` and review the change",
                table.display(),
                committed.diff(derived)
            );
        }
        eprintln!("go{major}.{minor}: table entry matches the DWARF of {version}");
    }
    Ok(())
}
