//! Go's runtime symbol table, `.gopclntab`.
//!
//! Layouts follow `runtime/symtab.go` (`pcHeader`, `functab`), `runtime/runtime2.go`
//! (`_func`), `runtime/symtabinl.go` (`inlinedCall`) and `debug/gosym/pclntab.go`
//! of Go 1.21–1.27, which read the 1.16 (`0xfffffffa`), 1.18 (`0xfffffff0`) and 1.20+
//! (`0xfffffff1`) formats. Nothing is copied: [`Pclntab`] records where each
//! sub-table lives in the file and every read goes through a bounds check, because
//! the input may be damaged or hostile.
//!
//! Since Go 1.18 function entries are offsets from the text start (`moduledata.text`),
//! which the caller supplies: Go 1.26 stopped writing it into the header.

use std::{cell::Cell, ops::Range};

use super::image::Image;

/// `abi.Go12PCLnTabMagic`: Go 1.2–1.15, not supported.
pub(crate) const MAGIC_GO12: u32 = 0xffff_fffb;
/// `abi.Go116PCLnTabMagic`: Go 1.16–1.17.
pub(crate) const MAGIC_GO116: u32 = 0xffff_fffa;
/// `abi.Go118PCLnTabMagic`: Go 1.18–1.19.
pub(crate) const MAGIC_GO118: u32 = 0xffff_fff0;
/// `abi.Go120PCLnTabMagic`: Go 1.20 and later (still current in 1.27).
pub(crate) const MAGIC_GO120: u32 = 0xffff_fff1;

/// `abi.PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `abi.FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: u32 = 3;
/// `abi.FuncFlagAsm`: the function was written in assembly.
pub(crate) const FUNC_FLAG_ASM: u8 = 1 << 2;
/// Size of `runtime.inlinedCall` (Go 1.20+): funcID u8, 3 pad bytes, nameOff, parentPc, startLine.
const INLINED_CALL_SIZE: u64 = 16;
/// Go names are short, but generic instantiations can run to kilobytes; a name
/// without a terminator within this many bytes is treated as corrupt.
const MAX_NAME: usize = 1 << 16;
/// Deepest inline chain we follow; the compiler's own budget keeps real ones
/// under ten.
pub(crate) const MAX_INLINE_DEPTH: usize = 64;
/// Pc-value steps one [`View`] may decode in total. A legitimate walk needs at
/// most one step per instruction of one function, times the inline depth for
/// symbolisation; this only stops crafted tables from making a call slow.
const STEP_BUDGET: u64 = 1 << 24;

/// Which `_func`/functab encoding the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Layout {
    /// Go 1.16–1.17: absolute pointer-sized entries, no text start.
    Go116,
    /// Go 1.18–1.19: 32-bit entry offsets from the text start.
    Go118,
    /// Go 1.20+: like 1.18, plus `_func.startLine` and the compact `inlinedCall`.
    Go120,
}

/// Why a candidate pclntab header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Not a pclntab at all (magic or the fixed bytes are wrong).
    NotPclntab,
    /// A pclntab of a format we do not read.
    Unsupported(u32),
    /// Header fields point outside the table.
    Corrupt(&'static str),
}

/// Location of the pclntab and its sub-tables inside the file image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pclntab {
    pub layout: Layout,
    pub magic: u32,
    /// Link-time address of the header (`runtime.pcheader`).
    pub vaddr: u64,
    /// Instruction size quantum (`minLC`): 1 on amd64, 4 on arm64.
    pub quantum: u8,
    pub nfunc: usize,
    pub nfiles: usize,
    /// `pcHeader.textStart` (Go 1.18–1.25); zero from Go 1.26 on, absent in 1.16.
    pub header_text_start: Option<u64>,
    pub funcnametab: Range<usize>,
    pub cutab: Range<usize>,
    pub filetab: Range<usize>,
    pub pctab: Range<usize>,
    /// `pclntable`: functab followed by the `_func` records, offsets relative to its start.
    pub funcdata: Range<usize>,
    /// Offset of `funcnametab` from the header, for matching `moduledata.funcnametab`.
    pub funcname_offset: u64,
}

