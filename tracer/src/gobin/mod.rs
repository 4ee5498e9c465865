//! Reading Go ELF binaries for goprobe: build info, the runtime symbol table
//! (`.gopclntab`), `.symtab`, inline trees and address translation.
//!
//! Everything works on stripped (`-ldflags='-s -w'`), PIE, cgo and externally
//! linked binaries of Go 1.16–1.27 (tested on 1.21–1.27), without DWARF and
//! without section headers. [`GoBinary::open`] reads the file lazily in 1 MiB
//! chunks (see `image.rs`) and nothing is indexed up front, so opening a 90 MB
//! binary and resolving a probe table takes tens of milliseconds and touches
//! only the headers, the symbol table and the parts of the pclntab it reads.
//!
//! All addresses in this API are link-time virtual addresses (as in the ELF
//! program headers). For a PIE process, add the load bias computed from
//! `/proc/PID/maps` and [`GoBinary::first_load_vaddr`].
//!
//! Input is untrusted: a damaged or hostile file gives an error or a partial
//! answer, never a panic, an unbounded allocation or an unbounded loop.

mod buildinfo;
mod elf;
mod image;
mod moduledata;
pub mod offsets;
mod pclntab;
/// The Go releases goprobe supports (one list, shared with xtask).
pub mod releases;

#[cfg(test)]
mod fuzz_regressions;
#[cfg(test)]
mod testbins;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

pub use self::buildinfo::{BuildInfo, GoVersion, Module};
use self::{
    elf::{Elf, ElfProblem},
    image::Image,
    moduledata::ModuleData,
    pclntab::{FuncRecord, HeaderProblem, Pclntab, View},
};

/// Suffix of assembly and ABI-wrapper symbols in `.symtab` (absent in pclntab).
const ABI0_SUFFIX: &str = ".abi0";
/// Header-like byte patterns we validate while scanning for a pclntab; a
/// crafted file full of them gets a quick "not Go" instead of a long scan.
const MAX_PCLNTAB_CANDIDATES: usize = 1 << 16;
/// `ET_DYN`: PIE executables (and shared objects).
const ET_DYN: u16 = 3;

/// Errors from opening a Go binary. Messages name the file and, where one is
/// known, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// File that was opened.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF file at all.
    #[error("{object} is not an ELF executable; goprobe traces Linux Go programs")]
    NotElf {
        /// File (or `<memory>`) acted on.
        object: String,
    },
    /// An ELF file of a kind we do not read.
    #[error(
        "{object}: {reason} is not supported; goprobe reads 64-bit little-endian ELF executables"
    )]
    UnsupportedElf {
        /// File acted on.
        object: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No pclntab: not a Go program (or one whose runtime tables were removed).
    #[error(
        "{object} is not a Go program: it has no .gopclntab section and no Go pclntab header in its loaded segments"
    )]
    NotGo {
        /// File acted on.
        object: String,
    },
    /// A pclntab of a format this reader does not know.
    #[error(
        "{object}: unsupported pclntab magic {magic:#010x}; Go 1.16 or newer is required (Go 1.2-1.15 use 0xfffffffb)"
    )]
    UnsupportedPclntab {
        /// File acted on.
        object: String,
        /// The magic found.
        magic: u32,
    },
    /// A structure that must be present is cut short or inconsistent.
    #[error("{object}: {what} is truncated or corrupt; is the file complete?")]
    Truncated {
        /// File acted on.
        object: String,
        /// Which structure.
        what: &'static str,
    },
    /// No candidate text start agrees with the executable segments.
    #[error(
        "{object}: cannot determine the Go text start (tried runtime.text, moduledata, the pclntab header and .text); the binary may be corrupt"
    )]
    NoTextStart {
        /// File acted on.
        object: String,
    },
}

/// ELF machine number of x86-64.
const EM_X86_64: u16 = 62;

