//! Go build information (`.go.buildinfo`) and Go version strings.
//!
//! The blob format is the one `debug/buildinfo` reads: a 32-byte header starting
//! with `"\xff Go buildinf:"`, 16-byte aligned, then either two pointers to Go
//! strings (before Go 1.18) or, with flag bit 2 set, the version and modinfo
//! strings inline, each prefixed with its uvarint length. The modinfo text is
//! framed by two 16-byte sentinels (`cmd/go/internal/modload.infoStart/infoEnd`)
//! and parsed like `runtime/debug.ParseBuildInfo`.

use std::{cmp::Ordering, fmt};

use super::{elf::Elf, image::Image};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const ALIGN: usize = 16;
const HEADER_SIZE: usize = 32;
const FLAG_ENDIAN_BIG: u8 = 0x1;
const FLAG_VERSION_INLINE: u8 = 0x2;
/// Longest version or modinfo string we accept; real modinfo is a few KiB even
/// for programs with hundreds of dependencies.
const MAX_STRING: u64 = 16 << 20;

/// A Go release parsed from a version string such as `go1.27.3`.
///
/// Ordered by release: `go1.22rc1` < `go1.22.0` < `go1.22.1`; development
/// builds (`devel go1.23-abcdef`) sort as the `.0` of their release.
#[derive(Debug, Clone)]
pub struct GoVersion {
    /// Major version (always 1 so far).
    pub major: u32,
    /// Minor version: 27 for `go1.27.3`.
    pub minor: u32,
    /// Patch level; 0 for pre-releases and development builds.
    pub patch: u32,
    /// The string as found in the binary, e.g. `go1.27.3` or `devel go1.23-abc Mon ...`.
    pub raw: String,
}

impl GoVersion {
    /// Parse `go1.N[.P]`, `go1.NrcK`/`go1.NbetaK`, `devel go1.N-...`, and suffixed forms
    /// such as `go1.22.1 X:nocoverageredesign` or `go1.21.0-bigcorp`.
    pub fn parse(s: &str) -> Option<GoVersion> {
        let trimmed = s.trim();
        let body = trimmed.strip_prefix("devel ").unwrap_or(trimmed);
        let rest = body.strip_prefix("go")?;
        let (major, rest) = leading_number(rest)?;
        let rest = rest.strip_prefix('.')?;
        let (minor, rest) = leading_number(rest)?;
        let patch = match rest.strip_prefix('.') {
            Some(p) => leading_number(p).map_or(0, |(n, _)| n),
            None => 0,
        };
        Some(GoVersion {
            major,
            minor,
            patch,
            raw: trimmed.to_owned(),
        })
    }

    /// Whether this release is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// Release candidates, betas and development builds come before the release.
    fn is_prerelease(&self) -> bool {
        let body = self.raw.strip_prefix("go").unwrap_or(&self.raw);
        self.raw.starts_with("devel") || body.contains("rc") || body.contains("beta")
    }
}

fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s.get(..end)?.parse().ok()?;
    Some((n, &s[end..]))
}

impl Ord for GoVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| other.is_prerelease().cmp(&self.is_prerelease()))
            .then_with(|| self.raw.cmp(&other.raw))
    }
}

impl PartialOrd for GoVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for GoVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GoVersion {}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// A module line of the modinfo (`mod`, `dep`, or a `=>` replacement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Module path.
    pub path: String,
    /// Module version, `(devel)` for the main module built from a work tree.
    pub version: String,
    /// go.sum hash, empty when absent.
    pub sum: String,
    /// Replacement from a `=>` line.
    pub replace: Option<Box<Module>>,
}

