//! Byte offsets inside the Go runtime structs `runtime.g`, `runtime.m` and `runtime.p`
//! that the kernel side reads with `bpf_probe_read_user`.
//!
//! Two sources, in order of preference (house style rule 7: never guess silently):
//! 1. [`from_dwarf`]: the traced binary's own DWARF (`.debug_info`, zlib-compressed by
//!    Go: `SHF_COMPRESSED` in every release 1.21–1.27, `.zdebug_*` in older ones; both are
//!    read). Exact for that binary.
//! 2. [`from_table`]: a table generated from the DWARF of reference binaries, keyed by Go
//!    minor release: data in `offsets_table.json`, written by `cargo xtask gen-offsets`.
//!    Used for binaries without DWARF (`-ldflags=-w`, `strip`) or whose DWARF is damaged.
//!
//! For each release 1.21–1.27 the offsets were checked to be identical across
//! build modes (default, PIE, cgo with external linking, GOAMD64=v3, `-race`), several
//! GOEXPERIMENTs and `-gcflags=all=-N -l`, and across patch releases (x.y.0 or the earliest
//! published patch against the latest). [`table_entries_from_binaries`] refuses to build a
//! table when two binaries of one release disagree.
//!
//! Careful when adding fields: `runtime.m` past `m.id` is **not** stable within a minor
//! release (go1.24.3 → go1.24.11 added `m.allpSnapshot`, moving `m.preemptGen` from 896 to
//! 920). Such a field must come from DWARF or be keyed by patch release.

use std::{
    borrow::Cow,
    fmt,
    ops::Index,
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use gimli::{
    Abbreviations, AttributeValue, DebugInfoOffset, DwAt, EndianSlice, Operation, Reader,
    RunTimeEndian, SectionId, UnitHeader, UnitSectionOffset,
};
use object::{
    BigEndian, CompressedData, CompressionFormat, ReadRef as _, U64,
    elf::{ELFCOMPRESS_ZLIB, ELFCOMPRESS_ZSTD},
    read::elf::{CompressionHeader as _, SectionHeader as _},
};
use tracer_common::{FIELD_COUNT, Field, OFFSET_UNKNOWN};

use super::{
    GoBinary,
    elf::{Elf, ElfProblem, LE},
    image::Image,
};

/// The value of an offset that is not known.
pub const UNKNOWN: u32 = OFFSET_UNKNOWN;

/// Byte offsets inside Go runtime structs needed by the kernel side, indexed by
/// [`Field`] (the one list of fields, shared with the kernel side); [`UNKNOWN`] = unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeOffsets(pub tracer_common::Offsets);

impl Index<Field> for RuntimeOffsets {
    type Output = u32;

    fn index(&self, field: Field) -> &u32 {
        &self.0[field as usize]
    }
}

impl RuntimeOffsets {
    /// Every offset unknown.
    pub const UNKNOWN: RuntimeOffsets = RuntimeOffsets([UNKNOWN; FIELD_COUNT]);

    /// `(field key, offset)` pairs in [`Field`] order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        Field::ALL
            .into_iter()
            .map(|field| (field.key(), self[field]))
    }

    /// True when no offset is [`UNKNOWN`].
    pub fn is_complete(&self) -> bool {
        !self.0.contains(&UNKNOWN)
    }

    /// Names of the fields whose offsets differ between `self` and `other`, with both values.
    pub fn diff(&self, other: &RuntimeOffsets) -> Vec<(&'static str, u32, u32)> {
        Field::ALL
            .into_iter()
            .filter(|field| self[*field] != other[*field])
            .map(|field| (field.key(), self[field], other[field]))
            .collect()
    }
}

/// Where a [`RuntimeOffsets`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetsSource {
    /// The traced binary's own DWARF.
    Dwarf,
    /// The generated table. `release` is the (major, minor) of the table entry used;
    /// `exact` is false when the binary's release is newer than every table entry and
    /// the nearest older layout was taken.
    Table { release: (u32, u32), exact: bool },
}

impl fmt::Display for OffsetsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetsSource::Dwarf => f.write_str("DWARF"),
            OffsetsSource::Table {
                release: (major, minor),
                exact: true,
            } => write!(f, "table (go{major}.{minor})"),
            OffsetsSource::Table {
                release: (major, minor),
                exact: false,
            } => write!(
                f,
                "table (go{major}.{minor} layout, assumed for a newer release)"
            ),
        }
    }
}