/// Plain copy of the fields of one `_func` record that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FuncRecord {
    /// File offset of the record.
    pub at: usize,
    pub entry: u64,
    /// Next functab entry: the function's code plus alignment padding ends here.
    pub end: u64,
    pub name_off: u32,
    pub pcsp: u32,
    pub pcfile: u32,
    pub pcln: u32,
    pub npcdata: u32,
    pub cu_offset: u32,
    pub func_id: u8,
    pub flag: u8,
    pub nfuncdata: u8,
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let end = off.checked_add(4)?;
    Some(u32::from_le_bytes(data.get(off..end)?.try_into().ok()?))
}

fn u64_at(data: &[u8], off: usize) -> Option<u64> {
    let end = off.checked_add(8)?;
    Some(u64::from_le_bytes(data.get(off..end)?.try_into().ok()?))
}

/// Bytes of the pclntab header (Go 1.18+ is the longer one: 8 + 8 words).
const HEADER_MAX: usize = 8 + 8 * 8;

/// Read a Go varint (`runtime.readvarint`): at most five bytes for a u32.
fn read_varint(data: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u32::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Check the header fixed bytes without reading further: used to scan for the table.
pub(crate) fn looks_like_header(b: &[u8]) -> bool {
    let Some(magic) = u32_at(b, 0) else {
        return false;
    };
    matches!(magic, MAGIC_GO116 | MAGIC_GO118 | MAGIC_GO120 | MAGIC_GO12)
        && b.get(4..8)
            .is_some_and(|f| f[0] == 0 && f[1] == 0 && matches!(f[2], 1 | 2 | 4) && f[3] == 8)
}

impl Pclntab {
    /// Parse and bounds-check the header at `start` (file offset) of a table that
    /// may extend to `end`.
    pub(crate) fn parse(
        img: &Image,
        start: usize,
        end: usize,
        vaddr: u64,
    ) -> Result<Pclntab, HeaderProblem> {
        let len = end
            .checked_sub(start)
            .filter(|_| end <= img.len())
            .ok_or(HeaderProblem::Corrupt("pclntab range"))?;
        let tab = img
            .get(start, len.min(HEADER_MAX))
            .ok_or(HeaderProblem::Corrupt("pclntab range"))?;
        let magic = u32_at(tab, 0).ok_or(HeaderProblem::NotPclntab)?;
        if !looks_like_header(tab) {
            return Err(HeaderProblem::NotPclntab);
        }
        let layout = match magic {
            MAGIC_GO120 => Layout::Go120,
            MAGIC_GO118 => Layout::Go118,
            MAGIC_GO116 => Layout::Go116,
            other => return Err(HeaderProblem::Unsupported(other)),
        };
        let quantum = tab[6];
        let word =
            |i: usize| u64_at(tab, 8 + 8 * i).ok_or(HeaderProblem::Corrupt("pclntab header"));
        let nfunc = word(0)?;
        let nfiles = word(1)?;
        // 1.18 inserted textStart as the third word; everything after it moved by one.
        let (header_text_start, first_off) = match layout {
            Layout::Go116 => (None, 2),
            Layout::Go118 | Layout::Go120 => (Some(word(2)?), 3),
        };
        let mut offs = [0u64; 5];
        for (i, o) in offs.iter_mut().enumerate() {
            *o = word(first_off + i)?;
        }
        let len = len as u64;
        let header_len = 8 + 8 * (first_off as u64 + 5);
        if offs.iter().any(|&o| o < header_len || o > len) {
            return Err(HeaderProblem::Corrupt("pclntab table offset"));
        }
        // Each sub-table ends where the next one (in address order) begins.
        let bound = |o: u64| -> Range<usize> {
            let next = offs.iter().copied().filter(|&x| x > o).min().unwrap_or(len);
            // Both fit in usize: they are <= end - start.
            (start + o as usize)..(start + next as usize)
        };
        let funcdata = (start + offs[4] as usize)..end;
        let field = if layout == Layout::Go116 { 8u64 } else { 4 };
        let functab_len = nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(field))
            .ok_or(HeaderProblem::Corrupt("pclntab nfunc"))?;
        if nfunc == 0 || functab_len > funcdata.len() as u64 {
            return Err(HeaderProblem::Corrupt("pclntab nfunc"));
        }
        if nfiles > len {
            return Err(HeaderProblem::Corrupt("pclntab nfiles"));
        }
        Ok(Pclntab {
            layout,
            magic,
            vaddr,
            quantum,
            nfunc: nfunc as usize,
            nfiles: nfiles as usize,
            header_text_start,
            funcnametab: bound(offs[0]),
            cutab: bound(offs[1]),
            filetab: bound(offs[2]),
            pctab: bound(offs[3]),
            funcdata,
            funcname_offset: offs[0],
        })
    }

    /// Bind to the file image and a text start for reading.
    pub(crate) fn view<'a>(&'a self, img: &'a Image, text_start: u64) -> View<'a> {
        self.view_with_budget(img, text_start, STEP_BUDGET)
    }

    /// Like [`Self::view`] with an explicit step budget, for walks over every
    /// function: one step per instruction quantum of the whole text plus a
    /// terminator per function is all a well-formed table can use.
    pub(crate) fn view_with_budget<'a>(
        &'a self,
        img: &'a Image,
        text_start: u64,
        budget: u64,
    ) -> View<'a> {
        View {
            t: self,
            img,
            text_start,
            budget: Cell::new(budget),
        }
    }
}

