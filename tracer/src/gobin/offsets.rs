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
pub const TABLE_JSON: &str = include_str!("offsets_table.json");

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

// ---------------------------------------------------------------------------------------
// DWARF reading

type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// The sections needed to read types; the others (line, loc, ranges, frame) are never
/// decompressed.
const TYPE_SECTIONS: [SectionId; 6] = [
    SectionId::DebugInfo,
    SectionId::DebugAbbrev,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugLineStr,
    SectionId::DebugAddr,
];

/// Largest uncompressed DWARF section read. Go's biggest binaries have a `.debug_info` of
/// a few hundred MB at most; the cap keeps a hostile size field from reserving more.
const MAX_DWARF_SECTION: u64 = 1 << 30;
/// Deflate's maximum expansion (258 bytes from 2 bits): a zlib section that claims a
/// bigger uncompressed size than this times its compressed size is corrupt.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// Refuses compressed sections that would need an unbounded allocation: `object`
/// reserves the declared uncompressed size up front, and its zstd path grows the output
/// with the stream rather than the declared size, so a 260 KB zstd section can expand to
/// gigabytes before the size mismatch is noticed. Go writes zlib only (`SHF_COMPRESSED`,
/// or `.zdebug_*` before Go 1.12), so zstd (from `objcopy --compress-debug-sections=zstd`)
/// is refused with an error naming the section.
fn check_compressed(
    section: &'static str,
    data: &object::CompressedData<'_>,
) -> Result<(), OffsetsError> {
    let refuse = |reason: &'static str| OffsetsError::Compression { section, reason };
    match data.format {
        object::CompressionFormat::None => Ok(()),
        object::CompressionFormat::Zlib => {
            let bound = (data.data.len() as u64)
                .saturating_mul(MAX_DEFLATE_RATIO)
                .min(MAX_DWARF_SECTION);
            if data.uncompressed_size > bound {
                Err(refuse(
                    "its declared uncompressed size is impossible or too large",
                ))
            } else {
                Ok(())
            }
        }
        object::CompressionFormat::Zstandard => Err(refuse(
            "zstd compression is not supported (Go's linker writes zlib)",
        )),
        _ => Err(refuse("unknown compression format")),
    }
}

fn extract(
    elf_bytes: &[u8],
    on_missing: &mut dyn FnMut(OffsetsError) -> Result<u32, OffsetsError>,
) -> Result<RuntimeOffsets, OffsetsError> {
    let img = Image::from_vec(elf_bytes.to_vec());
    let elf = Elf::parse(&img).map_err(|problem| OffsetsError::Elf {
        reason: match problem {
            ElfProblem::NotElf => "no ELF header",
            ElfProblem::Unsupported(reason) => reason,
        },
    })?;
    dwarf_offsets(&elf, &img, on_missing)
}

/// The DWARF reader behind every entry point: reads only the few DWARF sections the
/// types need, not the whole file (a big unstripped binary is mostly DWARF and code
/// goprobe never looks at).
fn dwarf_offsets(
    elf: &Elf,
    img: &Image,
    on_missing: &mut dyn FnMut(OffsetsError) -> Result<u32, OffsetsError>,
) -> Result<RuntimeOffsets, OffsetsError> {
    let has_info = [".debug_info", ".zdebug_info"].iter().any(|name| {
        elf.section(name)
            .and_then(|section| section.file_range(img.len()))
            .is_some_and(|range| !range.is_empty())
    });
    if !has_info {
        return Err(OffsetsError::NoDwarf);
    }
    let requests = Field::ALL.map(Field::source);
    let values = member_offsets_with(|name| dwarf_section(elf, img, name), &requests, on_missing)?;
    Ok(offsets_of(values))
}

/// The offsets resolved for the requests made in [`Field`] order.
fn offsets_of(values: Vec<u32>) -> RuntimeOffsets {
    let mut offsets = RuntimeOffsets::UNKNOWN;
    for (slot, value) in offsets.0.iter_mut().zip(values) {
        *slot = value;
    }
    offsets
}