/// Errors while reading offsets.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("not a readable ELF file: {reason}")]
    Elf { reason: &'static str },
    #[error(
        "binary has no DWARF (.debug_info missing; was it built with -ldflags=-w or stripped?)"
    )]
    NoDwarf,
    #[error("cannot decompress DWARF section {section}: {source}")]
    Decompress {
        section: &'static str,
        source: object::Error,
    },
    #[error("cannot read DWARF section {section}: {reason}")]
    Compression {
        section: &'static str,
        reason: &'static str,
    },
    #[error("malformed DWARF: {0}")]
    Dwarf(#[from] gimli::Error),
    #[error("type {ty} not found in DWARF")]
    MissingType { ty: String },
    #[error("member {member} of {ty} not found in DWARF")]
    MissingMember { ty: String, member: String },
    #[error("type of member {member} of {ty} is not a struct, cannot look inside it")]
    NotAStruct { ty: String, member: String },
    #[error("member {member} of {ty} has no constant data_member_location")]
    BadMemberLocation { ty: String, member: String },
    #[error("offset {offset} of member {member} of {ty} does not fit in u32")]
    OffsetTooLarge {
        ty: String,
        member: String,
        offset: u64,
    },
    #[error("cannot parse go version {0:?} (expected e.g. go1.25.5)")]
    BadVersion(String),
    #[error("go{major}.{minor} is older than go1.21, the oldest release goprobe supports")]
    UnsupportedRelease { major: u32, minor: u32 },
    #[error("--go-layout {release}: goprobe knows the layouts of Go {} to {}", known.0, known.1)]
    UnknownLayout {
        release: String,
        known: (String, String),
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "layouts differ within go{}.{}: {first} and {second} disagree on {}; one table entry per release would be wrong",
        release.0, release.1, fmt_diff(diff)
    )]
    LayoutMismatch {
        release: (u32, u32),
        first: String,
        second: String,
        diff: Vec<(&'static str, u32, u32)>,
    },
}