/// A [`Pclntab`] bound to the file bytes and the text start, with a budget of
/// pc-value steps shared by everything decoded through it.
pub(crate) struct View<'a> {
    t: &'a Pclntab,
    img: &'a Image,
    text_start: u64,
    budget: Cell<u64>,
}

/// One step of a pc-value table: `value` holds for pcs in `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PcRange {
    pub start: u64,
    pub end: u64,
    pub value: i32,
}

/// One entry of an inline tree (`runtime.inlinedCall`, Go 1.20+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InlinedCall {
    pub name_off: u32,
    pub parent_pc: i32,
}

impl<'a> View<'a> {
    fn field_size(&self) -> usize {
        if self.t.layout == Layout::Go116 { 8 } else { 4 }
    }

    fn functab_word(&self, index: usize) -> Option<u64> {
        let sz = self.field_size();
        let off = self.t.funcdata.start.checked_add(index.checked_mul(sz)?)?;
        let end = self.t.funcdata.end;
        if sz == 8 {
            self.img.u64_at(off, end)
        } else {
            self.img.u32_at(off, end).map(u64::from)
        }
    }

    /// Entry PC of function `i`; `i == nfunc` gives the end of the last function.
    pub(crate) fn entry(&self, i: usize) -> Option<u64> {
        if i > self.t.nfunc {
            return None;
        }
        let raw = self.functab_word(i.checked_mul(2)?)?;
        match self.t.layout {
            Layout::Go116 => Some(raw),
            Layout::Go118 | Layout::Go120 => self.text_start.checked_add(raw),
        }
    }

    /// Raw functab entry word (offset from the text start since 1.18).
    pub(crate) fn raw_entry(&self, i: usize) -> Option<u64> {
        if i > self.t.nfunc {
            return None;
        }
        self.functab_word(i.checked_mul(2)?)
    }

    pub(crate) fn nfunc(&self) -> usize {
        self.t.nfunc
    }

    /// `_func.nameOff` of function `i`, without decoding the rest of the record.
    pub(crate) fn name_off(&self, i: usize) -> Option<u32> {
        if i >= self.t.nfunc {
            return None;
        }
        let funcoff =
            usize::try_from(self.functab_word(i.checked_mul(2)?.checked_add(1)?)?).ok()?;
        let at = self
            .t
            .funcdata
            .start
            .checked_add(funcoff)?
            .checked_add(self.field_size())?;
        self.img.u32_at(at, self.t.funcdata.end)
    }

