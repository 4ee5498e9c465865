//! Tests against real Go binaries (see [`super::testbins`]) and against damaged
//! copies of them.

use std::{collections::HashMap, path::Path, time::Instant};

use super::{
    testbins::{Variant, addr2line, all_versions, core_versions, fixture, ground_truth},
    *,
};

/// Runtime functions on goprobe's preemption chain (brief), checked against `.symtab`.
const CHAIN: [&str; 8] = [
    "runtime.retake",
    "runtime.preemptone",
    "runtime.signalM",
    "runtime.doSigPreempt",
    "runtime.goschedImpl",
    "runtime.preemptPark",
    "runtime.asyncPreempt2",
    "runtime.newstack",
];

fn open(version: &str, variant: Variant) -> GoBinary {
    let path = fixture(version, variant);
    GoBinary::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn each_core_binary(mut f: impl FnMut(&str, Variant, &GoBinary)) {
    for v in core_versions() {
        for variant in Variant::ALL {
            let bin = open(v, variant);
            f(v, variant, &bin);
        }
    }
}

#[test]
fn version_and_build_info() {
    each_core_binary(|v, variant, bin| {
        let ctx = format!("{v} {variant:?}");
        let ver = bin
            .go_version()
            .unwrap_or_else(|| panic!("{ctx}: no version"));
        assert_eq!(ver.raw, format!("go{v}"), "{ctx}");
        let parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(
            (ver.major, ver.minor, ver.patch),
            (parts[0], parts[1], parts[2]),
            "{ctx}"
        );
        let bi = bin
            .build_info()
            .unwrap_or_else(|| panic!("{ctx}: no build info"));
        assert_eq!(bi.go_version, ver.raw, "{ctx}");
        assert_eq!(
            bi.module_path.as_deref(),
            Some("example.com/gobinfixture"),
            "{ctx}"
        );
        assert_eq!(
            bi.path.as_deref(),
            Some("example.com/gobinfixture"),
            "{ctx}"
        );
        let pie = matches!(variant, Variant::Pie | Variant::CgoPie);
        assert_eq!(
            bi.setting("-buildmode"),
            Some(if pie { "pie" } else { "exe" }),
            "{ctx}"
        );
        assert_eq!(bin.is_pie(), pie, "{ctx}");
        let cgo = matches!(variant, Variant::Cgo | Variant::CgoPie);
        assert_eq!(
            bi.setting("CGO_ENABLED"),
            Some(if cgo { "1" } else { "0" }),
            "{ctx}"
        );
        match variant {
            Variant::Stripped => {
                assert_eq!(bi.setting("-ldflags"), Some("-s -w"), "{ctx}");
                assert!(!bin.has_symtab() && !bin.has_dwarf(), "{ctx}");
            }
            Variant::Cgo | Variant::CgoPie => {
                assert_eq!(bi.setting("-ldflags"), Some("-linkmode=external"), "{ctx}");
                assert!(bin.has_symtab() && bin.has_dwarf(), "{ctx}");
            }
            _ => assert!(bin.has_symtab() && bin.has_dwarf(), "{ctx}"),
        }
        assert_eq!(bi.setting("GOARCH"), Some("amd64"), "{ctx}");
        assert_eq!(bin.pclntab_info().magic, 0xffff_fff1, "{ctx}");
    });
}

#[test]
fn async_preempt2_real_and_wrapper() {
    each_core_binary(|v, variant, bin| {
        let ctx = format!("{v} {variant:?}");
        let fs = bin.functions_named("runtime.asyncPreempt2");
        assert_eq!(fs.len(), 2, "{ctx}: {fs:?}");
        let wrapper = fs
            .iter()
            .find(|f| f.abi0)
            .unwrap_or_else(|| panic!("{ctx}: no abi0 wrapper in {fs:?}"));
        let real = fs
            .iter()
            .find(|f| !f.abi0)
            .unwrap_or_else(|| panic!("{ctx}: no real function in {fs:?}"));
        // 18 bytes (mov %fs:-8,%r14; jmp) or 20 in PIE (different TLS access).
        assert!(
            matches!(wrapper.size(), 18 | 20),
            "{ctx}: wrapper {wrapper:?}"
        );
        assert!(real.size() > wrapper.size(), "{ctx}: {fs:?}");
        assert!(
            fs.iter().all(|f| f.name == "runtime.asyncPreempt2"),
            "{ctx}"
        );
        // The wrapper is the one that jumps to the real function.
        let code = bin
            .read_code(wrapper.entry, wrapper.size() as usize)
            .expect("wrapper code");
        let jmp_at = code.len() - 5;
        assert_eq!(
            code[jmp_at], 0xe9,
            "{ctx}: wrapper should end in jmp rel32: {code:x?}"
        );
        let rel = i32::from_le_bytes(code[jmp_at + 1..].try_into().unwrap());
        let target = (wrapper.entry as i64 + wrapper.size() as i64 + i64::from(rel)) as u64;
        assert_eq!(target, real.entry, "{ctx}: wrapper jumps elsewhere");
    });
}

#[test]
fn pclntab_agrees_with_symtab() {
    for v in core_versions() {
        for variant in [
            Variant::Default,
            Variant::Pie,
            Variant::Cgo,
            Variant::CgoPie,
        ] {
            let bin = open(v, variant);
            let ctx = format!("{v} {variant:?}");
            for name in CHAIN
                .iter()
                .chain(&["runtime.main", "main.main", "main.leaf"])
            {
                let from_sym = bin.symtab_functions_named(name);
                let from_pcln = bin.pclntab_functions_named(name);
                assert!(!from_sym.is_empty(), "{ctx}: {name} not in .symtab");
                assert_eq!(from_sym, from_pcln, "{ctx}: {name}");
            }
            // Every Go function symbol has a pclntab function at the same entry
            // with the same name and size.
            let mut checked = 0;
            let text = bin.text_start();
            // Zero-size symbols are markers such as runtime.text and runtime.etext.
            for s in bin
                .elf
                .symbols(&bin.img)
                .filter(|s| s.is_func() && s.value >= text && s.size > 0)
            {
                let name = String::from_utf8_lossy(s.name);
                let Some(f) = bin.function_at(s.value) else {
                    continue; // C code linked after the Go text.
                };
                if f.entry != s.value {
                    continue; // A C symbol inside the Go range? Not expected, checked below.
                }
                let plain = name.strip_suffix(ABI0_SUFFIX).unwrap_or(&name);
                // The ELF writer turns the middle dot of a few generated names
                // (type:.eq.runtime.untracedG·6, 1.25+) into a plain dot.
                assert_eq!(f.name.replace('·', "."), plain, "{ctx}: at {:#x}", s.value);
                // FIPS section markers (1.24+) have no pc tables, so their pclntab
                // size runs to the next function.
                if !name.starts_with("go:textfips") {
                    assert_eq!(f.size(), s.size, "{ctx}: size of {name}");
                }
                assert_eq!(f.abi0, name.ends_with(ABI0_SUFFIX), "{ctx}: abi0 of {name}");
                checked += 1;
            }
            assert!(checked > 1000, "{ctx}: only {checked} symbols checked");
            assert_eq!(
                checked,
                bin.pclntab_info().nfunc,
                "{ctx}: every pclntab function has a symbol"
            );
        }
    }
}

#[test]
fn stripped_equals_unstripped() {
    for v in core_versions() {
        let full = open(v, Variant::Default);
        let stripped = open(v, Variant::Stripped);
        assert_eq!(full.text_start(), stripped.text_start(), "{v}");
        assert_eq!(full.text_start_source(), TextStartSource::Symtab, "{v}");
        // Moduledata is tried before the pclntab header in every release.
        assert_eq!(
            stripped.text_start_source(),
            TextStartSource::ModuleData,
            "{v}"
        );
        let a: Vec<(String, u64, u64)> =
            full.functions().map(|f| (f.name, f.entry, f.end)).collect();
        let b: Vec<(String, u64, u64)> = stripped
            .functions()
            .map(|f| (f.name, f.entry, f.end))
            .collect();
        assert_eq!(a, b, "{v}: pclntab functions differ");
        for name in CHAIN {
            let x: Vec<_> = full
                .functions_named(name)
                .into_iter()
                .map(|f| (f.entry, f.end, f.abi0))
                .collect();
            let y: Vec<_> = stripped
                .functions_named(name)
                .into_iter()
                .map(|f| (f.entry, f.end, f.abi0))
                .collect();
            assert_eq!(x, y, "{v}: {name}");
            assert!(!x.is_empty(), "{v}: {name} missing");
        }
        // Symbolisation is identical too (needs gofunc from moduledata when stripped).
        for f in full.functions().step_by(13) {
            let pc = f.entry + f.size() / 2;
            assert_eq!(
                full.symbolize(pc),
                stripped.symbolize(pc),
                "{v}: {}",
                f.name
            );
        }
    }
}

#[test]
fn text_start_resolution() {
    for v in core_versions() {
        let newer = v == "1.26.6" || v == "1.27.3";
        for variant in Variant::ALL {
            let bin = open(v, variant);
            let ctx = format!("{v} {variant:?}");
            let hdr = bin.pclntab_info().header_text_start;
            if newer {
                assert_eq!(hdr, Some(0), "{ctx}: Go 1.26+ no longer stores textStart");
            } else {
                assert_eq!(hdr, Some(bin.text_start()), "{ctx}");
            }
            if bin.has_symtab() {
                let (text, _) = bin
                    .elf
                    .symbol(&bin.img, "runtime.text")
                    .expect("runtime.text");
                assert_eq!(bin.text_start(), text, "{ctx}");
                assert_eq!(bin.text_start_source(), TextStartSource::Symtab, "{ctx}");
                let md = bin
                    .moduledata()
                    .unwrap_or_else(|| panic!("{ctx}: moduledata not found"));
                assert_eq!(md.text, text, "{ctx}: moduledata.text");
                let (firstmd, _) = bin
                    .elf
                    .symbol(&bin.img, "runtime.firstmoduledata")
                    .expect("firstmoduledata");
                assert_eq!(md.vaddr, firstmd, "{ctx}");
                let (gofunc, _) = bin.elf.symbol(&bin.img, "go:func.*").expect("go:func.*");
                let from_md = moduledata::gofunc(&bin.elf, &bin.img, md, bin.go_version());
                assert_eq!(from_md, Some(gofunc), "{ctx}: moduledata.gofunc");
                let unknown = moduledata::gofunc(&bin.elf, &bin.img, md, None);
                assert_eq!(unknown, Some(gofunc), "{ctx}: gofunc without a version");
            }
            let text_sec = bin.elf.section(".text").expect(".text").addr();
            if matches!(variant, Variant::Cgo | Variant::CgoPie) {
                assert_ne!(
                    text_sec,
                    bin.text_start(),
                    "{ctx}: external linking puts C code first"
                );
            } else {
                assert_eq!(text_sec, bin.text_start(), "{ctx}");
            }
        }
    }
}

#[test]
fn symbolize_matches_runtime() {
    for v in core_versions() {
        for variant in Variant::ALL {
            let bin = open(v, variant);
            let truth = ground_truth(v, variant);
            let ctx = format!("{v} {variant:?}");
            assert_eq!(truth.version, format!("go{v}"), "{ctx}");
            let leaf = bin.functions_named("main.leaf");
            assert_eq!(leaf.len(), 1, "{ctx}");
            let bias = truth.leaf_entry.wrapping_sub(leaf[0].entry);
            assert_eq!(bias == 0, !bin.is_pie(), "{ctx}: bias {bias:#x}");
            for t in &truth.frames {
                // Callers gives return addresses; the runtime symbolises pc-1.
                let frames = bin.symbolize(t.pc.wrapping_sub(bias) - 1);
                let got = frames
                    .first()
                    .unwrap_or_else(|| panic!("{ctx}: nothing at {:#x}", t.pc));
                assert_eq!(
                    (got.function.as_str(), got.file.as_str(), got.line),
                    (t.function.as_str(), t.file.as_str(), t.line),
                    "{ctx}: pc {:#x}",
                    t.pc
                );
            }
            let names: Vec<&str> = truth.frames.iter().map(|f| f.function.as_str()).collect();
            assert_eq!(
                &names[..3],
                ["main.leaf", "main.helper", "main.main"],
                "{ctx}"
            );
            // The inlined call: helper innermost and inlined, main.main physical.
            let at_call = truth.frames[1].pc - bias - 1;
            let frames = bin.symbolize(at_call);
            assert_eq!(frames.len(), 2, "{ctx}: {frames:?}");
            assert_eq!(
                (
                    frames[0].function.as_str(),
                    frames[0].line,
                    frames[0].inlined
                ),
                ("main.helper", 20, true),
                "{ctx}"
            );
            assert_eq!(
                (
                    frames[1].function.as_str(),
                    frames[1].line,
                    frames[1].inlined
                ),
                ("main.main", 24, false),
                "{ctx}"
            );
            assert!(
                frames.iter().all(|f| f.file.ends_with("/src/main.go")),
                "{ctx}: {frames:?}"
            );
            assert_eq!(
                bin.symbolize(truth.frames[0].pc - bias - 1)[0].line,
                14,
                "{ctx}"
            );
            // The physical function of the inlined PC is main.main.
            let f = bin.function_at(at_call).expect("function_at");
            assert_eq!(f.name, "main.main", "{ctx}");
        }
    }
}

#[test]
fn symbolize_agrees_with_go_addr2line() {
    for v in ["1.21.13", "1.27.3"] {
        for variant in [Variant::Default, Variant::Stripped, Variant::CgoPie] {
            let bin = open(v, variant);
            let ctx = format!("{v} {variant:?}");
            let pcs: Vec<u64> = bin
                .functions()
                .step_by(5)
                .flat_map(|f| [f.entry, f.entry + f.size() / 3, f.end - 1])
                .collect();
            let theirs = addr2line(v, &fixture(v, variant), &pcs);
            assert_eq!(theirs.len(), pcs.len(), "{ctx}: addr2line output");
            for (pc, (func, fileline)) in pcs.iter().zip(&theirs) {
                let frames = bin.symbolize(*pc);
                let (inner, outer) = (frames.first().unwrap(), frames.last().unwrap());
                // addr2line names the physical function and the innermost file:line.
                assert_eq!(&outer.function, func, "{ctx}: {pc:#x}");
                assert_eq!(
                    format!("{}:{}", inner.file, inner.line),
                    *fileline,
                    "{ctx}: {pc:#x} {frames:?}"
                );
            }
        }
    }
}

#[test]
fn addresses_and_code() {
    each_core_binary(|v, variant, bin| {
        let ctx = format!("{v} {variant:?}");
        let data = bin.bytes();
        let lowest = bin.first_load_vaddr();
        let expect_lowest = if matches!(variant, Variant::CgoPie) {
            0
        } else {
            0x400000
        };
        assert_eq!(lowest, expect_lowest, "{ctx}");
        for name in CHAIN {
            for f in bin.functions_named(name) {
                let off = bin.file_offset(f.entry).expect("file offset") as usize;
                let code = bin.read_code(f.entry, f.size() as usize).expect("code");
                assert_eq!(code, &data[off..off + code.len()], "{ctx}: {name}");
                assert_eq!(
                    bin.pcsp(f.entry),
                    Some(0),
                    "{ctx}: {name} SP delta at entry"
                );
                assert_eq!(
                    bin.function_at(f.entry).map(|g| g.entry),
                    Some(f.entry),
                    "{ctx}"
                );
                assert_eq!(
                    bin.function_at(f.end - 1).map(|g| g.entry),
                    Some(f.entry),
                    "{ctx}"
                );
            }
        }
        // Non-leaf Go functions grow a frame after the prologue.
        let m = &bin.functions_named("main.main")[0];
        let max = (m.entry..m.end)
            .filter_map(|pc| bin.pcsp(pc))
            .max()
            .unwrap();
        assert!(max > 0, "{ctx}: main.main never allocates a frame");
        assert!(
            bin.function_at(0).is_none() && bin.symbolize(u64::MAX).is_empty(),
            "{ctx}"
        );
        assert_eq!(bin.file_offset(u64::MAX), None);
        assert_eq!(bin.read_code(m.entry, usize::MAX), None);
    });
}

/// Requirement 3: no section headers at all (as after some packers/strippers).
#[test]
fn works_without_section_headers() {
    for v in core_versions() {
        for variant in [Variant::Stripped, Variant::Pie, Variant::CgoPie] {
            let orig = open(v, variant);
            let mut data = orig.bytes().to_vec();
            data[0x28..0x30].fill(0); // e_shoff
            data[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
            let bin = GoBinary::from_bytes(data).unwrap_or_else(|e| panic!("{v} {variant:?}: {e}"));
            let ctx = format!("{v} {variant:?} without sections");
            assert!(!bin.pclntab_info().from_section, "{ctx}");
            assert!(!bin.has_symtab(), "{ctx}");
            assert_eq!(bin.go_version(), orig.go_version(), "{ctx}");
            assert_eq!(bin.build_info(), orig.build_info(), "{ctx}");
            assert_eq!(bin.text_start(), orig.text_start(), "{ctx}");
            assert_eq!(
                bin.text_start_source(),
                TextStartSource::ModuleData,
                "{ctx}"
            );
            let a: Vec<_> = orig.functions().collect();
            let b: Vec<_> = bin.functions().collect();
            assert_eq!(a.len(), b.len(), "{ctx}");
            for (x, y) in a.iter().zip(&b).step_by(7) {
                assert_eq!(
                    (&x.name, x.entry, x.end),
                    (&y.name, y.entry, y.end),
                    "{ctx}"
                );
                let pc = x.entry + x.size() / 2;
                assert_eq!(orig.symbolize(pc), bin.symbolize(pc), "{ctx}");
            }
            let fs = bin.functions_named("runtime.asyncPreempt2");
            assert_eq!(fs.iter().filter(|f| f.abi0).count(), 1, "{ctx}: {fs:?}");
        }
    }
}

/// Report for the brief: presence and size of the preemption-chain functions
/// and whether the pclntab header's textStart equals runtime.text. Run with
/// `cargo test report_table -- --nocapture` to see it.
#[test]
fn report_table() {
    const NAMES: [&str; 13] = [
        "retake",
        "preemptone",
        "preemptM",
        "signalM",
        "doSigPreempt",
        "asyncPreempt2",
        "goschedImpl",
        "gopreempt_m",
        "preemptPark",
        "suspendG",
        "newstack",
        "asyncPreempt",
        "asyncPreempt2.func1",
    ];
    let versions = all_versions();
    let mut out = String::from("| function |");
    for v in &versions {
        out += &format!(" {v} |");
    }
    out += "\n|---|";
    out += &"---|".repeat(versions.len());
    let bins: Vec<(GoBinary, GoBinary)> = versions
        .iter()
        .map(|v| (open(v, Variant::Default), open(v, Variant::Stripped)))
        .collect();
    let mut found: HashMap<(&str, &str), Vec<Function>> = HashMap::new();
    for name in NAMES {
        out += &format!("\n| `{name}` |");
        for (v, (bin, stripped)) in versions.iter().zip(&bins) {
            let full = format!("runtime.{name}");
            let fs = bin.functions_named(&full);
            let cell: Vec<String> = fs
                .iter()
                .map(|f| format!("{}{}", f.size(), if f.abi0 { " (abi0)" } else { "" }))
                .collect();
            out += &format!(
                " {} |",
                if cell.is_empty() {
                    "—".to_owned()
                } else {
                    cell.join(" + ")
                }
            );
            // The stripped twin finds the same functions from the pclntab alone.
            let sf: Vec<(u64, u64)> = stripped
                .functions_named(&full)
                .iter()
                .map(|f| (f.entry, f.end))
                .collect();
            let uf: Vec<(u64, u64)> = fs.iter().map(|f| (f.entry, f.end)).collect();
            assert_eq!(sf, uf, "{v} {full}: stripped differs");
            found.insert((v, name), fs);
        }
    }
    out += "\n| header textStart == runtime.text |";
    for (v, (bin, _)) in versions.iter().zip(&bins) {
        let hdr = bin.pclntab_info().header_text_start.unwrap_or(0);
        let (text, _) = bin
            .elf
            .symbol(&bin.img, "runtime.text")
            .expect("runtime.text");
        out += &if hdr == text {
            " yes |".to_owned()
        } else {
            format!(" no ({hdr:#x}) |")
        };
        let newer = *v >= "1.26";
        assert_eq!(hdr == text, !newer, "{v}");
    }
    // Where the missing or trap functions went: scan the inline trees of their callers.
    let callers = [
        "runtime.preemptone",
        "runtime.suspendG",
        "runtime.newstack",
        "runtime.retake",
    ];
    let mut inlined: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for target in ["preemptM", "gopreempt_m"] {
        out += &format!("\n| `{target}` inlined into |");
        for (v, (bin, _)) in versions.iter().zip(&bins) {
            let full = format!("runtime.{target}");
            let mut into = Vec::new();
            for caller in callers {
                for f in bin.functions_named(caller).iter().filter(|f| !f.abi0) {
                    let hit = (f.entry..f.end).any(|pc| {
                        bin.symbolize(pc)
                            .iter()
                            .any(|fr| fr.inlined && fr.function == full)
                    });
                    if hit {
                        into.push(caller.trim_start_matches("runtime."));
                    }
                }
            }
            out += &format!(
                " {} |",
                if into.is_empty() {
                    "—".to_owned()
                } else {
                    into.join(", ")
                }
            );
            inlined.insert((v, target), into);
        }
    }
    println!("{out}");
    for v in versions.iter().copied() {
        assert_eq!(
            inlined[&(v, "preemptM")],
            ["preemptone", "suspendG"],
            "{v}: preemptM inlining (brief)"
        );
        let gm = &inlined[&(v, "gopreempt_m")];
        assert_eq!(
            gm.is_empty(),
            v == "1.21.13",
            "{v}: gopreempt_m inlined into newstack from 1.22 (brief): {gm:?}"
        );
        let has = |n: &str| !found[&(v, n)].is_empty();
        assert!(
            !has("preemptM"),
            "{v}: preemptM is inlined in every release (brief)"
        );
        for n in [
            "retake",
            "preemptone",
            "signalM",
            "doSigPreempt",
            "goschedImpl",
            "preemptPark",
            "newstack",
            "suspendG",
        ] {
            assert!(has(n), "{v}: {n} missing");
        }
        assert_eq!(found[&(v, "asyncPreempt2")].len(), 2, "{v}");
        assert!(found[&(v, "asyncPreempt")].iter().all(|f| f.abi0), "{v}");
        let newer = v >= "1.26";
        assert_eq!(has("gopreempt_m"), !newer, "{v}: gopreempt_m symbol");
        assert_eq!(
            has("asyncPreempt2.func1"),
            newer,
            "{v}: asyncPreempt2 mcalls a closure from 1.26"
        );
    }
}

// ---------------------------------------------------------------------------
// Robustness: truncated and corrupted copies must never panic or hang.

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Use every API on a (possibly damaged) image; only panics matter.
fn exercise(data: Vec<u8>) -> bool {
    let Ok(bin) = GoBinary::from_bytes(data) else {
        return false;
    };
    let _ = (
        bin.go_version(),
        bin.build_info(),
        bin.has_dwarf(),
        bin.is_pie(),
    );
    let _ = bin.pclntab_info();
    for name in [
        "runtime.asyncPreempt2",
        "runtime.signalM",
        "main.main",
        "runtime.newstack",
    ] {
        for f in bin.functions_named(name) {
            for pc in [
                f.entry,
                f.entry.wrapping_add(f.size() / 2),
                f.end.wrapping_sub(1),
            ] {
                let _ = bin.symbolize(pc);
                let _ = bin.pcsp(pc);
                let _ = bin.function_at(pc);
            }
            let _ = bin.read_code(f.entry, 32);
            let _ = bin.file_offset(f.entry);
        }
    }
    for f in bin.functions().step_by(17).take(400) {
        let _ = bin.symbolize(f.entry.wrapping_add(f.size() / 2));
    }
    true
}

fn region(bin: &GoBinary, section: &str) -> std::ops::Range<usize> {
    let s = bin
        .elf
        .section(section)
        .unwrap_or_else(|| panic!("{section} missing"));
    s.file_range(bin.img.len()).expect("file range")
}

#[test]
fn truncated_binaries_do_not_panic() {
    for (v, variant) in [
        ("1.27.3", Variant::Default),
        ("1.21.13", Variant::CgoPie),
        ("1.26.6", Variant::Stripped),
    ] {
        let bin = open(v, variant);
        let len = bin.img.len();
        let pcln = region(
            &bin,
            if bin.elf.section(".gopclntab").is_some() {
                ".gopclntab"
            } else {
                ".data.rel.ro"
            },
        );
        let binfo = region(&bin, ".go.buildinfo");
        let cuts = [
            0,
            3,
            40,
            64 + 56 * 2,
            pcln.start + 4,
            pcln.start + 70,
            pcln.start + (pcln.end - pcln.start) / 2,
            binfo.start + 20,
            binfo.start + 40,
            len - 1,
        ];
        for cut in cuts {
            let t = Instant::now();
            exercise(bin.bytes()[..cut].to_vec());
            assert!(
                t.elapsed().as_secs() < 20,
                "{v}: truncation at {cut} took {:?}",
                t.elapsed()
            );
        }
    }
}

#[test]
fn corrupted_binaries_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (v, variant) in [("1.27.3", Variant::Stripped), ("1.21.13", Variant::Default)] {
        let bin = open(v, variant);
        let pcln = region(&bin, ".gopclntab");
        let binfo = region(&bin, ".go.buildinfo");
        let binfo = binfo.start..binfo.end.min(binfo.start + 512);
        let mut opened = 0;
        // Single-byte flips: the pclntab header and functab get extra attention
        // because their fields steer every later read.
        for i in 0..300 {
            let mut data = bin.bytes().to_vec();
            let at = match i % 3 {
                0 => pcln.start + rng.below(128),
                1 => pcln.start + rng.below(pcln.end - pcln.start),
                _ => binfo.start + rng.below(binfo.end - binfo.start),
            };
            data[at] ^= (rng.next() as u8) | 1;
            opened += usize::from(exercise(data));
        }
        // Many flips at once, also in the ELF and program headers and moduledata.
        for _ in 0..20 {
            let mut data = bin.bytes().to_vec();
            for _ in 0..100 {
                let at = match rng.below(4) {
                    0 => rng.below(64 + 56 * 8),
                    1 => pcln.start + rng.below(pcln.end - pcln.start),
                    2 => binfo.start + rng.below(binfo.end - binfo.start),
                    _ => rng.below(data.len()),
                };
                data[at] = rng.next() as u8;
            }
            opened += usize::from(exercise(data));
        }
        assert!(
            opened > 100,
            "{v}: most single flips should still open ({opened})"
        );
    }
}

// ---------------------------------------------------------------------------
// Hand-made ELF files for the error paths.

/// A minimal ELF64 executable: header, one read-only PT_LOAD covering the whole
/// file at 0x400000, and `payload` at file offset 0x78 (8-aligned).
fn tiny_elf(payload: &[u8]) -> Vec<u8> {
    use object::{
        Endianness,
        elf::{EM_X86_64, ET_EXEC, PF_R, PT_LOAD},
        write::elf::{FileHeader, ProgramHeader, Writer},
    };
    let mut out = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut out);
    w.reserve_file_header();
    w.reserve_program_headers(1);
    w.reserve(payload.len(), 1);
    let total = w.reserved_len() as u64;
    w.write_file_header(&FileHeader {
        os_abi: 0,
        abi_version: 0,
        e_type: ET_EXEC,
        e_machine: EM_X86_64,
        e_entry: 0,
        e_flags: 0,
    })
    .expect("ELF header");
    w.write_align_program_headers();
    w.write_program_header(&ProgramHeader {
        p_type: PT_LOAD,
        p_flags: PF_R,
        p_offset: 0,
        p_vaddr: 0x400000,
        p_paddr: 0x400000,
        p_filesz: total,
        p_memsz: total,
        p_align: 0,
    });
    w.write(payload);
    out
}