fn fmt_diff(diff: &[(&'static str, u32, u32)]) -> String {
    diff.iter()
        .map(|(name, a, b)| format!("{name} ({a} vs {b})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads every offset from the DWARF of the Go binary `elf_bytes`.
///
/// Fails with [`OffsetsError::NoDwarf`] for a binary without `.debug_info`, and with an
/// error naming the type or member when one of them is missing (a renamed field in a new
/// Go release): a partial result is available from [`from_dwarf_partial`].
pub fn from_dwarf(elf_bytes: &[u8]) -> Result<RuntimeOffsets, OffsetsError> {
    extract(elf_bytes, &mut |e| Err(e))
}

/// Like [`from_dwarf`], but a missing type or member leaves that offset [`UNKNOWN`] and is
/// returned in the list instead of failing. Unreadable ELF or DWARF still fails.
pub fn from_dwarf_partial(
    elf_bytes: &[u8],
) -> Result<(RuntimeOffsets, Vec<OffsetsError>), OffsetsError> {
    let mut missing = Vec::new();
    let offsets = extract(elf_bytes, &mut |e| match e {
        OffsetsError::MissingType { .. }
        | OffsetsError::MissingMember { .. }
        | OffsetsError::NotAStruct { .. }
        | OffsetsError::BadMemberLocation { .. }
        | OffsetsError::OffsetTooLarge { .. } => {
            missing.push(e);
            Ok(UNKNOWN)
        }
        other => Err(other),
    })?;
    Ok((offsets, missing))
}

/// The generated table's layout for Go `major.minor`, and whether that release is in the
/// table (`true`) or a newer release was mapped to the nearest older layout (`false`).
/// `None` for releases older than the oldest entry (go1.21).
pub fn from_table(major: u32, minor: u32) -> Option<(RuntimeOffsets, bool)> {
    table_entry(major, minor).map(|(release, _, offsets)| (*offsets, *release == (major, minor)))
}

/// The newest table entry not newer than `major.minor`.
fn table_entry(major: u32, minor: u32) -> Option<&'static TableEntry> {
    table()
        .iter()
        .rev()
        .find(|(release, _, _)| *release <= (major, minor))
}

/// The committed per-release table (`offsets_table.json`), ascending by release.
pub fn table() -> &'static [TableEntry] {
    static TABLE: OnceLock<Vec<TableEntry>> = OnceLock::new();
    TABLE.get_or_init(|| {
        // The file is ours and checked by the tests: a parse failure is a build defect.
        parse_table(TABLE_JSON).unwrap_or_else(|err| panic!("offsets_table.json: {err}"))
    })
}

/// The table as committed.
pub const TABLE_JSON: &str = include_str!("../offsets_table.json");

/// The oldest and newest releases in the table, as `1.21` and `1.27`.
pub fn table_range() -> (String, String) {
    let name = |entry: Option<&TableEntry>| {
        entry.map_or_else(
            || "?".into(),
            |((major, minor), _, _)| format!("{major}.{minor}"),
        )
    };
    (name(table().first()), name(table().last()))
}

/// Offsets for a Go binary: its DWARF when present, else the table entry for `go_version`
/// (the binary's build-info version, e.g. `go1.25.5`).
///
/// Errors from DWARF other than [`OffsetsError::NoDwarf`] are returned, not papered over
/// with the table: a binary whose DWARF lacks a member is a new layout the table cannot know.
pub fn resolve(
    elf_bytes: &[u8],
    go_version: &str,
) -> Result<(RuntimeOffsets, OffsetsSource), OffsetsError> {
    match from_dwarf(elf_bytes) {
        Ok(offsets) => Ok((offsets, OffsetsSource::Dwarf)),
        Err(OffsetsError::NoDwarf) => from_table_for(go_version),
        Err(e) => Err(e),
    }
}

/// The table entry for the release `go_version` names (the nearest older one, marked
/// inexact, for a release newer than the table).
fn from_table_for(go_version: &str) -> Result<(RuntimeOffsets, OffsetsSource), OffsetsError> {
    let (major, minor) = parse_go_version(go_version)?;
    let Some((release, _, offsets)) = table_entry(major, minor) else {
        return Err(OffsetsError::UnsupportedRelease { major, minor });
    };
    let exact = *release == (major, minor);
    Ok((
        *offsets,
        OffsetsSource::Table {
            release: *release,
            exact,
        },
    ))
}

/// Parses `(major, minor)` from a Go version as `runtime.Version()` or the build info
/// spells it: `go1.25.5`, `go1.26rc1`, `go1.27.3 X:greenteagc`, `devel go1.27-abcdef`,
/// or without the `go` prefix (`1.21.13`).
pub fn parse_go_version(version: &str) -> Result<(u32, u32), OffsetsError> {
    let bad = || OffsetsError::BadVersion(version.to_owned());
    let v = version.trim();
    let v = v.strip_prefix("devel ").unwrap_or(v);
    let v = v.strip_prefix("go").unwrap_or(v);
    let (major, rest) = v.split_once('.').ok_or_else(bad)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let major = major.parse().map_err(|_| bad())?;
    let minor = rest[..digits].parse().map_err(|_| bad())?;
    Ok((major, minor))
}

/// One table row: (release, the Go version it was derived from, offsets).
pub type TableEntry = ((u32, u32), String, RuntimeOffsets);

/// Reads the offsets of each `(go version, binary path)` pair and merges them into one
/// entry per release, sorted by release. The version string of the first binary of each
/// release is kept. Fails with [`OffsetsError::LayoutMismatch`] if two binaries of the same
/// release (patch releases, build modes) disagree, so the table is never silently wrong.
pub fn table_entries_from_binaries(
    binaries: &[(String, PathBuf)],
) -> Result<Vec<TableEntry>, OffsetsError> {
    let mut entries: Vec<(TableEntry, String)> = Vec::new();
    for (version, path) in binaries {
        let release = parse_go_version(version)?;
        let bytes = std::fs::read(path).map_err(|source| OffsetsError::Io {
            path: path.clone(),
            source,
        })?;
        let offsets = from_dwarf(&bytes)?;
        let label = format!("{version} ({})", path.display());
        match entries.iter().find(|((r, _, _), _)| *r == release) {
            Some(((_, _, known), first)) if *known != offsets => {
                return Err(OffsetsError::LayoutMismatch {
                    release,
                    first: first.clone(),
                    second: label,
                    diff: known.diff(&offsets),
                });
            }
            Some(_) => {}
            None => entries.push(((release, version.clone(), offsets), label)),
        }
    }
    let mut entries: Vec<TableEntry> = entries.into_iter().map(|(e, _)| e).collect();
    entries.sort_by_key(|(release, _, _)| *release);
    Ok(entries)
}

/// Renders `offsets_table.json` for `entries` (sorted by release): deterministic, one
/// release per object, fields in [`Field`] order.
pub fn generate_table_json(entries: &[TableEntry]) -> String {
    let mut entries: Vec<&TableEntry> = entries.iter().collect();
    entries.sort_by_key(|(release, _, _)| *release);
    let mut out = String::from(
        "{\n  \"generated_by\": \"cargo xtask gen-offsets: Go runtime struct offsets per minor \
         release, read from the DWARF of reference binaries; do not edit by hand\",\n  \
         \"releases\": [\n",
    );
    for (i, ((major, minor), version, offsets)) in entries.iter().enumerate() {
        out.push_str(&format!(
            "    {{\n      \"release\": \"{major}.{minor}\",\n      \"derived_from\": \"{version}\",\n      \"offsets\": {{\n"
        ));
        let fields: Vec<String> = offsets
            .fields()
            .map(|(key, value)| match value {
                UNKNOWN => format!("        \"{key}\": null"),
                value => format!("        \"{key}\": {value}"),
            })
            .collect();
        out.push_str(&fields.join(",\n"));
        out.push_str("\n      }\n    }");
        out.push_str(if i + 1 < entries.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

/// Parses the table's JSON: every [`Field`] must be present (`null` = unknown), and no
/// other key.
pub fn parse_table(text: &str) -> Result<Vec<TableEntry>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[allow(dead_code, reason = "documents the file; not read")]
        generated_by: String,
        releases: Vec<Release>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Release {
        release: String,
        derived_from: String,
        offsets: std::collections::BTreeMap<String, Option<u32>>,
    }
    let file: File = serde_json::from_str(text).map_err(|err| err.to_string())?;
    let mut entries = Vec::new();
    for release in file.releases {
        let version = parse_go_version(&release.release).map_err(|err| err.to_string())?;
        let mut offsets = RuntimeOffsets::UNKNOWN;
        for field in Field::ALL {
            let value = release
                .offsets
                .get(field.key())
                .ok_or_else(|| format!("{}: no {}", release.release, field.key()))?;
            offsets.0[field as usize] = value.unwrap_or(UNKNOWN);
        }
        if let Some(extra) = release
            .offsets
            .keys()
            .find(|key| !Field::ALL.iter().any(|field| field.key() == key.as_str()))
        {
            return Err(format!("{}: unknown field {extra}", release.release));
        }
        entries.push((version, release.derived_from, offsets));
    }
    Ok(entries)
}

/// The struct layout the kernel side reads a binary with, where it came from, and what
/// the user should be told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `None`: no Go memory is read (goroutine ids, P and M details missing).
    pub offsets: Option<RuntimeOffsets>,
    /// `DWARF`, `table (go1.27)`, …, or `none`.
    pub source: String,
    pub warnings: Vec<String>,
}

/// The layout for `binary` built by `go_version`: `release` (`--go-layout`) if given,
/// else its DWARF, else the table entry for its release. DWARF that is present but
/// unreadable (damaged, or missing a member) falls back to the table entry of the very
/// same release; a newer release than the table knows then goes without offsets, since
/// only its own DWARF could say how its structs changed.
pub fn layout_for(
    binary: &GoBinary,
    go_version: &str,
    release: Option<&str>,
) -> Result<Layout, OffsetsError> {
    if let Some(release) = release {
        let (major, minor) = parse_go_version(release)?;
        return match from_table(major, minor) {
            Some((offsets, true)) => Ok(Layout {
                offsets: Some(offsets),
                source: OffsetsSource::Table {
                    release: (major, minor),
                    exact: true,
                }
                .to_string(),
                warnings: Vec::new(),
            }),
            _ => Err(OffsetsError::UnknownLayout {
                release: release.to_owned(),
                known: table_range(),
            }),
        };
    }
    let none = |mut warnings: Vec<String>, err: &OffsetsError| {
        warnings.push(format!(
            "no struct offsets for this binary ({err}); goroutine ids, P and M details will \
             be missing"
        ));
        Layout {
            offsets: None,
            source: "none".into(),
            warnings,
        }
    };
    let table = |warnings: Vec<String>| match from_table_for(go_version) {
        Ok((offsets, source)) => {
            let mut warnings = warnings;
            if let OffsetsSource::Table { exact: false, .. } = source {
                warnings.push(format!(
                    "{go_version} is newer than every release goprobe knows; assuming the \
                     {source}: check that goroutine ids look right, or choose another layout \
                     with --go-layout"
                ));
            }
            Layout {
                offsets: Some(offsets),
                source: source.to_string(),
                warnings,
            }
        }
        Err(err) => none(warnings, &err),
    };
    match from_binary_dwarf(binary) {
        Ok(offsets) => Ok(Layout {
            offsets: Some(offsets),
            source: OffsetsSource::Dwarf.to_string(),
            warnings: Vec::new(),
        }),
        Err(OffsetsError::NoDwarf) => Ok(table(Vec::new())),
        Err(err) => match from_table_for(go_version) {
            Ok((_, OffsetsSource::Table { exact: true, .. })) => Ok(table(vec![format!(
                "cannot read struct offsets from this binary's DWARF ({err}); using goprobe's \
                 table for {go_version}'s release instead"
            )])),
            _ => Ok(none(Vec::new(), &err)),
        },
    }
}

/// What the kernel side is configured with for one binary.
pub fn binary_config(
    offsets: Option<&RuntimeOffsets>,
    gosched_preempted_arg: bool,
) -> tracer_common::BinaryConfig {
    tracer_common::BinaryConfig {
        offsets: offsets.map_or(RuntimeOffsets::UNKNOWN.0, |offsets| offsets.0),
        gosched_preempted_arg: u32::from(gosched_preempted_arg),
    }
}

mod dwarf;
use dwarf::*;
pub use dwarf::{from_binary_dwarf, resolve_binary};

#[cfg(test)]
mod tests;
