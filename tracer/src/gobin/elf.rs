//! The ELF container of a Go program, reduced to plain values.
//!
//! Read with `object`'s raw ELF types straight from the lazy [`Image`] (64-bit
//! little-endian only), so that nothing needs the whole file in one slice: the
//! header, program and section headers, section names and symbols are each a
//! small read. Damaged section headers are treated as absent rather than fatal:
//! a stripped or hand-edited binary still has program headers, and those are all
//! that address translation needs.

use std::{mem::size_of, ops::Range};

use object::{
    Endianness, ReadRef as _, StringTable,
    elf::{self, FileHeader64, ProgramHeader64, SectionHeader64, Sym64},
    read::elf::{FileHeader as _, ProgramHeader as _, SectionHeader as _, Sym as _},
};

use super::image::Image;

/// The byte order of every file we read (big-endian ELF is refused).
pub(crate) const LE: Endianness = Endianness::Little;
/// `e_ident` indices of the class and the byte order (`elf::Ident` is not `Pod`).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
/// Longest section name we keep; real ones are short, hostile ones are not.
const MAX_SECTION_NAME: usize = 256;

/// A `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

impl Segment {
    pub(crate) fn is_exec(&self) -> bool {
        self.flags & elf::PF_X != 0
    }

    pub(crate) fn is_write(&self) -> bool {
        self.flags & elf::PF_W != 0
    }

    /// The part of the segment that is backed by file bytes, as file offsets.
    pub(crate) fn file_range(&self, file_len: usize) -> Option<Range<usize>> {
        file_range(self.offset, self.filesz, file_len)
    }
}

/// A section header with its name resolved.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub name: String,
    pub header: SectionHeader64<Endianness>,
}

impl Section {
    pub(crate) fn addr(&self) -> u64 {
        self.header.sh_addr(LE)
    }

    /// File bytes of the section, if it has any and they lie inside the file.
    pub(crate) fn file_range(&self, file_len: usize) -> Option<Range<usize>> {
        let (offset, size) = self.header.file_range(LE)?;
        file_range(offset, size, file_len)
    }
}

fn file_range(offset: u64, size: u64, file_len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= file_len).then_some(start..end)
}

/// Where `.symtab` and its string table live in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SymtabRef {
    syms: Range<usize>,
    strs: Range<usize>,
}

/// One `.symtab` entry, borrowing its name from the image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sym<'a> {
    pub name: &'a [u8],
    pub value: u64,
    pub size: u64,
    pub kind: u8,
}

impl Sym<'_> {
    pub(crate) fn is_func(&self) -> bool {
        self.kind == elf::STT_FUNC
    }
}

/// Why the file could not be read as ELF at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    NotElf,
    Unsupported(&'static str),
}

/// The parts of an ELF file that the Go reader needs.
#[derive(Debug, Clone)]
pub(crate) struct Elf {
    pub e_type: u16,
    pub machine: u16,
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    pub symtab: Option<SymtabRef>,
}

impl Elf {
    pub(crate) fn parse(img: &Image) -> Result<Elf, ElfProblem> {
        let Some(ident) = img.get(0, 16).filter(|b| b.starts_with(&elf::ELFMAG)) else {
            return Err(ElfProblem::NotElf);
        };
        match ident[EI_CLASS] {
            elf::ELFCLASS64 => {}
            elf::ELFCLASS32 => return Err(ElfProblem::Unsupported("32-bit ELF")),
            _ => return Err(ElfProblem::Unsupported("unknown ELF class")),
        }
        if ident[EI_DATA] != elf::ELFDATA2LSB {
            return Err(ElfProblem::Unsupported("big-endian ELF"));
        }
        let header: &FileHeader64<Endianness> = img
            .read_at(0)
            .map_err(|()| ElfProblem::Unsupported("truncated ELF header"))?;
        if header.e_phnum(LE) > 0
            && usize::from(header.e_phentsize(LE)) != size_of::<ProgramHeader64<Endianness>>()
        {
            return Err(ElfProblem::Unsupported("unexpected program header size"));
        }
        let segments = header
            .program_headers(LE, img)
            .map_err(|_| ElfProblem::Unsupported("truncated program headers"))?
            .iter()
            .filter(|ph| ph.p_type(LE) == elf::PT_LOAD)
            .map(|ph| Segment {
                flags: ph.p_flags(LE),
                offset: ph.p_offset(LE),
                vaddr: ph.p_vaddr(LE),
                filesz: ph.p_filesz(LE),
                memsz: ph.p_memsz(LE),
            })
            .collect();
        // Section headers are optional for loading, so damage there only costs
        // us the fast paths (section lookup by name, .symtab).
        let (sections, symtab) = parse_sections(header, img).unwrap_or_default();
        Ok(Elf {
            e_type: header.e_type(LE),
            machine: header.e_machine(LE),
            segments,
            sections,
            symtab,
        })
    }

    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Segment whose file-backed part contains `vaddr`.
    pub(crate) fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    /// Link-time virtual address to file offset, through `PT_LOAD` headers.
    pub(crate) fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let seg = self.segment_of(vaddr)?;
        seg.offset.checked_add(vaddr - seg.vaddr)
    }

    /// File range from `vaddr` to the end of the file-backed part of its segment.
    pub(crate) fn range_from(&self, img: &Image, vaddr: u64) -> Option<Range<usize>> {
        let seg = self.segment_of(vaddr)?;
        let range = seg.file_range(img.len())?;
        let start = range
            .start
            .checked_add(usize::try_from(vaddr - seg.vaddr).ok()?)?;
        Some(start..range.end)
    }

    /// `len` file bytes at `vaddr`, all inside one segment.
    pub(crate) fn read<'a>(&self, img: &'a Image, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let r = self.range_from(img, vaddr)?;
        if len > r.end - r.start {
            return None;
        }
        img.get(r.start, len)
    }

    pub(crate) fn read_u64(&self, img: &Image, vaddr: u64) -> Option<u64> {
        let b = self.read(img, vaddr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    /// Virtual addresses, in file order, where `finder` matches the file-backed part of
    /// each of `segments` (in the order given). Callers bound how many they take.
    pub(crate) fn find_in_segments<'a>(
        img: &'a Image,
        segments: Vec<&'a Segment>,
        finder: &'a memchr::memmem::Finder<'a>,
    ) -> impl Iterator<Item = u64> + 'a {
        segments.into_iter().flat_map(move |seg| {
            seg.file_range(img.len())
                .into_iter()
                .flat_map(move |range| {
                    let start = range.start;
                    img.pieces(range).flat_map(move |(off, bytes, own)| {
                        finder
                            .find_iter(bytes)
                            .filter(move |&i| i < own)
                            .filter_map(move |i| seg.vaddr.checked_add((off + i - start) as u64))
                    })
                })
        })
    }

    pub(crate) fn lowest_load_vaddr(&self) -> u64 {
        self.segments.iter().map(|s| s.vaddr).min().unwrap_or(0)
    }

    /// Iterate `.symtab`, one entry read at a time. Entries whose name is out of
    /// bounds (or longer than [`super::image::WINDOW`]) are skipped.
    pub(crate) fn symbols<'a>(&'a self, img: &'a Image) -> impl Iterator<Item = Sym<'a>> + 'a {
        let (syms, strs) = match &self.symtab {
            Some(t) => (t.syms.clone(), t.strs.clone()),
            None => (0..0, 0..0),
        };
        let strings = StringTable::new(img, strs.start as u64, strs.end as u64);
        let size = size_of::<Sym64<Endianness>>();
        (0..syms.len() / size).filter_map(move |i| {
            let sym: &Sym64<Endianness> = img.read_at((syms.start + i * size) as u64).ok()?;
            Some(Sym {
                name: sym.name(LE, strings).ok()?,
                value: sym.st_value(LE),
                size: sym.st_size(LE),
                kind: sym.st_type(),
            })
        })
    }

    /// First symbol with exactly this name: `(value, size)`.
    pub(crate) fn symbol(&self, img: &Image, name: &str) -> Option<(u64, u64)> {
        self.symbols(img)
            .find(|s| s.name == name.as_bytes())
            .map(|s| (s.value, s.size))
    }
}