/// goprobe knows linux/amd64 only: its probe placement decodes x86 and its offsets and
/// hooked functions are those of the Linux runtime.
pub fn check_platform(binary: &GoBinary, path: &Path) -> anyhow::Result<()> {
    if binary.machine() != EM_X86_64 {
        anyhow::bail!(
            "{} is not an x86-64 program (ELF machine {}): goprobe traces linux/amd64 Go \
             programs only",
            path.display(),
            binary.machine()
        );
    }
    if let Some(goos) = binary.build_info().and_then(|info| info.setting("GOOS"))
        && goos != "linux"
    {
        anyhow::bail!(
            "{} was built for GOOS={goos}: goprobe traces linux/amd64 Go programs only",
            path.display()
        );
    }
    Ok(())
}

/// A function of the Go program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Function {
    /// Go name without any `.abi0` suffix, e.g. `runtime.asyncPreempt2`.
    pub name: String,
    /// Link-time entry address.
    pub entry: u64,
    /// Link-time end address (exclusive): `.symtab` size, else the extent of the
    /// function's pc-value tables, which is the same code size without padding.
    pub end: u64,
    /// An ABI0 symbol: assembly, or the ABI0→ABIInternal wrapper of a Go function.
    pub abi0: bool,
}

impl Function {
    /// Code size in bytes.
    pub fn size(&self) -> u64 {
        self.end.saturating_sub(self.entry)
    }
}

/// One frame of a symbolised PC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Go function name (for inlined frames, the inlined callee).
    pub function: String,
    /// Source file, empty if unknown.
    pub file: String,
    /// Source line, 0 if unknown.
    pub line: u32,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

/// Where the text start used for pclntab entry offsets came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStartSource {
    /// `runtime.text` in `.symtab`.
    Symtab,
    /// The `text` field of the runtime's `moduledata`.
    ModuleData,
    /// `pcHeader.textStart` (Go 1.18–1.25 only).
    PclntabHeader,
    /// The `.text` section address (wrong for external linking; last resort).
    TextSection,
    /// Go 1.16–1.17 tables hold absolute addresses.
    Absolute,
}

/// Facts about the pclntab, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PclntabInfo {
    /// Header magic, e.g. `0xfffffff1`.
    pub magic: u32,
    /// Link-time address of the header.
    pub vaddr: u64,
    /// Number of functions.
    pub nfunc: usize,
    /// Number of source files.
    pub nfiles: usize,
    /// `pcHeader.textStart`: `None` in the Go 1.16 format; `Some(0)` from Go 1.26.
    pub header_text_start: Option<u64>,
    /// Whether it was found by section name (else by scanning the segments).
    pub from_section: bool,
}

/// A Go ELF binary loaded into memory.
pub struct GoBinary {
    object: String,
    img: Image,
    elf: Elf,
    pcln: Pclntab,
    pcln_from_section: bool,
    text_start: u64,
    text_source: TextStartSource,
    build_info: Option<BuildInfo>,
    version: Option<GoVersion>,
    moduledata: OnceLock<Option<ModuleData>>,
    gofunc: OnceLock<Option<u64>>,
    abi0_entries: OnceLock<Vec<u64>>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("object", &self.object)
            .field("len", &self.img.len())
            .field("version", &self.version.as_ref().map(|v| v.raw.as_str()))
            .field("text_start", &format_args!("{:#x}", self.text_start))
            .field("text_source", &self.text_source)
            .finish_non_exhaustive()
    }
}

impl GoBinary {
    /// Read and parse the file at `path`.
    pub fn open(path: &Path) -> Result<GoBinary, GoBinaryError> {
        let io = |source| GoBinaryError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let len = usize::try_from(len).map_err(|_| GoBinaryError::Truncated {
            object: path.display().to_string(),
            what: "file size",
        })?;
        Self::parse(Image::from_file(file, len), path.display().to_string())
    }

