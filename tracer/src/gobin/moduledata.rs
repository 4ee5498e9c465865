//! The runtime's `moduledata` (`runtime.firstmoduledata`), found without symbols.
//!
//! Its first field is a pointer to the pclntab header and the second is the
//! `funcnametab` slice, so an 8-byte word equal to the header address followed by
//! the `funcnametab` address identifies it. The linker writes the final (link-time)
//! values into the file even for PIE and externally linked binaries, where a
//! dynamic relocation repeats them, so no relocation processing is needed.
//!
//! Field offsets (amd64, from `runtime/symtab.go`): `text` at 176 in Go 1.16–1.27;
//! `gofunc` at 320 in Go 1.20–1.26 and at 344 from Go 1.27, which inserted
//! `typedesclen`, `itaboffset` and `itabsize`.

use super::{buildinfo::GoVersion, elf::Elf, image::Image, pclntab::Pclntab};

const OFF_FUNCNAMETAB: u64 = 8;
const OFF_MINPC: u64 = 160;
const OFF_TEXT: u64 = 176;
const OFF_ETEXT: u64 = 184;
/// `rodata` and `gofunc` offsets, Go 1.20–1.26.
const GOFUNC_PRE_127: (u64, u64) = (312, 320);
/// `rodata` and `gofunc` offsets, Go 1.27+.
const GOFUNC_127: (u64, u64) = (336, 344);
/// Cap on candidate words we validate, so a hostile file full of the pattern
/// cannot make the scan quadratic.
const MAX_CANDIDATES: usize = 4096;

/// The fields of `moduledata` we use, all link-time addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModuleData {
    /// Address of the structure itself.
    pub vaddr: u64,
    pub text: u64,
    pub etext: u64,
    pub minpc: u64,
}

/// Search the writable data for the moduledata that points at `pcln`.
///
/// `first_entry_off` is functab entry 0 (an offset from the text start), used to
/// check that `minpc == text + first_entry_off`.
pub(crate) fn find(
    elf: &Elf,
    img: &Image,
    pcln: &Pclntab,
    first_entry_off: Option<u64>,
) -> Option<ModuleData> {
    let needle = pcln.vaddr.to_le_bytes();
    let funcnametab = pcln.vaddr.checked_add(pcln.funcname_offset)?;
    let finder = memchr::memmem::Finder::new(&needle);
    // Writable segments hold .noptrdata/.data/.go.module/.data.rel.ro; try those
    // first, then the rest in case a hand-made file mislabels its flags.
    let mut segments: Vec<_> = elf.segments.iter().filter(|s| !s.is_exec()).collect();
    segments.sort_by_key(|s| !s.is_write());
    for vaddr in Elf::find_in_segments(img, segments, &finder).take(MAX_CANDIDATES) {
        if vaddr % 8 != 0 {
            continue;
        }
        if let Some(md) = validate(elf, img, vaddr, funcnametab, first_entry_off) {
            return Some(md);
        }
    }
    None
}

fn validate(
    elf: &Elf,
    img: &Image,
    vaddr: u64,
    funcnametab: u64,
    first_entry_off: Option<u64>,
) -> Option<ModuleData> {
    let field = |off: u64| elf.read_u64(img, vaddr.checked_add(off)?);
    if field(OFF_FUNCNAMETAB)? != funcnametab {
        return None;
    }
    let md = ModuleData {
        vaddr,
        text: field(OFF_TEXT)?,
        etext: field(OFF_ETEXT)?,
        minpc: field(OFF_MINPC)?,
    };
    if md.text > md.etext || md.minpc < md.text || md.minpc > md.etext {
        return None;
    }
    if let Some(off) = first_entry_off
        && md.text.checked_add(off)? != md.minpc
    {
        return None;
    }
    Some(md)
}

/// `moduledata.gofunc`, the base of funcdata offsets (inline trees).
///
/// The field moved in Go 1.27; with an unknown version both positions are tried
/// and a value is accepted only if it is an address in a non-executable segment
/// at or above the `rodata` field that precedes it.
pub(crate) fn gofunc(
    elf: &Elf,
    img: &Image,
    md: &ModuleData,
    version: Option<&GoVersion>,
) -> Option<u64> {
    let layouts: &[(u64, u64)] = match version {
        Some(v) if v.at_least(1, 27) => &[GOFUNC_127],
        Some(_) => &[GOFUNC_PRE_127],
        None => &[GOFUNC_PRE_127, GOFUNC_127],
    };
    layouts.iter().find_map(|&(rodata_off, gofunc_off)| {
        let rodata = elf.read_u64(img, md.vaddr.checked_add(rodata_off)?)?;
        let gofunc = elf.read_u64(img, md.vaddr.checked_add(gofunc_off)?)?;
        let seg = elf.segment_of(gofunc)?;
        (gofunc >= rodata && !seg.is_exec() && elf.segment_of(rodata).is_some()).then_some(gofunc)
    })
}