    /// The `_func` record of function `i`.
    pub(crate) fn func(&self, i: usize) -> Option<FuncRecord> {
        if i >= self.t.nfunc {
            return None;
        }
        let funcoff =
            usize::try_from(self.functab_word(i.checked_mul(2)?.checked_add(1)?)?).ok()?;
        let at = self.t.funcdata.start.checked_add(funcoff)?;
        let limit = self.t.funcdata.end;
        // One read for the fixed part (at most 44 bytes) instead of one per field.
        let fixed_len = match self.t.layout {
            Layout::Go118 => 40,
            Layout::Go116 | Layout::Go120 => 44,
        };
        if at.checked_add(fixed_len)? > limit {
            return None;
        }
        let d = self.img.get(at, fixed_len)?;
        // The first field is a pointer before 1.18 and a u32 offset since; the
        // next eight u32 fields follow it (see gosym funcData.field).
        let sz0 = self.field_size();
        let field = |n: usize| u32_at(d, sz0 + (n - 1) * 4);
        let (func_id_at, flag_at, nfuncdata_at) = match self.t.layout {
            Layout::Go116 => (40, 41, 43),
            Layout::Go118 => (36, 37, 39),
            Layout::Go120 => (40, 41, 43),
        };
        let byte = |o: usize| d.get(o).copied();
        let entry = match self.t.layout {
            Layout::Go116 => u64_at(d, 0)?,
            _ => self.text_start.checked_add(u64::from(u32_at(d, 0)?))?,
        };
        let end = self.entry(i + 1)?;
        if end < entry {
            return None;
        }
        Some(FuncRecord {
            at,
            entry,
            end,
            name_off: field(1)?,
            pcsp: field(4)?,
            pcfile: field(5)?,
            pcln: field(6)?,
            npcdata: field(7)?,
            cu_offset: field(8)?,
            func_id: byte(func_id_at)?,
            flag: if self.t.layout == Layout::Go116 {
                0
            } else {
                byte(flag_at)?
            },
            nfuncdata: byte(nfuncdata_at)?,
        })
    }

    /// Name at `off` in `funcnametab`.
    pub(crate) fn name(&self, off: u32) -> Option<&'a [u8]> {
        cstr(self.img, &self.t.funcnametab, off)
    }

    /// Index of the function containing `pc`.
    pub(crate) fn find(&self, pc: u64) -> Option<usize> {
        let n = self.t.nfunc;
        if pc < self.entry(0)? || pc >= self.entry(n)? {
            return None;
        }
        // Largest i with entry(i) <= pc. A corrupt (unsorted) table gives a wrong
        // answer, never a panic or a long loop: this is O(log n) reads.
        let (mut lo, mut hi) = (0usize, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid)? <= pc {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(lo)
    }

    /// Iterate the pc-value table at `off` of function `f`. A real table has at
    /// most one step per code byte of the function, which caps the walk.
    pub(crate) fn pc_ranges(&self, off: u32, f: &FuncRecord) -> PcValueIter<'_> {
        // Offset 0 means "no table"; runtime.pcvalue treats it the same way.
        let pos = match off {
            0 => usize::MAX,
            _ => self.t.pctab.start.saturating_add(off as usize),
        };
        let quantum = u64::from(self.t.quantum.max(1));
        PcValueIter {
            img: self.img,
            end: self.t.pctab.end,
            pos,
            pc: f.entry,
            val: -1,
            first: true,
            quantum,
            // Saturating: a Go 1.16 functab holds absolute 64-bit entries, so a crafted
            // table can make one function span nearly the whole address space.
            steps_left: ((f.end - f.entry) / quantum).saturating_add(2),
            budget: &self.budget,
        }
    }

    /// Value of the pc-value table at `off` for `pc` (`runtime.pcvalue`).
    pub(crate) fn pcvalue(&self, off: u32, f: &FuncRecord, pc: u64) -> Option<i32> {
        if pc < f.entry {
            return None;
        }
        self.pc_ranges(off, f)
            .find(|r| pc < r.end)
            .filter(|r| pc >= r.start)
            .map(|r| r.value)
    }

    /// Code size covered by a pc-value table: the exact function size, without
    /// the alignment padding that separates it from the next function.
    pub(crate) fn table_extent(&self, off: u32, f: &FuncRecord) -> Option<u64> {
        let last = self.pc_ranges(off, f).last()?;
        last.end.checked_sub(f.entry)
    }

    /// The `i`th entry of `_func.pcdata`, or `None`/0 when absent.
    fn pcdata_off(&self, f: &FuncRecord, i: u32) -> Option<u32> {
        if i >= f.npcdata {
            return None;
        }
        let fixed = if self.t.layout == Layout::Go118 {
            40
        } else {
            44
        };
        let off = f.at.checked_add(fixed)?.checked_add(i as usize * 4)?;
        self.img
            .u32_at(off, self.t.funcdata.end)
            .filter(|&o| o != 0)
    }

    /// The `i`th entry of `_func.funcdata` (an offset from `moduledata.gofunc`).
    fn funcdata_off(&self, f: &FuncRecord, i: u32) -> Option<u32> {
        if self.t.layout != Layout::Go120 || i >= u32::from(f.nfuncdata) {
            return None;
        }
        let off =
            f.at.checked_add(44)?
                .checked_add((f.npcdata as usize).checked_mul(4)?)?
                .checked_add(i as usize * 4)?;
        self.img
            .u32_at(off, self.t.funcdata.end)
            .filter(|&o| o != u32::MAX)
    }

    /// Offset of the function's inline tree from `gofunc`, if it has one.
    pub(crate) fn inline_tree_off(&self, f: &FuncRecord) -> Option<u32> {
        self.funcdata_off(f, FUNCDATA_INL_TREE)
    }

    /// Index into the inline tree at `pc`, or `None` (`-1`) when `pc` is not in inlined code.
    pub(crate) fn inline_index(&self, f: &FuncRecord, pc: u64) -> Option<u32> {
        let off = self.pcdata_off(f, PCDATA_INL_TREE_INDEX)?;
        let v = self.pcvalue(off, f, pc)?;
        u32::try_from(v).ok()
    }

    /// Source file at `pc` (pcfile + cutab + filetab).
    pub(crate) fn file(&self, f: &FuncRecord, pc: u64) -> Option<&'a [u8]> {
        let fileno = u32::try_from(self.pcvalue(f.pcfile, f, pc)?).ok()?;
        let idx = f.cu_offset.checked_add(fileno)? as usize;
        let at = self.t.cutab.start.checked_add(idx.checked_mul(4)?)?;
        let name_off = self.img.u32_at(at, self.t.cutab.end)?;
        if name_off == u32::MAX {
            return None;
        }
        cstr(self.img, &self.t.filetab, name_off)
    }

    /// Source line at `pc`.
    pub(crate) fn line(&self, f: &FuncRecord, pc: u64) -> Option<u32> {
        u32::try_from(self.pcvalue(f.pcln, f, pc)?).ok()
    }

    /// SP delta at `pc`.
    pub(crate) fn sp_delta(&self, f: &FuncRecord, pc: u64) -> Option<i32> {
        self.pcvalue(f.pcsp, f, pc)
    }
}