    /// Parse an in-memory image (also the entry point for fuzzing).
    pub fn from_bytes(data: Vec<u8>) -> Result<GoBinary, GoBinaryError> {
        Self::parse(Image::from_vec(data), "<memory>".to_owned())
    }

    fn parse(img: Image, object: String) -> Result<GoBinary, GoBinaryError> {
        let elf = Elf::parse(&img).map_err(|p| match p {
            ElfProblem::NotElf => GoBinaryError::NotElf {
                object: object.clone(),
            },
            ElfProblem::Unsupported(reason) => GoBinaryError::UnsupportedElf {
                object: object.clone(),
                reason,
            },
        })?;
        let (pcln, pcln_from_section) = locate_pclntab(&elf, &img, &object)?;
        let build_info = buildinfo::read(&elf, &img);
        let version = build_info
            .as_ref()
            .and_then(|b| GoVersion::parse(&b.go_version))
            .or_else(|| {
                let (addr, _) = elf.symbol(&img, "runtime.buildVersion")?;
                GoVersion::parse(&buildinfo::go_string(&elf, &img, addr)?)
            })
            .or_else(|| GoVersion::parse(&buildinfo::find_build_version(&elf, &img)?));
        let mut bin = GoBinary {
            object,
            img,
            elf,
            pcln,
            pcln_from_section,
            text_start: 0,
            text_source: TextStartSource::Absolute,
            build_info,
            version,
            moduledata: OnceLock::new(),
            gofunc: OnceLock::new(),
            abi0_entries: OnceLock::new(),
        };
        let (start, source) = bin.resolve_text_start()?;
        bin.text_start = start;
        bin.text_source = source;
        Ok(bin)
    }

    /// Name of the file (or `<memory>`), as used in error messages.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Go release that built the binary: from `.go.buildinfo`, else the
    /// `runtime.buildVersion` string, by its `.symtab` symbol or, without one, by
    /// scanning for a Go string header pointing at a `go1.…` string; else `None`.
    pub fn go_version(&self) -> Option<&GoVersion> {
        self.version.as_ref()
    }

    /// Decoded `.go.buildinfo`, if present and readable.
    pub fn build_info(&self) -> Option<&BuildInfo> {
        self.build_info.as_ref()
    }

    /// Whether the ELF symbol table is present (it is removed by `-s` and `strip`).
    pub fn has_symtab(&self) -> bool {
        self.elf.symtab.is_some()
    }

    /// Whether DWARF debug info is present (removed by `-w`).
    pub fn has_dwarf(&self) -> bool {
        self.elf
            .sections
            .iter()
            .any(|s| s.name == ".debug_info" || s.name == ".zdebug_info")
    }

    /// Whether the file is position independent (`ET_DYN`).
    pub fn is_pie(&self) -> bool {
        self.elf.e_type == ET_DYN
    }

    /// ELF `e_machine` (62 = x86-64, 183 = AArch64).
    pub fn machine(&self) -> u16 {
        self.elf.machine
    }

    /// The whole file, for tests and fuzzing (the DWARF reader reads single sections).
    /// A binary opened with [`Self::open`] is read lazily, so the first call reads the
    /// whole file; if that read fails (the file shrank since `open`), the slice is empty.
    pub fn bytes(&self) -> &[u8] {
        self.img.full().unwrap_or_default()
    }

    /// Base address of pclntab entry offsets (`runtime.text`).
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Where [`Self::text_start`] came from.
    pub fn text_start_source(&self) -> TextStartSource {
        self.text_source
    }

    /// Facts about the pclntab header.
    pub fn pclntab_info(&self) -> PclntabInfo {
        PclntabInfo {
            magic: self.pcln.magic,
            vaddr: self.pcln.vaddr,
            nfunc: self.pcln.nfunc,
            nfiles: self.pcln.nfiles,
            header_text_start: self.pcln.header_text_start,
            from_section: self.pcln_from_section,
        }
    }