/// Decoded `.go.buildinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// Toolchain version string, e.g. `go1.27.3`.
    pub go_version: String,
    /// Main package path (`path` line), e.g. `example.com/cmd/app` or `command-line-arguments`.
    pub path: Option<String>,
    /// Main module path (`mod` line).
    pub module_path: Option<String>,
    /// Main module version (`mod` line).
    pub main_version: Option<String>,
    /// Replacement of the main module (a `=>` line after `mod`).
    pub main_replace: Option<Box<Module>>,
    /// Dependencies (`dep` lines).
    pub deps: Vec<Module>,
    /// `build` lines in order: `-buildmode`, `-compiler`, `-ldflags`, `CGO_ENABLED`, `GOARCH`, `GOAMD64`, `vcs.*`, ...
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// Value of a `build` setting such as `-buildmode` or `CGO_ENABLED`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Find and decode the build info blob. `None` when absent or unreadable.
pub(crate) fn read(elf: &Elf, img: &Image) -> Option<BuildInfo> {
    let addr = locate(elf, img)?;
    let (version, modinfo) = decode_blob(elf, img, addr)?;
    Some(parse_modinfo(version, &modinfo))
}

/// Address of the blob: the `.go.buildinfo` section, else the first aligned magic
/// in a writable segment (the linker puts it at the start of the data segment).
fn locate(elf: &Elf, img: &Image) -> Option<u64> {
    if let Some(sec) = elf.section(".go.buildinfo") {
        let head = sec
            .file_range(img.len())
            .and_then(|r| img.get(r.start, MAGIC.len()));
        if head == Some(&MAGIC[..]) {
            return Some(sec.addr());
        }
    }
    let finder = memchr::memmem::Finder::new(MAGIC);
    let mut segments: Vec<_> = elf.segments.iter().filter(|s| !s.is_exec()).collect();
    // Writable segments first: that is where the linker places the blob.
    segments.sort_by_key(|s| !s.is_write());
    for seg in segments {
        let Some(range) = seg.file_range(img.len()) else {
            continue;
        };
        for (off, bytes, own) in img.pieces(range.clone()) {
            for i in finder.find_iter(bytes).filter(|&i| i < own) {
                let at = off + i - range.start;
                let vaddr = seg.vaddr.checked_add(at as u64)?;
                if vaddr % ALIGN as u64 == 0 && range.end - (off + i) >= HEADER_SIZE {
                    return Some(vaddr);
                }
            }
        }
    }
    None
}

fn decode_blob(elf: &Elf, img: &Image, addr: u64) -> Option<(String, String)> {
    let header = elf.read(img, addr, HEADER_SIZE)?;
    let flags = header[15];
    let (version, modinfo) = if flags & FLAG_VERSION_INLINE != 0 {
        let r = elf.range_from(img, addr)?;
        let mut pos = r.start.checked_add(HEADER_SIZE)?;
        let mut string = || -> Option<Vec<u8>> {
            let (len, used) = uvarint(img.window(pos, r.end, 10)?)?;
            let start = pos.checked_add(used)?;
            let len = usize::try_from(len).ok()?;
            if start.checked_add(len)? > r.end {
                return None;
            }
            pos = start + len;
            img.read_vec(start, len)
        };
        let version = string()?;
        let modinfo = string()?;
        (version, modinfo)
    } else {
        // Pre-1.18: pointers to Go string headers {ptr, len}.
        if flags & FLAG_ENDIAN_BIG != 0 || header[14] != 8 {
            return None;
        }
        let ptr = |o: usize| Some(u64::from_le_bytes(header.get(o..o + 8)?.try_into().ok()?));
        let version = go_string_bytes(elf, img, ptr(16)?)?;
        let modinfo = go_string_bytes(elf, img, ptr(24)?).unwrap_or_default();
        (version, modinfo)
    };
    if version.is_empty() {
        return None;
    }
    // The sentinels are binary, so strip them before any UTF-8 conversion.
    let modinfo = String::from_utf8_lossy(strip_sentinels(&modinfo)).into_owned();
    Some((String::from_utf8_lossy(&version).into_owned(), modinfo))
}

/// A uvarint (`encoding/binary.Uvarint`) capped at [`MAX_STRING`]: `(value, bytes used)`.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return (v <= MAX_STRING).then_some((v, i + 1));
        }
    }
    None
}