/// Decodes an inline-tree entry from its 16 raw bytes.
pub(crate) fn decode_inlined_call(b: &[u8]) -> Option<InlinedCall> {
    Some(InlinedCall {
        name_off: u32_at(b, 4)?,
        parent_pc: i32::from_le_bytes(b.get(8..12)?.try_into().ok()?),
    })
}

/// Byte size of the inline tree entry at `index`, relative to the tree start.
pub(crate) fn inlined_call_offset(index: u32) -> u64 {
    u64::from(index) * INLINED_CALL_SIZE
}

/// Size of one `inlinedCall`.
pub(crate) const fn inlined_call_size() -> usize {
    INLINED_CALL_SIZE as usize
}

/// NUL-terminated string at `off`, bounded by [`MAX_NAME`].
fn cstr<'a>(img: &'a Image, tab: &Range<usize>, off: u32) -> Option<&'a [u8]> {
    let at = tab.start.checked_add(off as usize)?;
    if at >= tab.end {
        return None;
    }
    let window = img.window(at, tab.end, MAX_NAME)?;
    let len = memchr::memchr(0, window)?;
    Some(&window[..len])
}

/// Iterator over the steps of a pc-value table (`runtime.step`).
pub(crate) struct PcValueIter<'a> {
    img: &'a Image,
    /// End of the pctab (file offset).
    end: usize,
    /// File offset of the next step; `usize::MAX` once finished.
    pos: usize,
    pc: u64,
    val: i32,
    first: bool,
    quantum: u64,
    /// Steps this walk may still take (function size in instructions + 2).
    steps_left: u64,
    /// Steps the owning [`View`] may still take across all walks.
    budget: &'a Cell<u64>,
}

