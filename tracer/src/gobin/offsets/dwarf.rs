//! Struct offsets from a binary's DWARF: only the type sections, decompressed with
//! `object`, walked with gimli.

use super::*;

pub(super) type R<'a> = EndianSlice<'a, RunTimeEndian>;

/// The sections needed to read types; the others (line, loc, ranges, frame) are never
/// decompressed.
pub(super) const TYPE_SECTIONS: [SectionId; 6] = [
    SectionId::DebugInfo,
    SectionId::DebugAbbrev,
    SectionId::DebugStr,
    SectionId::DebugStrOffsets,
    SectionId::DebugLineStr,
    SectionId::DebugAddr,
];

/// Largest uncompressed DWARF section read. Go's biggest binaries have a `.debug_info` of
/// a few hundred MB at most; the cap keeps a hostile size field from reserving more.
pub(super) const MAX_DWARF_SECTION: u64 = 1 << 30;
/// Deflate's maximum expansion (258 bytes from 2 bits): a zlib section that claims a
/// bigger uncompressed size than this times its compressed size is corrupt.
pub(super) const MAX_DEFLATE_RATIO: u64 = 1032;

/// Refuses compressed sections that would need an unbounded allocation: `object`
/// reserves the declared uncompressed size up front, and its zstd path grows the output
/// with the stream rather than the declared size, so a 260 KB zstd section can expand to
/// gigabytes before the size mismatch is noticed. Go writes zlib only (`SHF_COMPRESSED`,
/// or `.zdebug_*` before Go 1.12), so zstd (from `objcopy --compress-debug-sections=zstd`)
/// is refused with an error naming the section.
pub(super) fn check_compressed(
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

pub(super) fn extract(
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
pub(super) fn dwarf_offsets(
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
pub(super) fn offsets_of(values: Vec<u32>) -> RuntimeOffsets {
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

/// One DWARF section, decompressed (empty if absent), reading only its bytes. Go compresses
/// with zlib: `SHF_COMPRESSED` (an `Elf64_Chdr`, then the stream) or, before Go 1.12, a
/// `.zdebug_*` section in place of the `.debug_*` one ("ZLIB", a big-endian size, zlib).
pub(super) fn dwarf_section(
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
pub(super) fn member_offsets_with<'d>(
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
pub(super) struct Types<'a> {
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
pub(super) fn plus_uconst(expr: R<'_>, encoding: gimli::Encoding) -> Option<u64> {
    let mut bytes = expr;
    match Operation::parse(&mut bytes, encoding).ok()? {
        Operation::PlusConstant { value } if bytes.is_empty() => Some(value),
        _ => None,
    }
}
