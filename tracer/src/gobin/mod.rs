//! Go binary reader — TEMPORARY stand-in with the final API, symtab only.
use std::path::Path;

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
use thiserror::Error;

pub mod offsets;
pub mod offsets_table;

#[derive(Debug, Error)]
pub enum GoBinaryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("not a Go program (no .gopclntab)")]
    NotGo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub entry: u64,
    pub end: u64,
    pub abi0: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: u32,
    pub inlined: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub raw: String,
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

pub struct GoBinary {
    data: Vec<u8>,
    functions: Vec<Function>,
    segments: Vec<(u64, u64, u64, u64)>,
    version: Option<GoVersion>,
    pie: bool,
    symtab: bool,
}

impl GoBinary {
    pub fn open(path: &Path) -> Result<GoBinary, GoBinaryError> {
        let data = std::fs::read(path).map_err(|source| GoBinaryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(data)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<GoBinary, GoBinaryError> {
        let file = object::File::parse(&*data).map_err(|e| GoBinaryError::NotElf(e.to_string()))?;
        if file.section_by_name(".gopclntab").is_none() {
            return Err(GoBinaryError::NotGo);
        }
        let mut functions = Vec::new();
        for sym in file.symbols() {
            if sym.kind() != object::SymbolKind::Text {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            let (name, abi0) = match name.strip_suffix(".abi0") {
                Some(n) => (n.to_string(), true),
                None => (name.to_string(), false),
            };
            functions.push(Function {
                name,
                entry: sym.address(),
                end: sym.address() + sym.size(),
                abi0,
            });
        }
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), s.size(), off, size)
            })
            .collect();
        let version = find_version(&data);
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let symtab = !functions.is_empty();
        Ok(GoBinary {
            data: data.clone(),
            functions,
            segments,
            version,
            pie,
            symtab,
        })
    }

    pub fn go_version(&self) -> Option<&GoVersion> {
        self.version.as_ref()
    }
    pub fn has_symtab(&self) -> bool {
        self.symtab
    }
    pub fn is_pie(&self) -> bool {
        self.pie
    }
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
    pub fn functions_named(&self, name: &str) -> Vec<Function> {
        self.functions
            .iter()
            .filter(|f| f.name == name)
            .cloned()
            .collect()
    }
    pub fn function_at(&self, vaddr: u64) -> Option<Function> {
        self.functions
            .iter()
            .find(|f| f.entry <= vaddr && vaddr < f.end)
            .cloned()
    }
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(a, _, _, fsize)| *a <= vaddr && vaddr < a + fsize)
            .map(|(a, _, off, _)| vaddr - a + off)
    }
    pub fn read_code(&self, vaddr: u64, len: usize) -> Option<&[u8]> {
        let off = self.file_offset(vaddr)? as usize;
        self.data.get(off..off + len)
    }
    pub fn symbolize(&self, pc: u64) -> Vec<Frame> {
        self.function_at(pc)
            .map(|f| {
                vec![Frame {
                    function: f.name,
                    file: String::new(),
                    line: 0,
                    inlined: false,
                }]
            })
            .unwrap_or_default()
    }
    pub fn first_load_vaddr(&self) -> u64 {
        self.segments.iter().map(|s| s.0).min().unwrap_or(0)
    }
    /// (vaddr, file offset) pairs of loadable segments, for load-bias computation.
    pub fn load_segments(&self) -> Vec<(u64, u64)> {
        self.segments.iter().map(|s| (s.0, s.2)).collect()
    }
}

fn find_version(data: &[u8]) -> Option<GoVersion> {
    let needle = b"\xff Go buildinf:";
    let pos = data.windows(needle.len()).position(|w| w == needle)?;
    let hdr = data.get(pos..pos + 32)?;
    if hdr[15] & 2 == 0 {
        return None;
    }
    let mut p = pos + 32;
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = *data.get(p)?;
        p += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let raw = std::str::from_utf8(data.get(p..p + n)?).ok()?.to_string();
    let v = raw.strip_prefix("go")?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some(GoVersion {
        major,
        minor,
        patch,
        raw,
    })
}