#[test]
fn error_kinds_are_specific() {
    let err = GoBinary::from_bytes(b"#!/bin/sh\n".to_vec()).unwrap_err();
    assert!(matches!(err, GoBinaryError::NotElf { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "<memory> is not an ELF executable; goprobe traces Linux Go programs"
    );

    let err = GoBinary::from_bytes(tiny_elf(&[0u8; 256])).unwrap_err();
    assert!(matches!(err, GoBinaryError::NotGo { .. }), "{err}");

    let mut go12 = vec![0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8];
    go12.resize(256, 0);
    let err = GoBinary::from_bytes(tiny_elf(&go12)).unwrap_err();
    assert!(
        matches!(
            err,
            GoBinaryError::UnsupportedPclntab {
                magic: 0xffff_fffb,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0xfffffffb"), "{err}");

    // A 1.20 header whose offsets point nowhere: not accepted as a pclntab.
    let mut bad = vec![0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8];
    bad.extend_from_slice(&[0xff; 64]);
    let err = GoBinary::from_bytes(tiny_elf(&bad)).unwrap_err();
    assert!(matches!(err, GoBinaryError::NotGo { .. }), "{err}");

    let err = GoBinary::open(Path::new("/nonexistent/gobin-test")).unwrap_err();
    assert!(matches!(err, GoBinaryError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/gobin-test: "),
        "{err}"
    );

    let mut elf32 = tiny_elf(&[]);
    elf32[4] = 1;
    let err = GoBinary::from_bytes(elf32).unwrap_err();
    assert!(
        matches!(
            err,
            GoBinaryError::UnsupportedElf {
                reason: "32-bit ELF",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn not_go_on_a_real_c_program() {
    let err = GoBinary::open(Path::new("/bin/true")).unwrap_err();
    assert!(matches!(err, GoBinaryError::NotGo { .. }), "{err}");
}

/// Requirement 5, on the largest fixture available here; the big-binary timing
/// in the report comes from `examples/dump.rs` in release mode.
#[test]
fn open_and_lookup_is_cheap() {
    let path = fixture("1.27.3", Variant::Stripped);
    let t = Instant::now();
    let bin = GoBinary::open(&path).unwrap();
    for name in CHAIN {
        assert!(!bin.functions_named(name).is_empty(), "{name}");
    }
    // Generous: debug build, shared CI machine.
    assert!(t.elapsed().as_millis() < 2000, "took {:?}", t.elapsed());
}

/// The lazily read file image must answer exactly like an in-memory one, even
/// with chunks small enough that many tables and names straddle boundaries.
#[test]
fn lazy_file_image_matches_in_memory() {
    for (v, variant) in [("1.27.3", Variant::Stripped), ("1.21.13", Variant::CgoPie)] {
        let path = fixture(v, variant);
        let data = std::fs::read(&path).unwrap();
        let owned = GoBinary::from_bytes(data.clone()).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let lazy = GoBinary::parse(
            image::Image::from_file_chunked(file, data.len(), 4096),
            path.display().to_string(),
        )
        .unwrap();
        let ctx = format!("{v} {variant:?}");
        assert_eq!(lazy.build_info(), owned.build_info(), "{ctx}");
        assert_eq!(lazy.text_start(), owned.text_start(), "{ctx}");
        let a: Vec<Function> = owned.functions().collect();
        let b: Vec<Function> = lazy.functions().collect();
        assert_eq!(a, b, "{ctx}");
        for f in a.iter().step_by(3) {
            let pc = f.entry + f.size() / 2;
            assert_eq!(lazy.symbolize(pc), owned.symbolize(pc), "{ctx}: {}", f.name);
            assert_eq!(
                lazy.read_code(f.entry, f.size() as usize),
                owned.read_code(f.entry, f.size() as usize)
            );
        }
        for name in CHAIN {
            assert_eq!(
                lazy.functions_named(name),
                owned.functions_named(name),
                "{ctx}"
            );
        }
        assert_eq!(lazy.bytes(), &data[..], "{ctx}");
    }
}

/// A pctab whose every table is an endless run of zero-pc-delta steps: each
/// walk must stop at its caps instead of scanning the whole table per lookup.
#[test]
fn pathological_pc_tables_stay_bounded() {
    let bin = open("1.27.3", Variant::Stripped);
    let mut data = bin.bytes().to_vec();
    let pctab = bin.pcln.pctab.clone();
    for (i, b) in data[pctab].iter_mut().enumerate() {
        *b = if i % 2 == 0 { 2 } else { 0 };
    }
    let t = Instant::now();
    let bad = GoBinary::from_bytes(data).expect("tables are not validated at open");
    let all: Vec<Function> = bad.functions().collect();
    assert_eq!(all.len(), bin.pclntab_info().nfunc);
    for f in all.iter().step_by(11) {
        let _ = bad.symbolize(f.entry + f.size() / 2);
        let _ = bad.pcsp(f.end - 1);
    }
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());
}

#[test]
fn functions_named_many_matches_single_lookups() {
    for variant in [Variant::Default, Variant::Stripped] {
        let bin = open("1.26.6", variant);
        let mut names: Vec<&str> = CHAIN.to_vec();
        names.extend(["runtime.gopreempt_m", "no.such.function", "runtime.signalM"]);
        let many = bin.functions_named_many(&names);
        assert_eq!(many.len(), names.len());
        for (name, fs) in names.iter().zip(&many) {
            assert_eq!(*fs, bin.functions_named(name), "{variant:?} {name}");
        }
        assert!(
            many[8].is_empty() && many[9].is_empty(),
            "{variant:?}: absent names"
        );
        assert_eq!(many[10], many[2], "{variant:?}: repeated name");
    }
}

#[test]
fn go_binary_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GoBinary>();
    assert_send_sync::<GoBinaryError>();
}

/// Pre-1.18 build info: the header holds pointers to Go string headers. No
/// toolchain that old is installable here, so the blob is built by hand.
#[test]
fn buildinfo_pointer_format() {
    let base = 0x400000u64 + 0x78 + 8; // payload vaddr after 8 bytes of padding: 16-aligned
    let mut p = vec![0u8; 8];
    let blob_at = p.len();
    p.extend_from_slice(b"\xff Go buildinf:");
    p.push(8); // ptrSize
    p.push(0); // flags: little endian, pointer format
    p.extend_from_slice(&[0; 16]); // versPtr, modPtr patched below
    let vers = "go1.17.13";
    let framed = format!(
        "{}path\tcmd/x\nmod\tcmd/x\t(devel)\t\nbuild\tCGO_ENABLED=1\n{}",
        "\u{1}".repeat(16),
        "\u{2}".repeat(16)
    );
    let str_at = |p: &Vec<u8>| base - 8 + p.len() as u64;
    let vers_data = str_at(&p);
    p.extend_from_slice(vers.as_bytes());
    let mod_data = str_at(&p);
    p.extend_from_slice(framed.as_bytes());
    while !p.len().is_multiple_of(8) {
        p.push(0);
    }
    let vers_hdr = str_at(&p);
    p.extend_from_slice(&vers_data.to_le_bytes());
    p.extend_from_slice(&(vers.len() as u64).to_le_bytes());
    let mod_hdr = str_at(&p);
    p.extend_from_slice(&mod_data.to_le_bytes());
    p.extend_from_slice(&(framed.len() as u64).to_le_bytes());
    p[blob_at + 16..blob_at + 24].copy_from_slice(&vers_hdr.to_le_bytes());
    p[blob_at + 24..blob_at + 32].copy_from_slice(&mod_hdr.to_le_bytes());
    let img = image::Image::from_vec(tiny_elf(&p));
    let elf = elf::Elf::parse(&img).expect("tiny ELF parses");
    let bi = buildinfo::read(&elf, &img).expect("pointer-format build info");
    assert_eq!(bi.go_version, "go1.17.13");
    assert_eq!(bi.path.as_deref(), Some("cmd/x"));
    assert_eq!(bi.main_version.as_deref(), Some("(devel)"));
    assert_eq!(bi.setting("CGO_ENABLED"), Some("1"));
    // The same blob with a wild modinfo pointer still yields the version.
    let mut broken = p.clone();
    broken[blob_at + 24..blob_at + 32].copy_from_slice(&u64::MAX.to_le_bytes());
    let img = image::Image::from_vec(tiny_elf(&broken));
    let elf = elf::Elf::parse(&img).unwrap();
    let bi = buildinfo::read(&elf, &img).expect("version without modinfo");
    assert_eq!((bi.go_version.as_str(), bi.path), ("go1.17.13", None));
}

/// The DWARF of every build variant of every release under test gives exactly the committed
/// table entry of that release (`cargo xtask gen-offsets` derives the table from the same
/// kind of binaries); stripped builds have none.
#[test]
fn dwarf_offsets_equal_the_committed_table() {
    for v in core_versions() {
        let (major, minor) = offsets::parse_go_version(v).expect("a release");
        let Some((table, true)) = offsets::from_table(major, minor) else {
            panic!("{v}: no table entry for its release");
        };
        for variant in Variant::ALL {
            match offsets::from_binary_dwarf(&open(v, variant)) {
                Ok(dwarf) => assert_eq!(dwarf, table, "{v} {variant:?}: {:?}", dwarf.diff(&table)),
                Err(offsets::OffsetsError::NoDwarf) => assert_eq!(
                    variant,
                    Variant::Stripped,
                    "{v}: only stripped builds lack DWARF"
                ),
                Err(err) => panic!("{v} {variant:?}: {err}"),
            }
        }
    }
}