/// [`from_dwarf`] for an already opened binary.
pub fn from_binary_dwarf(binary: &GoBinary) -> Result<RuntimeOffsets, OffsetsError> {
    dwarf_offsets(&binary.elf, &binary.img, &mut |e| Err(e))
}

/// [`resolve`] for an already opened binary (see [`from_binary_dwarf`]).
pub fn resolve_binary(
    binary: &GoBinary,
    go_version: &str,
) -> Result<(RuntimeOffsets, OffsetsSource), OffsetsError> {
    match from_binary_dwarf(binary) {
        Ok(offsets) => Ok((offsets, OffsetsSource::Dwarf)),
        Err(OffsetsError::NoDwarf) => from_table_for(go_version),
        Err(e) => Err(e),
    }
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

/// One DWARF section, decompressed (empty if absent), reading only its bytes. Go compresses
/// with zlib: `SHF_COMPRESSED` (an `Elf64_Chdr`, then the stream) or, before Go 1.12, a
/// `.zdebug_*` section in place of the `.debug_*` one ("ZLIB", a big-endian size, zlib).
fn dwarf_section(
    elf: &Elf,
    img: &Image,
    name: &'static str,
) -> Result<Cow<'static, [u8]>, OffsetsError> {
    let zdebug = name.replacen(".debug_", ".zdebug_", 1);
    let found = [(name, false), (zdebug.as_str(), true)]
        .into_iter()
        .find_map(|(name, legacy)| {
            let section = elf.section(name)?;
            Some((section, section.file_range(img.len())?, legacy))
        });
    let Some((section, range, legacy)) = found else {
        return Ok(Cow::Borrowed(&[]));
    };
    let truncated = || OffsetsError::Compression {
        section: name,
        reason: "its compression header is truncated",
    };
    let chdr = section
        .header
        .compression(LE, img)
        .map_err(|_| truncated())?;
    let (format, start, uncompressed_size) = if let Some((header, start, _)) = chdr {
        let format = match header.ch_type(LE) {
            ELFCOMPRESS_ZLIB => CompressionFormat::Zlib,
            ELFCOMPRESS_ZSTD => CompressionFormat::Zstandard,
            _ => CompressionFormat::Unknown,
        };
        (format, start as usize, header.ch_size(LE))
    } else if legacy && img.get(range.start, 4) == Some(b"ZLIB") {
        let size: &U64<BigEndian> = img
            .read_at(range.start as u64 + 4)
            .map_err(|()| truncated())?;
        (
            CompressionFormat::Zlib,
            range.start + 12,
            size.get(BigEndian),
        )
    } else {
        (CompressionFormat::None, range.start, 0)
    };
    let data = img
        .read_vec(start, range.end.saturating_sub(start))
        .ok_or_else(truncated)?;
    if format == CompressionFormat::None {
        return Ok(Cow::Owned(data));
    }
    let compressed = CompressedData {
        format,
        data: &data,
        uncompressed_size,
    };
    check_compressed(name, &compressed)?;
    let bytes = compressed
        .decompress()
        .map_err(|source| OffsetsError::Decompress {
            section: name,
            source,
        })?;
    Ok(Cow::Owned(bytes.into_owned()))
}

/// Resolves each request from DWARF sections supplied by `load` (by section name; an
/// absent section is an empty slice).
fn member_offsets_with<'d>(
    mut load: impl FnMut(&'static str) -> Result<Cow<'d, [u8]>, OffsetsError>,
    requests: &[(&str, &str)],
    on_missing: &mut dyn FnMut(OffsetsError) -> Result<u32, OffsetsError>,
) -> Result<Vec<u32>, OffsetsError> {
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'d, [u8]>, OffsetsError> {
        if !TYPE_SECTIONS.contains(&id) {
            return Ok(Cow::Borrowed(&[]));
        }
        load(id.name())
    })?;
    let dwarf = sections.borrow(|s| EndianSlice::new(s, RunTimeEndian::Little));
    let types = Types::new(&dwarf)?;

    let mut wanted: Vec<&str> = requests.iter().map(|(ty, _)| *ty).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let found = types.find_structs(&wanted)?;
    let mut values = Vec::with_capacity(requests.len());
    for (ty, path) in requests {
        let result = match found.iter().find(|(name, _)| name == ty) {
            Some((_, Some(offset))) => types.member_offset(ty, *offset, path),
            _ => Err(OffsetsError::MissingType {
                ty: (*ty).to_owned(),
            }),
        };
        values.push(match result {
            Ok(v) => v,
            Err(e) => on_missing(e)?,
        });
    }
    Ok(values)
}