    /// Lowest `PT_LOAD` `p_vaddr`, for computing a PIE load bias from `/proc/PID/maps`.
    pub fn first_load_vaddr(&self) -> u64 {
        self.elf.lowest_load_vaddr()
    }

    /// `(p_vaddr, p_offset)` of every `PT_LOAD` segment, for mapping `/proc/PID/maps`
    /// entries (file offsets) back to link-time addresses.
    pub fn load_segments(&self) -> Vec<(u64, u64)> {
        self.elf
            .segments
            .iter()
            .map(|segment| (segment.vaddr, segment.offset))
            .collect()
    }

    /// Link-time virtual address to file offset through the `PT_LOAD` headers
    /// (works without section headers). `None` for addresses not backed by the file.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        // A segment's p_offset + p_filesz may reach past the end of a truncated or
        // crafted file: such an offset would only fail later, in the uprobe attach.
        self.elf
            .file_offset(vaddr)
            .filter(|&offset| offset < self.img.len() as u64)
    }

    /// `len` bytes of the file at `vaddr`, if they lie within one loaded segment.
    pub fn read_code(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        self.elf.read(&self.img, vaddr, len)
    }

    fn view(&self) -> View<'_> {
        self.pcln.view(&self.img, self.text_start)
    }

    /// Every function with exactly this Go name. Source: `.symtab` when present
    /// (an `.abi0` suffix is stripped for comparison and reported in
    /// [`Function::abi0`]), else the pclntab. A stripped binary lists both the
    /// ABI0 wrapper (18 bytes, 20 in PIE) and the real `runtime.asyncPreempt2`; the wrapper is
    /// marked `abi0` there too (see [`Self::function_at`]). Sorted by entry.
    pub fn functions_named(&self, name: &str) -> Vec<Function> {
        self.functions_named_many(&[name]).pop().unwrap_or_default()
    }

    /// [`Self::functions_named`] for several names in one pass over the symbol
    /// table (and one over the pclntab for names `.symtab` lacks); the result
    /// is parallel to `names`. Prefer this when resolving a probe table.
    pub fn functions_named_many(&self, names: &[&str]) -> Vec<Vec<Function>> {
        let mut out = vec![Vec::new(); names.len()];
        let mut wanted: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            wanted.entry(n.as_bytes()).or_default().push(i);
        }
        if self.has_symtab() {
            self.scan_symtab(&wanted, &mut out);
            // A name .symtab lacks may still be in the pclntab (a partly
            // stripped binary); only those names are looked up again.
            wanted.retain(|_, idx| idx.iter().all(|&i| out[i].is_empty()));
        }
        if !wanted.is_empty() {
            self.scan_pclntab(&wanted, &mut out);
        }
        for fs in &mut out {
            fs.sort_by_key(|f| (f.entry, f.abi0));
            fs.dedup();
        }
        out
    }

    fn scan_symtab(&self, wanted: &HashMap<&[u8], Vec<usize>>, out: &mut [Vec<Function>]) {
        for s in self.elf.symbols(&self.img).filter(|s| s.is_func()) {
            let (plain, abi0) = match s.name.strip_suffix(ABI0_SUFFIX.as_bytes()) {
                Some(p) => (p, true),
                None => (s.name, false),
            };
            let Some(idx) = wanted.get(plain) else {
                continue;
            };
            // Zero-size symbols: take the functab bound, which needs no table
            // walk, so a symtab of many such entries stays cheap.
            let end = if s.size > 0 {
                s.value.saturating_add(s.size)
            } else {
                let v = self.view();
                v.find(s.value)
                    .and_then(|i| v.entry(i + 1))
                    .unwrap_or(s.value)
            };
            for &i in idx {
                out[i].push(Function {
                    name: String::from_utf8_lossy(plain).into_owned(),
                    entry: s.value,
                    end,
                    abi0,
                });
            }
        }
    }

    fn scan_pclntab(&self, wanted: &HashMap<&[u8], Vec<usize>>, out: &mut [Vec<Function>]) {
        let v = self.view();
        for i in 0..v.nfunc() {
            let Some(idx) = v
                .name_off(i)
                .and_then(|off| v.name(off))
                .and_then(|n| wanted.get(n))
            else {
                continue;
            };
            let Some(f) = v
                .func(i)
                .and_then(|r| self.function_from_record(&self.view(), &r))
            else {
                continue;
            };
            for &j in idx {
                out[j].push(f.clone());
            }
        }
    }

    #[cfg(test)]
    fn symtab_functions_named(&self, name: &str) -> Vec<Function> {
        let mut out = vec![Vec::new()];
        self.scan_symtab(&HashMap::from([(name.as_bytes(), vec![0])]), &mut out);
        out.pop().unwrap_or_default()
    }

    #[cfg(test)]
    fn pclntab_functions_named(&self, name: &str) -> Vec<Function> {
        let mut out = vec![Vec::new()];
        self.scan_pclntab(&HashMap::from([(name.as_bytes(), vec![0])]), &mut out);
        out.pop().unwrap_or_default()
    }

    /// All functions in the pclntab, in address order.
    pub fn functions(&self) -> impl Iterator<Item = Function> + '_ {
        // One budget for the whole walk, sized for well-formed tables, so that a
        // crafted pctab costs O(text size) in total rather than per function.
        let raw = self.pcln.view(&self.img, 0);
        let text = raw
            .raw_entry(self.pcln.nfunc)
            .zip(raw.raw_entry(0))
            .map_or(0, |(hi, lo)| hi.saturating_sub(lo));
        let quantum = u64::from(self.pcln.quantum.max(1));
        let budget = (text / quantum).saturating_add(2 * self.pcln.nfunc as u64 + 16);
        let v = self
            .pcln
            .view_with_budget(&self.img, self.text_start, budget);
        (0..self.pcln.nfunc).filter_map(move |i| {
            let f = v.func(i)?;
            self.function_from_record(&v, &f)
        })
    }

    fn function_from_record(&self, v: &View<'_>, f: &FuncRecord) -> Option<Function> {
        let name = String::from_utf8_lossy(v.name(f.name_off)?).into_owned();
        let next = f.end;
        // The pcsp table covers exactly the function's code; the functab gap to
        // the next entry also includes alignment padding.
        let end = v
            .table_extent(f.pcsp, f)
            .and_then(|n| f.entry.checked_add(n))
            .filter(|&e| e > f.entry && e <= next)
            .unwrap_or(next);
        Some(Function {
            name,
            entry: f.entry,
            end,
            abi0: self.abi0_entries().binary_search(&f.entry).is_ok()
                || (!self.has_symtab() && f.flag & pclntab::FUNC_FLAG_ASM != 0),
        })
    }

    /// Sorted entries of ABI0 functions: `.abi0` symbols when `.symtab` exists,
    /// else the compiler's ABI0 wrappers found in the pclntab. Built once, on
    /// first use, in one pass.
    fn abi0_entries(&self) -> &[u64] {
        self.abi0_entries.get_or_init(|| {
            let mut entries: Vec<u64> = if self.has_symtab() {
                self.elf
                    .symbols(&self.img)
                    .filter(|s| s.is_func() && s.name.ends_with(ABI0_SUFFIX.as_bytes()))
                    .map(|s| s.value)
                    .collect()
            } else {
                self.pclntab_abi_wrappers()
            };
            entries.sort_unstable();
            entries.dedup();
            entries
        })
    }

    /// ABI0→ABIInternal wrappers: not assembly, `FuncIDWrapper`, and sharing their
    /// name with the function they wrap (method and equality wrappers have
    /// unique names).
    fn pclntab_abi_wrappers(&self) -> Vec<u64> {
        let v = self.view();
        let wrapper_id = func_id_wrapper(self.version.as_ref());
        let is_wrapper = |f: &FuncRecord| {
            f.flag & pclntab::FUNC_FLAG_ASM == 0
                && match wrapper_id {
                    Some(id) => f.func_id == id,
                    None => f.func_id != 0,
                }
        };
        let mut counts: HashMap<&[u8], u32> = HashMap::new();
        for f in (0..v.nfunc()).filter_map(|i| v.func(i)) {
            if is_wrapper(&f)
                && let Some(name) = v.name(f.name_off)
            {
                counts.insert(name, 0);
            }
        }
        if counts.is_empty() {
            return Vec::new();
        }
        for f in (0..v.nfunc()).filter_map(|i| v.func(i)) {
            if let Some(c) = v.name(f.name_off).and_then(|n| counts.get_mut(n)) {
                *c += 1;
            }
        }
        (0..v.nfunc())
            .filter_map(|i| v.func(i))
            .filter(|f| {
                is_wrapper(f)
                    && v.name(f.name_off)
                        .and_then(|n| counts.get(n))
                        .is_some_and(|&c| c > 1)
            })
            .map(|f| f.entry)
            .collect()
    }

    /// The function containing `vaddr` (pclntab).
    pub fn function_at(&self, vaddr: u64) -> Option<Function> {
        let v = self.view();
        let i = v.find(vaddr)?;
        let f = v.func(i)?;
        self.function_from_record(&v, &f)
    }

    /// SP delta (frame size so far) at `pc`, from the pcsp table.
    pub fn pcsp(&self, pc: u64) -> Option<i32> {
        let v = self.view();
        let f = v.func(v.find(pc)?)?;
        v.sp_delta(&f, pc)
    }

    /// Symbolise a link-time PC, innermost frame first: inlined frames from the
    /// inline tree (`FUNCDATA_InlTree` + `PCDATA_InlTreeIndex`, Go 1.20+), then the
    /// physical function. Pass `pc - 1` for return addresses, as the runtime does.
    /// Empty if `pc` is outside every function.
    pub fn symbolize(&self, pc: u64) -> Vec<Frame> {
        let v = self.view();
        let Some(f) = v.find(pc).and_then(|i| v.func(i)) else {
            return Vec::new();
        };
        let frame = |name: &[u8], at: u64, inlined: bool| Frame {
            function: String::from_utf8_lossy(name).into_owned(),
            file: v
                .file(&f, at)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default(),
            line: v.line(&f, at).unwrap_or(0),
            inlined,
        };
        let mut frames = Vec::new();
        let mut at = pc;
        let tree = v
            .inline_tree_off(&f)
            .and_then(|off| self.gofunc()?.checked_add(u64::from(off)));
        if let Some(tree) = tree {
            while frames.len() < pclntab::MAX_INLINE_DEPTH {
                let Some(ix) = v.inline_index(&f, at) else {
                    break;
                };
                let Some(call) = tree
                    .checked_add(pclntab::inlined_call_offset(ix))
                    .and_then(|a| self.elf.read(&self.img, a, pclntab::inlined_call_size()))
                    .and_then(pclntab::decode_inlined_call)
                else {
                    break;
                };
                frames.push(frame(v.name(call.name_off).unwrap_or(b"?"), at, true));
                let Some(parent) = u64::try_from(call.parent_pc)
                    .ok()
                    .and_then(|p| f.entry.checked_add(p))
                else {
                    break;
                };
                at = parent;
            }
        }
        frames.push(frame(v.name(f.name_off).unwrap_or(b"?"), at, false));
        frames
    }

    fn moduledata(&self) -> Option<&ModuleData> {
        self.moduledata
            .get_or_init(|| {
                let first = self.pcln.view(&self.img, 0).raw_entry(0);
                moduledata::find(&self.elf, &self.img, &self.pcln, first)
            })
            .as_ref()
    }

    /// Link-time address of `moduledata` (`runtime.firstmoduledata`), if found.
    pub fn moduledata_vaddr(&self) -> Option<u64> {
        self.moduledata().map(|m| m.vaddr)
    }

    /// Base of funcdata offsets: `go:func.*` in `.symtab`, else `moduledata.gofunc`.
    fn gofunc(&self) -> Option<u64> {
        *self.gofunc.get_or_init(|| {
            let from_sym = ["go:func.*", "go.func.*"]
                .iter()
                .find_map(|n| self.elf.symbol(&self.img, n))
                .map(|(addr, _)| addr)
                .filter(|&a| self.elf.segment_of(a).is_some());
            from_sym.or_else(|| {
                moduledata::gofunc(
                    &self.elf,
                    &self.img,
                    self.moduledata()?,
                    self.version.as_ref(),
                )
            })
        })
    }

    /// Pick the first text-start candidate that puts the whole functab inside an
    /// executable segment. `.text` comes last because cgo/external linking puts
    /// C startup code before `runtime.text`.
    fn resolve_text_start(&self) -> Result<(u64, TextStartSource), GoBinaryError> {
        if self.pcln.layout == pclntab::Layout::Go116 {
            return Ok((0, TextStartSource::Absolute));
        }
        let raw = self.pcln.view(&self.img, 0);
        let (Some(first), Some(last)) = (raw.raw_entry(0), raw.raw_entry(self.pcln.nfunc)) else {
            return Err(GoBinaryError::Truncated {
                object: self.object.clone(),
                what: "pclntab functab",
            });
        };
        let fits = |base: u64| -> bool {
            let (Some(lo), Some(hi)) = (base.checked_add(first), base.checked_add(last)) else {
                return false;
            };
            // filesz, not memsz: code is file-backed, and a crafted memsz must not
            // widen the range that later pc-value walks are capped by.
            self.elf
                .segments
                .iter()
                .any(|s| s.is_exec() && lo >= s.vaddr && hi >= lo && hi - s.vaddr <= s.filesz)
        };
        let symtab = || {
            self.elf
                .symbol(&self.img, "runtime.text")
                .map(|(a, _)| (a, TextStartSource::Symtab))
        };
        let md = || {
            self.moduledata()
                .map(|m| (m.text, TextStartSource::ModuleData))
        };
        let header = || {
            self.pcln
                .header_text_start
                .filter(|&t| t != 0)
                .map(|t| (t, TextStartSource::PclntabHeader))
        };
        let section = || {
            self.elf
                .section(".text")
                .map(|s| (s.addr(), TextStartSource::TextSection))
        };
        let candidates: [&dyn Fn() -> Option<(u64, TextStartSource)>; 4] =
            [&symtab, &md, &header, &section];
        candidates
            .iter()
            .filter_map(|c| c())
            .find(|&(base, _)| fits(base))
            .ok_or_else(|| GoBinaryError::NoTextStart {
                object: self.object.clone(),
            })
    }
}