type SectionsAndSymtab = (Vec<Section>, Option<SymtabRef>);

fn parse_sections(header: &FileHeader64<Endianness>, img: &Image) -> Option<SectionsAndSymtab> {
    let table = header.sections(LE, img).ok()?;
    let sections = table
        .iter()
        .map(|sh| Section {
            name: table
                .section_name(LE, sh)
                .ok()
                .filter(|name| name.len() < MAX_SECTION_NAME)
                .map(|name| String::from_utf8_lossy(name).into_owned())
                .unwrap_or_default(),
            header: *sh,
        })
        .collect();
    let symtab = table
        .iter()
        .find(|sh| sh.sh_type(LE) == elf::SHT_SYMTAB)
        .and_then(|sh| {
            let strtab = table.iter().nth(usize::try_from(sh.sh_link(LE)).ok()?)?;
            let range = |sh: &SectionHeader64<Endianness>| {
                file_range(sh.sh_offset(LE), sh.sh_size(LE), img.len())
            };
            Some(SymtabRef {
                syms: range(sh)?,
                strs: range(strtab)?,
            })
        });
    Some((sections, symtab))
}

#[cfg(test)]
mod tests {
    use object::elf::{ELFCLASS32, ELFCLASS64, ELFDATA2LSB};

    use super::*;

    fn parse(b: &[u8]) -> Result<Elf, ElfProblem> {
        Elf::parse(&Image::from_vec(b.to_vec()))
    }

    #[test]
    fn rejects_non_elf_and_32_bit() {
        assert_eq!(parse(b"MZ\x90\x00").unwrap_err(), ElfProblem::NotElf);
        assert_eq!(parse(b"").unwrap_err(), ElfProblem::NotElf);
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[EI_CLASS] = ELFCLASS32;
        assert!(matches!(parse(&h), Err(ElfProblem::Unsupported(_))));
        h[EI_CLASS] = ELFCLASS64;
        h[EI_DATA] = 2;
        assert!(matches!(parse(&h), Err(ElfProblem::Unsupported(_))));
    }

    #[test]
    fn truncated_header_is_an_error_not_a_panic() {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[EI_CLASS] = ELFCLASS64;
        h[EI_DATA] = ELFDATA2LSB;
        assert!(parse(&h).is_err());
    }

    #[test]
    fn hostile_header_counts_are_bounded_by_the_file() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[EI_CLASS] = ELFCLASS64;
        h[EI_DATA] = ELFDATA2LSB;
        h[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&0xffffu16.to_le_bytes()); // phnum
        h[40..48].copy_from_slice(&u64::MAX.to_le_bytes()); // shoff
        h[58..60].copy_from_slice(&64u16.to_le_bytes());
        h[60..62].copy_from_slice(&0xffffu16.to_le_bytes());
        assert!(parse(&h).is_err(), "program headers run past the end");
        h[56..58].copy_from_slice(&0u16.to_le_bytes());
        let elf = parse(&h).expect("no segments, broken sections: still ELF");
        assert!(elf.sections.is_empty() && elf.symtab.is_none());
    }
}