/// The units of `.debug_info`, to find and walk type DIEs by global offset.
struct Types<'a> {
    dwarf: &'a gimli::Dwarf<R<'a>>,
    /// (start offset, end offset, header, abbreviations), ascending.
    units: Vec<(usize, usize, UnitHeader<R<'a>>, Arc<Abbreviations>)>,
}

impl<'a> Types<'a> {
    fn new(dwarf: &'a gimli::Dwarf<R<'a>>) -> Result<Self, OffsetsError> {
        let mut units = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let UnitSectionOffset::DebugInfoOffset(DebugInfoOffset(start)) = header.offset() else {
                continue;
            };
            let end = start + header.length_including_self();
            let abbrevs = dwarf.abbreviations(&header)?;
            units.push((start, end, header, abbrevs));
        }
        units.sort_by_key(|(start, ..)| *start);
        Ok(Types { dwarf, units })
    }

    /// Finds the `DW_TAG_structure_type` DIE named each of `names` (the first one, in
    /// section order). One pass over `.debug_info`, stopping once all are found.
    fn find_structs<'n>(
        &self,
        names: &[&'n str],
    ) -> Result<Vec<(&'n str, Option<DebugInfoOffset>)>, OffsetsError> {
        let mut found: Vec<(&'n str, Option<DebugInfoOffset>)> =
            names.iter().map(|n| (*n, None)).collect();
        // Go's linker puts the runtime's types in the `runtime` unit: look there first (in
        // a big program it can be the 59th of 193 units), then everywhere else.
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        order.sort_by_key(|&i| !self.unit_named(i, b"runtime"));
        for i in order {
            let (_, _, header, abbrevs) = &self.units[i];
            let mut cursor = header.entries(abbrevs);
            while let Some((_, entry)) = cursor.next_dfs()? {
                if entry.tag() != gimli::DW_TAG_structure_type {
                    continue;
                }
                let Some(name) = self.attr_str(entry.attr_value(gimli::DW_AT_name)?) else {
                    continue;
                };
                if let Some(slot) = found
                    .iter_mut()
                    .find(|(n, off)| off.is_none() && n.as_bytes() == name)
                {
                    slot.1 = entry.offset().to_debug_info_offset(header);
                    if found.iter().all(|(_, off)| off.is_some()) {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether unit `i`'s root DIE is named `name` (reads that one DIE only).
    fn unit_named(&self, i: usize, name: &[u8]) -> bool {
        let Some((_, _, header, abbrevs)) = self.units.get(i) else {
            return false;
        };
        let mut cursor = header.entries(abbrevs);
        let Ok(Some((_, root))) = cursor.next_dfs() else {
            return false;
        };
        root.attr_value(gimli::DW_AT_name)
            .ok()
            .and_then(|value| self.attr_str(value))
            .is_some_and(|unit| unit == name)
    }

    /// The offset of the (possibly nested, `.`-separated) member `path` in the struct at
    /// `struct_offset`, named `ty` (for errors).
    fn member_offset(
        &self,
        ty: &str,
        struct_offset: DebugInfoOffset,
        path: &str,
    ) -> Result<u32, OffsetsError> {
        let mut total: u64 = 0;
        let mut current = struct_offset;
        let mut segments = path.split('.').peekable();
        let mut walked = String::new();
        while let Some(segment) = segments.next() {
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(segment);
            let missing = || OffsetsError::MissingMember {
                ty: ty.to_owned(),
                member: walked.clone(),
            };
            let (offset, member_type) = self.find_member(current, segment)?.ok_or_else(missing)?;
            let offset = offset.ok_or_else(|| OffsetsError::BadMemberLocation {
                ty: ty.to_owned(),
                member: walked.clone(),
            })?;
            total = total.saturating_add(offset);
            if segments.peek().is_some() {
                let not_struct = || OffsetsError::NotAStruct {
                    ty: ty.to_owned(),
                    member: walked.clone(),
                };
                let member_type = member_type.ok_or_else(not_struct)?;
                current = self.strip_typedefs(member_type)?.ok_or_else(not_struct)?;
            }
        }
        u32::try_from(total)
            .ok()
            .filter(|v| *v != UNKNOWN)
            .ok_or(OffsetsError::OffsetTooLarge {
                ty: ty.to_owned(),
                member: walked,
                offset: total,
            })
    }

    fn unit_for(
        &self,
        offset: DebugInfoOffset,
    ) -> Option<&(usize, usize, UnitHeader<R<'a>>, Arc<Abbreviations>)> {
        let index = self
            .units
            .partition_point(|(start, ..)| *start <= offset.0)
            .checked_sub(1)?;
        let unit = &self.units[index];
        (offset.0 < unit.1).then_some(unit)
    }

    /// Looks for the direct member `name` of the struct DIE at `offset`: returns its
    /// `data_member_location` (None when not a constant) and the global offset of its type.
    #[allow(
        clippy::type_complexity,
        reason = "a private helper's (location, type) pair reads better than a one-off struct"
    )]
    fn find_member(
        &self,
        offset: DebugInfoOffset,
        name: &str,
    ) -> Result<Option<(Option<u64>, Option<DebugInfoOffset>)>, OffsetsError> {
        let Some((_, _, header, abbrevs)) = self.unit_for(offset) else {
            return Ok(None);
        };
        let Some(unit_offset) = offset.to_unit_offset(header) else {
            return Ok(None);
        };
        let mut tree = header.entries_tree(abbrevs, Some(unit_offset))?;
        let root = tree.root()?;
        let mut children = root.children();
        while let Some(child) = children.next()? {
            let entry = child.entry();
            if entry.tag() != gimli::DW_TAG_member {
                continue;
            }
            let member_name = self.attr_str(entry.attr_value(gimli::DW_AT_name)?);
            if member_name != Some(name.as_bytes()) {
                continue;
            }
            let location = match entry.attr_value(gimli::DW_AT_data_member_location)? {
                Some(AttributeValue::Exprloc(expr)) => plus_uconst(expr.0, header.encoding()),
                Some(value) => value.udata_value(),
                // DWARF: no location means offset 0 (e.g. a union member).
                None => Some(0),
            };
            let member_type = self.type_ref(header, entry, gimli::DW_AT_type)?;
            return Ok(Some((location, member_type)));
        }
        Ok(None)
    }

    /// Follows typedef/const/volatile chains from the type DIE at `offset` to a struct.
    fn strip_typedefs(
        &self,
        mut offset: DebugInfoOffset,
    ) -> Result<Option<DebugInfoOffset>, OffsetsError> {
        // Bounded: a cycle in malformed DWARF must not hang.
        for _ in 0..16 {
            let Some((_, _, header, abbrevs)) = self.unit_for(offset) else {
                return Ok(None);
            };
            let Some(unit_offset) = offset.to_unit_offset(header) else {
                return Ok(None);
            };
            let mut cursor = header.entries_at_offset(abbrevs, unit_offset)?;
            let Some((_, entry)) = cursor.next_dfs()? else {
                return Ok(None);
            };
            match entry.tag() {
                gimli::DW_TAG_structure_type => return Ok(Some(offset)),
                gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                    let Some(next) = self.type_ref(header, entry, gimli::DW_AT_type)? else {
                        return Ok(None);
                    };
                    offset = next;
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The global offset of the DIE that attribute `at` (a reference) of `entry` points to.
    fn type_ref(
        &self,
        header: &UnitHeader<R<'a>>,
        entry: &gimli::DebuggingInformationEntry<'_, '_, R<'a>>,
        at: DwAt,
    ) -> Result<Option<DebugInfoOffset>, OffsetsError> {
        Ok(match entry.attr_value(at)? {
            Some(AttributeValue::UnitRef(unit_offset)) => unit_offset.to_debug_info_offset(header),
            Some(AttributeValue::DebugInfoRef(offset)) => Some(offset),
            _ => None,
        })
    }

    /// The bytes of a string attribute (Go writes DW_FORM_string; strp and line_strp are
    /// handled too).
    fn attr_str(&self, value: Option<AttributeValue<R<'a>>>) -> Option<&'a [u8]> {
        match value? {
            AttributeValue::String(s) => Some(s.slice()),
            AttributeValue::DebugStrRef(offset) => {
                self.dwarf.debug_str.get_str(offset).ok().map(|s| s.slice())
            }
            AttributeValue::DebugLineStrRef(offset) => self
                .dwarf
                .debug_line_str
                .get_str(offset)
                .ok()
                .map(|s| s.slice()),
            _ => None,
        }
    }
}

/// Evaluates a `data_member_location` expression of the form `DW_OP_plus_uconst N`
/// (older DWARF producers).
fn plus_uconst(expr: R<'_>, encoding: gimli::Encoding) -> Option<u64> {
    let mut bytes = expr;
    match Operation::parse(&mut bytes, encoding).ok()? {
        Operation::PlusConstant { value } if bytes.is_empty() => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_elf_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x7fELF",
            b"not an elf file at all",
            &[0u8; 4096],
        ] {
            let err = from_dwarf(bytes).expect_err("garbage must not parse");
            assert!(
                matches!(err, OffsetsError::Elf { .. }),
                "unexpected error for {} bytes: {err}",
                bytes.len()
            );
        }
    }

    /// A valid ELF64 header with no sections at all.
    fn empty_elf() -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = object::write::elf::Writer::new(object::Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.write_file_header(&object::write::elf::FileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: object::elf::ET_EXEC,
            e_machine: object::elf::EM_X86_64,
            e_entry: 0,
            e_flags: 0,
        })
        .expect("ELF header");
        out
    }

    #[test]
    fn elf_without_dwarf_is_no_dwarf() {
        let err = from_dwarf(&empty_elf()).expect_err("no DWARF");
        assert!(matches!(err, OffsetsError::NoDwarf), "got {err}");
        let err = from_dwarf_partial(&empty_elf()).expect_err("no DWARF");
        assert!(matches!(err, OffsetsError::NoDwarf), "got {err}");
    }

    #[test]
    fn resolve_without_dwarf_uses_the_table() {
        let (offsets, source) = resolve(&empty_elf(), "go1.23.9").expect("table has 1.23");
        assert_eq!(
            source,
            OffsetsSource::Table {
                release: (1, 23),
                exact: true
            }
        );
        assert_eq!(Some((offsets, true)), from_table(1, 23));
        let err = resolve(&empty_elf(), "go1.20.14").expect_err("1.20 unsupported");
        assert!(
            matches!(
                err,
                OffsetsError::UnsupportedRelease {
                    major: 1,
                    minor: 20
                }
            ),
            "got {err}"
        );
        let err = resolve(&empty_elf(), "gccgo").expect_err("not a version");
        assert!(matches!(err, OffsetsError::BadVersion(_)), "got {err}");
    }

    #[test]
    fn parses_go_versions() {
        for (text, want) in [
            ("go1.21.13", (1, 21)),
            ("1.25.5", (1, 25)),
            ("go1.26rc1", (1, 26)),
            ("go1.27.3 X:greenteagc", (1, 27)),
            ("devel go1.28-abcdef Tue Jan 1", (1, 28)),
            ("go1.9", (1, 9)),
        ] {
            assert_eq!(parse_go_version(text).ok(), Some(want), "{text}");
        }
        for text in ["", "go", "go1", "gox.y", "go1.x"] {
            assert!(parse_go_version(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn table_is_sorted_unique_complete_and_starts_at_1_21() {
        let table = table();
        assert_eq!(table.first().map(|e| e.0), Some((1, 21)), "oldest entry");
        for pair in table.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "table not strictly ascending at {:?}",
                pair[1].0
            );
        }
        for (release, version, offsets) in table {
            assert!(offsets.is_complete(), "{release:?} has unknown offsets");
            assert_eq!(
                parse_go_version(version).ok(),
                Some(*release),
                "entry {release:?} derived from {version}"
            );
        }
    }

    #[test]
    fn table_lookup_exact_newer_and_older() {
        let table = table();
        for (release, _, offsets) in table {
            assert_eq!(from_table(release.0, release.1), Some((*offsets, true)));
        }
        let (newest_release, _, newest) = table.last().expect("table is not empty");
        assert_eq!(
            from_table(newest_release.0, newest_release.1 + 5),
            Some((*newest, false)),
            "unknown newer minor takes the newest layout, inexact"
        );
        assert_eq!(from_table(1, 20), None);
        assert_eq!(from_table(1, 0), None);
        assert_eq!(from_table(0, 99), None);
    }

    #[test]
    fn generated_json_matches_the_checked_in_table() {
        assert_eq!(
            generate_table_json(table()),
            TABLE_JSON,
            "offsets_table.json was edited by hand or the generator changed: regenerate it"
        );
    }

    #[test]
    fn generation_is_deterministic_sorts_and_parses_back() {
        let a = (
            (1, 30),
            "go1.30.1".to_owned(),
            RuntimeOffsets([7; FIELD_COUNT]),
        );
        let b = ((1, 29), "go1.29.0".to_owned(), RuntimeOffsets::UNKNOWN);
        let one = generate_table_json(&[a.clone(), b.clone()]);
        let two = generate_table_json(&[b.clone(), a.clone()]);
        assert_eq!(one, two);
        let first_29 = one.find("\"1.29\"").expect("1.29 present");
        let first_30 = one.find("\"1.30\"").expect("1.30 present");
        assert!(first_29 < first_30, "entries sorted by release");
        assert!(one.contains("\"g_goid\": null"), "unknown written as null");
        assert_eq!(parse_table(&one), Ok(vec![b, a]));
    }

    #[test]
    fn table_parser_rejects_missing_and_unknown_fields() {
        let good =
            generate_table_json(&[((1, 21), "go1.21.0".into(), RuntimeOffsets([8; FIELD_COUNT]))]);
        let missing = good.replace("        \"g_goid\": 8,\n", "");
        assert!(parse_table(&missing).unwrap_err().contains("no g_goid"));
        let unknown = good.replace("\"g_goid\": 8", "\"g_goid\": 8, \"g_m\": 48");
        assert!(
            parse_table(&unknown)
                .unwrap_err()
                .contains("unknown field g_m")
        );
    }

    #[test]
    fn fields_follow_the_field_enum() {
        let offsets = RuntimeOffsets(std::array::from_fn(|i| i as u32 * 8));
        assert_eq!(offsets[Field::GGoid], 0);
        assert_eq!(offsets[Field::PSysmontickSchedwhen], 96);
        let keys: Vec<&str> = offsets.fields().map(|(key, _)| key).collect();
        assert_eq!(keys, Field::ALL.map(Field::key));
        assert!(!RuntimeOffsets::UNKNOWN.is_complete());
    }

    #[test]
    fn diff_names_differing_fields() {
        let a = RuntimeOffsets([1; FIELD_COUNT]);
        let mut b = a;
        b.0[Field::MProcid as usize] = 2;
        assert_eq!(a.diff(&b), vec![("m_procid", 1, 2)]);
        assert!(a.diff(&a).is_empty());
    }
}