impl Iterator for PcValueIter<'_> {
    type Item = PcRange;

    // Every step consumes at least two bytes, so a table ends (or fails) within
    // len/2 steps even when corrupt; the step caps bound it further, because a
    // zero pc delta would otherwise let a crafted table be walked in full by
    // every lookup.
    fn next(&mut self) -> Option<PcRange> {
        let budget = self.budget.get();
        if self.steps_left == 0 || budget == 0 {
            self.pos = usize::MAX;
            return None;
        }
        self.steps_left -= 1;
        self.budget.set(budget - 1);
        // Two varints of at most five bytes each.
        let Some(step) = self.img.window(self.pos, self.end, 10) else {
            self.pos = usize::MAX;
            return None;
        };
        let mut pos = 0;
        let uvdelta = read_varint(step, &mut pos);
        let Some(uvdelta) = uvdelta else {
            self.pos = usize::MAX;
            return None;
        };
        if uvdelta == 0 && !self.first {
            self.pos = usize::MAX;
            return None;
        }
        let vdelta = if uvdelta & 1 != 0 {
            !(uvdelta >> 1) as i32
        } else {
            (uvdelta >> 1) as i32
        };
        let Some(pcdelta) = read_varint(step, &mut pos) else {
            self.pos = usize::MAX;
            return None;
        };
        let start = self.pc;
        let Some(end) = u64::from(pcdelta)
            .checked_mul(self.quantum)
            .and_then(|d| start.checked_add(d))
        else {
            self.pos = usize::MAX;
            return None;
        };
        self.first = false;
        self.pos += pos;
        self.pc = end;
        self.val = self.val.wrapping_add(vdelta);
        Some(PcRange {
            start,
            end,
            value: self.val,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encode a pc-value table the way cmd/internal/obj does (zigzag value delta, pc delta).
    fn encode(steps: &[(i32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = -1i32;
        let put = |out: &mut Vec<u8>, mut v: u32| {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        };
        for &(val, pcdelta) in steps {
            let d = val - prev;
            let z = if d < 0 {
                ((!d as u32) << 1) | 1
            } else {
                (d as u32) << 1
            };
            put(&mut out, z);
            put(&mut out, pcdelta);
            prev = val;
        }
        out.push(0);
        out
    }

    #[test]
    fn varint_limits() {
        let mut p = 0;
        assert_eq!(read_varint(&[0x96, 0x01], &mut p), Some(150));
        assert_eq!(p, 2);
        let mut p = 0;
        assert_eq!(read_varint(&[0xff; 6], &mut p), None);
        let mut p = 0;
        assert_eq!(read_varint(&[0x80], &mut p), None);
    }

    #[test]
    fn pcvalue_iteration_matches_encoding() {
        let table = encode(&[(0, 4), (8, 10), (-2, 3)]);
        let mut data = vec![0u8; 1];
        data.extend_from_slice(&table);
        let budget = Cell::new(100);
        let img = Image::from_vec(data);
        let it = PcValueIter {
            img: &img,
            end: img.len(),
            pos: 1,
            pc: 100,
            val: -1,
            first: true,
            quantum: 1,
            steps_left: 10,
            budget: &budget,
        };
        let ranges: Vec<_> = it.collect();
        assert_eq!(
            ranges,
            vec![
                PcRange {
                    start: 100,
                    end: 104,
                    value: 0
                },
                PcRange {
                    start: 104,
                    end: 114,
                    value: 8
                },
                PcRange {
                    start: 114,
                    end: 117,
                    value: -2
                },
            ]
        );
        assert_eq!(budget.get(), 100 - 4, "three steps and the terminator");
    }

    #[test]
    fn zero_pc_deltas_are_capped() {
        // Value +1, pc +0, forever: only the step caps end this walk.
        let data: Vec<u8> = std::iter::repeat_n([2u8, 0], 10_000).flatten().collect();
        let budget = Cell::new(1000);
        let img = Image::from_vec(data);
        let it = PcValueIter {
            img: &img,
            end: img.len(),
            pos: 0,
            pc: 0,
            val: -1,
            first: true,
            quantum: 1,
            steps_left: 50,
            budget: &budget,
        };
        assert_eq!(it.count(), 50);
        assert_eq!(budget.get(), 950);
    }

    #[test]
    fn header_rejects_garbage() {
        let parse = |d: &[u8], end| Pclntab::parse(&Image::from_vec(d.to_vec()), 0, end, 0);
        let mut d = vec![0u8; 128];
        assert_eq!(parse(&d, 128), Err(HeaderProblem::NotPclntab));
        d[..8].copy_from_slice(&[0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8]);
        assert_eq!(parse(&d, 128), Err(HeaderProblem::Unsupported(MAGIC_GO12)));
        d[..4].copy_from_slice(&MAGIC_GO120.to_le_bytes());
        // All offsets zero: inside the header itself.
        assert!(matches!(parse(&d, 128), Err(HeaderProblem::Corrupt(_))));
        assert!(parse(&d, 4096).is_err());
    }
}
