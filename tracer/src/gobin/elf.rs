//! The ELF container of a Go program, reduced to plain values.
//!
//! Parsed by hand from an [`Image`] (64-bit little-endian only) so that nothing
//! needs the whole file in one slice: the header, program and section headers
//! and section names are read piecewise. Damaged section headers are treated as
//! absent rather than fatal: a stripped or hand-edited binary still has program
//! headers, and those are all that address translation needs.

use std::ops::Range;

use super::image::Image;

const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const STT_FUNC: u8 = 2;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;
/// Longest section name we keep; real ones are short, hostile ones are not.
const MAX_SECTION_NAME: usize = 256;
/// Longest symbol name we read; Go generic instantiations can be long.
const MAX_SYMBOL_NAME: usize = super::image::WINDOW;

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
        self.flags & PF_X != 0
    }

    pub(crate) fn is_write(&self) -> bool {
        self.flags & PF_W != 0
    }

    /// The part of the segment that is backed by file bytes, as file offsets.
    pub(crate) fn file_range(&self, file_len: usize) -> Option<Range<usize>> {
        file_range(self.offset, self.filesz, file_len)
    }
}

/// A section header with its name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
}

impl Section {
    /// File bytes of the section, if it has any and they lie inside the file.
    pub(crate) fn file_range(&self, file_len: usize) -> Option<Range<usize>> {
        if self.sh_type == SHT_NOBITS {
            return None;
        }
        file_range(self.offset, self.size, file_len)
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
        self.kind == STT_FUNC
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

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_le(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Elf {
    pub(crate) fn parse(img: &Image) -> Result<Elf, ElfProblem> {
        let Some(ident) = img.get(0, 16).filter(|b| b.starts_with(b"\x7fELF")) else {
            return Err(ElfProblem::NotElf);
        };
        match ident[EI_CLASS] {
            ELFCLASS64 => {}
            ELFCLASS32 => return Err(ElfProblem::Unsupported("32-bit ELF")),
            _ => return Err(ElfProblem::Unsupported("unknown ELF class")),
        }
        if ident[EI_DATA] != ELFDATA2LSB {
            return Err(ElfProblem::Unsupported("big-endian ELF"));
        }
        // Every index below is within the fixed-size header slices we got.
        let eh = img
            .get(0, EHDR_SIZE)
            .ok_or(ElfProblem::Unsupported("truncated ELF header"))?;
        let e_type = u16_le(eh, 16);
        let machine = u16_le(eh, 18);
        let phoff = u64_le(eh, 32);
        let shoff = u64_le(eh, 40);
        let phentsize = usize::from(u16_le(eh, 54));
        let phnum = usize::from(u16_le(eh, 56));
        let shentsize = usize::from(u16_le(eh, 58));
        let shnum = usize::from(u16_le(eh, 60));
        let shstrndx = usize::from(u16_le(eh, 62));
        if phnum > 0 && phentsize != PHDR_SIZE {
            return Err(ElfProblem::Unsupported("unexpected program header size"));
        }
        let phoff =
            usize::try_from(phoff).map_err(|_| ElfProblem::Unsupported("program header offset"))?;
        let mut segments = Vec::new();
        for i in 0..phnum {
            let ph = phoff
                .checked_add(i * PHDR_SIZE)
                .and_then(|o| img.get(o, PHDR_SIZE))
                .ok_or(ElfProblem::Unsupported("truncated program headers"))?;
            if u32_le(ph, 0) != PT_LOAD {
                continue;
            }
            segments.push(Segment {
                flags: u32_le(ph, 4),
                offset: u64_le(ph, 8),
                vaddr: u64_le(ph, 16),
                filesz: u64_le(ph, 32),
                memsz: u64_le(ph, 40),
            });
        }
        // Section headers are optional for loading, so damage there only costs
        // us the fast paths (section lookup by name, .symtab).
        let (sections, symtab) = if shentsize == SHDR_SIZE {
            parse_sections(img, shoff, shnum, shstrndx).unwrap_or_default()
        } else {
            Default::default()
        };
        Ok(Elf {
            e_type,
            machine,
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

    /// Iterate `.symtab`. Entries whose name is out of bounds are skipped.
    pub(crate) fn symbols<'a>(&'a self, img: &'a Image) -> impl Iterator<Item = Sym<'a>> + 'a {
        let (syms, strs) = match &self.symtab {
            Some(t) => (t.syms.clone(), t.strs.clone()),
            None => (0..0, 0..0),
        };
        let count = (syms.end - syms.start) / SYM_SIZE;
        (0..count).filter_map(move |i| {
            let raw = img.get(syms.start + i * SYM_SIZE, SYM_SIZE)?;
            let name_off = usize::try_from(u32_le(raw, 0)).ok()?;
            let name_at = strs.start.checked_add(name_off)?;
            let window = img.window(name_at, strs.end, MAX_SYMBOL_NAME)?;
            let len = memchr::memchr(0, window)?;
            Some(Sym {
                name: &window[..len],
                value: u64_le(raw, 8),
                size: u64_le(raw, 16),
                kind: raw[4] & 0xf,
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

struct RawSection {
    name_off: u32,
    sh_type: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
}

fn parse_sections(
    img: &Image,
    shoff: u64,
    shnum: usize,
    shstrndx: usize,
) -> Option<SectionsAndSymtab> {
    if shoff == 0 || shnum == 0 {
        return None;
    }
    let shoff = usize::try_from(shoff).ok()?;
    let mut raw = Vec::new();
    for i in 0..shnum {
        let sh = img.get(shoff.checked_add(i * SHDR_SIZE)?, SHDR_SIZE)?;
        raw.push(RawSection {
            name_off: u32_le(sh, 0),
            sh_type: u32_le(sh, 4),
            flags: u64_le(sh, 8),
            addr: u64_le(sh, 16),
            offset: u64_le(sh, 24),
            size: u64_le(sh, 32),
            link: u32_le(sh, 40),
        });
    }
    let names = raw.get(shstrndx)?;
    let names = file_range(names.offset, names.size, img.len())?;
    let sections = raw
        .iter()
        .map(|r| {
            let name = names
                .start
                .checked_add(r.name_off as usize)
                .filter(|&at| at < names.end)
                .and_then(|at| img.window(at, names.end, MAX_SECTION_NAME))
                .and_then(|w| Some(&w[..memchr::memchr(0, w)?]))
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            Section {
                name,
                sh_type: r.sh_type,
                flags: r.flags,
                addr: r.addr,
                offset: r.offset,
                size: r.size,
            }
        })
        .collect();
    let symtab = raw.iter().find(|r| r.sh_type == SHT_SYMTAB).and_then(|r| {
        let strtab = raw.get(r.link as usize)?;
        Some(SymtabRef {
            syms: file_range(r.offset, r.size, img.len())?,
            strs: file_range(strtab.offset, strtab.size, img.len())?,
        })
    });
    Some((sections, symtab))
}

#[cfg(test)]
mod tests {
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