/// The bytes of a Go string header `{ptr, len}` at `addr`.
fn go_string_bytes(elf: &Elf, img: &Image, addr: u64) -> Option<Vec<u8>> {
    let ptr = elf.read_u64(img, addr)?;
    let len = elf.read_u64(img, addr.checked_add(8)?)?;
    if len > MAX_STRING {
        return None;
    }
    let r = elf.range_from(img, ptr)?;
    let len = usize::try_from(len).ok()?;
    if r.start.checked_add(len)? > r.end {
        return None;
    }
    img.read_vec(r.start, len)
}

/// A Go string header `{ptr, len}` at `addr`, lossily decoded.
pub(crate) fn go_string(elf: &Elf, img: &Image, addr: u64) -> Option<String> {
    go_string_bytes(elf, img, addr).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `go1.` occurrences and pointers to one that [`find_build_version`] examines, so a
/// file full of the pattern stays cheap.
const MAX_VERSION_CANDIDATES: usize = 256;
/// Longest `runtime.buildVersion` accepted (`go1.25.0 X:greenteagc,jsonv2` and the like).
const MAX_VERSION_LEN: u64 = 128;

/// The `runtime.buildVersion` string of a binary without `.go.buildinfo` and `.symtab`
/// (esbuild's npm releases have neither): a `go1.…` string in a read-only segment that a
/// Go string header `{ptr, len}` in a writable segment points at exactly. `None` unless
/// every such header found names the same version.
pub(crate) fn find_build_version(elf: &Elf, img: &Image) -> Option<String> {
    let finder = memchr::memmem::Finder::new(b"go1.");
    let read_only = elf
        .segments
        .iter()
        .filter(|s| !s.is_exec() && !s.is_write())
        .collect();
    let mut found: Option<String> = None;
    let mut candidates = 0usize;
    for vaddr in Elf::find_in_segments(img, read_only, &finder) {
        candidates += 1;
        if candidates > MAX_VERSION_CANDIDATES {
            return found;
        }
        for version in headers_pointing_at(elf, img, vaddr, &mut candidates) {
            if found.as_ref().is_some_and(|f| *f != version) {
                return None;
            }
            found = Some(version);
        }
    }
    found
}

/// Version strings of the Go string headers in writable segments that point at `vaddr`.
fn headers_pointing_at(elf: &Elf, img: &Image, vaddr: u64, budget: &mut usize) -> Vec<String> {
    let finder = memchr::memmem::Finder::new(&vaddr.to_le_bytes()).into_owned();
    let writable = elf.segments.iter().filter(|s| s.is_write()).collect();
    let mut out = Vec::new();
    for at in Elf::find_in_segments(img, writable, &finder) {
        *budget += 1;
        if *budget > MAX_VERSION_CANDIDATES {
            return out;
        }
        // The header is pointer-aligned; its length word follows the pointer.
        if at % 8 != 0 {
            continue;
        }
        let Some(len) = at.checked_add(8).and_then(|a| elf.read_u64(img, a)) else {
            continue;
        };
        if !(5..=MAX_VERSION_LEN).contains(&len) {
            continue;
        }
        let Some(s) = elf
            .read(img, vaddr, len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            continue;
        };
        if s.bytes().all(|c| c.is_ascii_graphic() || c == b' ') && GoVersion::parse(s).is_some() {
            out.push(s.to_owned());
        }
    }
    out
}

/// Remove the 16-byte framing sentinels, as `debug/buildinfo` does.
fn strip_sentinels(m: &[u8]) -> &[u8] {
    if m.len() >= 33 && m[m.len() - 17] == b'\n' {
        &m[16..m.len() - 16]
    } else {
        &[]
    }
}

/// Parse modinfo lines (`runtime/debug.ParseBuildInfo`), skipping malformed ones
/// instead of failing: a damaged dependency line should not cost us the settings.
fn parse_modinfo(go_version: String, modinfo: &str) -> BuildInfo {
    let mut bi = BuildInfo {
        go_version,
        path: None,
        module_path: None,
        main_version: None,
        main_replace: None,
        deps: Vec::new(),
        settings: Vec::new(),
    };
    // Which module a following `=>` line replaces: None, the main module, or a dep.
    enum Last {
        None,
        Main,
        Dep(usize),
    }
    let mut last = Last::None;
    for line in modinfo.split('\n') {
        if let Some(p) = line.strip_prefix("path\t") {
            bi.path = Some(p.to_owned());
        } else if let Some(m) = line.strip_prefix("mod\t") {
            if let Some(m) = module_line(m) {
                bi.module_path = Some(m.path);
                bi.main_version = Some(m.version);
                last = Last::Main;
            }
        } else if let Some(d) = line.strip_prefix("dep\t") {
            if let Some(m) = module_line(d) {
                bi.deps.push(m);
                last = Last::Dep(bi.deps.len() - 1);
            }
        } else if let Some(r) = line.strip_prefix("=>\t") {
            let cols: Vec<&str> = r.split('\t').collect();
            if let [path, version, sum] = cols[..] {
                let rep = Box::new(Module {
                    path: path.to_owned(),
                    version: version.to_owned(),
                    sum: sum.to_owned(),
                    replace: None,
                });
                match last {
                    Last::Main => bi.main_replace = Some(rep),
                    Last::Dep(i) => {
                        if let Some(d) = bi.deps.get_mut(i) {
                            d.replace = Some(rep);
                        }
                    }
                    Last::None => {}
                }
            }
            last = Last::None;
        } else if let Some(kv) = line.strip_prefix("build\t")
            && let Some(kv) = build_setting(kv)
        {
            bi.settings.push(kv);
        }
    }
    bi
}

fn module_line(s: &str) -> Option<Module> {
    let cols: Vec<&str> = s.split('\t').collect();
    let (path, version, sum) = match cols[..] {
        [p, v] => (p, v, ""),
        [p, v, s] => (p, v, s),
        _ => return None,
    };
    Some(Module {
        path: path.to_owned(),
        version: version.to_owned(),
        sum: sum.to_owned(),
        replace: None,
    })
}

fn build_setting(kv: &str) -> Option<(String, String)> {
    let (key, raw_value) = if kv.starts_with(['"', '`']) {
        let (key, used) = unquote_prefix(kv)?;
        (key, kv.get(used..)?.strip_prefix('=')?)
    } else {
        let (k, v) = kv.split_once('=')?;
        if k.is_empty() {
            return None;
        }
        (k.to_owned(), v)
    };
    let value = if raw_value.starts_with(['"', '`']) {
        let (v, used) = unquote_prefix(raw_value)?;
        if used != raw_value.len() {
            return None;
        }
        v
    } else {
        raw_value.to_owned()
    };
    Some((key, value))
}

/// Decode a Go quoted string at the start of `s` (`strconv.QuotedPrefix` +
/// `strconv.Unquote`); returns the value and the bytes consumed.
fn unquote_prefix(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, quote) = chars.next()?;
    if quote == '`' {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].replace('\r', ""), end + 1));
    }
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\n' => return None,
            b'\\' => {
                let c = *bytes.get(i + 1)?;
                i += 2;
                let simple = match c {
                    b'a' => Some(7),
                    b'b' => Some(8),
                    b'f' => Some(12),
                    b'n' => Some(b'\n'),
                    b'r' => Some(b'\r'),
                    b't' => Some(b'\t'),
                    b'v' => Some(11),
                    b'\\' => Some(b'\\'),
                    b'\'' => Some(b'\''),
                    b'"' => Some(b'"'),
                    _ => None,
                };
                if let Some(b) = simple {
                    out.push(b);
                    continue;
                }
                let hex = |n: usize, i: usize| -> Option<u32> {
                    let digits = s.get(i..i + n)?;
                    u32::from_str_radix(digits, 16).ok()
                };
                match c {
                    b'x' => {
                        out.push(u8::try_from(hex(2, i)?).ok()?);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if c == b'u' { 4 } else { 8 };
                        let ch = char::from_u32(hex(n, i)?)?;
                        out.extend_from_slice(ch.to_string().as_bytes());
                        i += n;
                    }
                    b'0'..=b'7' => {
                        let digits = s.get(i - 1..i + 2)?;
                        out.push(u8::try_from(u32::from_str_radix(digits, 8).ok()?).ok()?);
                        i += 2;
                    }
                    _ => return None,
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GoVersion {
        GoVersion::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn versions_parse() {
        let g = v("go1.27.3");
        assert_eq!(
            (g.major, g.minor, g.patch, g.raw.as_str()),
            (1, 27, 3, "go1.27.3")
        );
        let rc = v("go1.22rc1");
        assert_eq!((rc.minor, rc.patch), (22, 0));
        let dev = v("devel go1.23-abc1234 Tue Jan 1 00:00:00 2024 +0000");
        assert_eq!((dev.minor, dev.patch), (23, 0));
        assert!(dev.raw.starts_with("devel"));
        let exp = v("go1.22.1 X:nocoverageredesign");
        assert_eq!((exp.minor, exp.patch), (22, 1));
        assert_eq!(v("go1.21.0-bigcorp").patch, 0);
        assert_eq!(v("go1.20").patch, 0);
        assert!(GoVersion::parse("1.21").is_none());
        assert!(GoVersion::parse("go").is_none());
        assert!(GoVersion::parse("gox.y").is_none());
        assert_eq!(v("go1.27.3").to_string(), "go1.27.3");
    }

    #[test]
    fn versions_order() {
        assert!(v("go1.22rc1") < v("go1.22.0"));
        assert!(v("go1.22.0") < v("go1.22.1"));
        assert!(v("go1.9.7") < v("go1.21.13"));
        assert!(v("devel go1.23-abc") < v("go1.23.0"));
        assert!(v("go1.26.6").at_least(1, 26));
        assert!(!v("go1.25.5").at_least(1, 26));
        assert_eq!(v("go1.25.5"), v("go1.25.5"));
    }

    #[test]
    fn modinfo_lines() {
        let text = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
            dep\tgolang.org/x/sys\tv0.1.0\th1:abc=\n=>\t../sys\t(devel)\t\n\
            build\t-buildmode=exe\nbuild\t-ldflags=\"-s -w\"\nbuild\tCGO_ENABLED=0\n\
            build\t\"we ird\"=`raw`\nbuild\tbroken\n";
        let framed = format!("{}{}{}", "S".repeat(16), text, "E".repeat(16));
        let inner = String::from_utf8_lossy(strip_sentinels(framed.as_bytes())).into_owned();
        let bi = parse_modinfo("go1.27.3".into(), &inner);
        assert_eq!(bi.path.as_deref(), Some("example.com/app"));
        assert_eq!(bi.module_path.as_deref(), Some("example.com/app"));
        assert_eq!(bi.main_version.as_deref(), Some("(devel)"));
        assert_eq!(bi.deps.len(), 1);
        assert_eq!(
            bi.deps[0].replace.as_ref().map(|r| r.path.as_str()),
            Some("../sys")
        );
        assert_eq!(bi.setting("-ldflags"), Some("-s -w"));
        assert_eq!(bi.setting("CGO_ENABLED"), Some("0"));
        assert_eq!(bi.setting("we ird"), Some("raw"));
        assert_eq!(bi.settings.len(), 4, "the malformed line is skipped");
    }

    #[test]
    fn unquote_escapes() {
        assert_eq!(
            unquote_prefix(r#""a\tb\x41\u00e9\101""#),
            Some(("a\tbAéA".into(), 20))
        );
        assert_eq!(unquote_prefix(r#""unterminated"#), None);
        assert_eq!(unquote_prefix(r#""bad\q""#), None);
        assert_eq!(unquote_prefix(r#""\x4""#), None);
    }

    #[test]
    fn sentinels_need_framing() {
        assert_eq!(strip_sentinels(b"short"), b"");
        assert_eq!(uvarint(&[0x80; 12]), None);
        assert_eq!(uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            None,
            "over MAX_STRING"
        );
    }
}