/// `abi.FuncIDWrapper`, the last FuncID, which moved as IDs were added
/// (`internal/abi/symtab.go`): 21 in Go 1.21, 22 in 1.22–1.24, 23 in 1.25–1.27.
fn func_id_wrapper(version: Option<&GoVersion>) -> Option<u8> {
    let v = version?;
    if v.major != 1 || v.minor < 21 {
        return None;
    }
    Some(match v.minor {
        21 => 21,
        22..=24 => 22,
        _ => 23,
    })
}

/// Find the pclntab: by section name, by `.symtab` symbol, else by scanning the
/// non-executable loaded segments for a header that validates.
fn locate_pclntab(elf: &Elf, img: &Image, object: &str) -> Result<(Pclntab, bool), GoBinaryError> {
    let problem = |p: HeaderProblem| match p {
        HeaderProblem::Unsupported(magic) => GoBinaryError::UnsupportedPclntab {
            object: object.to_owned(),
            magic,
        },
        HeaderProblem::NotPclntab | HeaderProblem::Corrupt(_) => GoBinaryError::Truncated {
            object: object.to_owned(),
            what: "pclntab header",
        },
    };
    // Internal-linking PIE before Go 1.26 calls it .data.rel.ro.gopclntab.
    let section = elf
        .sections
        .iter()
        .find(|s| s.name == ".gopclntab" || s.name.ends_with(".gopclntab"));
    if let Some(sec) = section {
        let range = sec
            .file_range(img.len())
            .ok_or_else(|| GoBinaryError::Truncated {
                object: object.to_owned(),
                what: ".gopclntab section",
            })?;
        return Pclntab::parse(img, range.start, range.end, sec.addr())
            .and_then(|p| sane(img, p))
            .map(|p| (p, true))
            .map_err(problem);
    }
    if let Some((addr, _)) = elf.symbol(img, "runtime.pclntab")
        && let Some(p) = at_vaddr(elf, img, addr)
    {
        return Ok((p, false));
    }
    let mut first_problem = None;
    let mut candidates = 0usize;
    let finders: Vec<_> = [
        pclntab::MAGIC_GO120,
        pclntab::MAGIC_GO118,
        pclntab::MAGIC_GO116,
        pclntab::MAGIC_GO12,
    ]
    .iter()
    .map(|m| memchr::memmem::Finder::new(&m.to_le_bytes()).into_owned())
    .collect();
    for seg in elf.segments.iter().filter(|s| !s.is_exec()) {
        let Some(range) = seg.file_range(img.len()) else {
            continue;
        };
        for (off, bytes, own) in img.pieces(range.clone()) {
            for finder in &finders {
                for i in finder.find_iter(bytes).filter(|&i| i < own) {
                    let rel = (off + i - range.start) as u64;
                    let Some(vaddr) = seg.vaddr.checked_add(rel) else {
                        continue;
                    };
                    // The header is pointer-aligned.
                    if vaddr % 8 != 0 || !pclntab::looks_like_header(&bytes[i..]) {
                        continue;
                    }
                    candidates += 1;
                    if candidates > MAX_PCLNTAB_CANDIDATES {
                        return Err(GoBinaryError::NotGo {
                            object: object.to_owned(),
                        });
                    }
                    match Pclntab::parse(img, off + i, range.end, vaddr).and_then(|p| sane(img, p))
                    {
                        Ok(p) => return Ok((p, false)),
                        Err(e) => {
                            first_problem.get_or_insert(e);
                        }
                    }
                }
            }
        }
    }
    match first_problem {
        Some(p @ HeaderProblem::Unsupported(_)) => Err(problem(p)),
        _ => Err(GoBinaryError::NotGo {
            object: object.to_owned(),
        }),
    }
}

fn at_vaddr(elf: &Elf, img: &Image, vaddr: u64) -> Option<Pclntab> {
    let seg = elf.segment_of(vaddr)?;
    let range = seg.file_range(img.len())?;
    let start = range
        .start
        .checked_add(usize::try_from(vaddr - seg.vaddr).ok()?)?;
    Pclntab::parse(img, start, range.end, vaddr)
        .and_then(|p| sane(img, p))
        .ok()
}

/// Beyond the header: the first and last functions must be readable, named and
/// in order. This rejects byte patterns that merely look like a header.
fn sane(img: &Image, p: Pclntab) -> Result<Pclntab, HeaderProblem> {
    let v = p.view(img, 0);
    let check = |i: usize| -> Option<()> {
        let f = v.func(i)?;
        v.name(f.name_off)?;
        (v.raw_entry(i)? <= v.raw_entry(i + 1)?).then_some(())
    };
    let last = p.nfunc - 1;
    check(0)
        .and_then(|_| check(last))
        .and_then(|_| (v.raw_entry(0)? <= v.raw_entry(p.nfunc)?).then_some(()))
        .ok_or(HeaderProblem::Corrupt("pclntab functab"))?;
    Ok(p)
}
