//! Regression tests for inputs found by fuzzing the Go binary reader (`fuzz/`, target
//! `gobinary`), and a check of the fuzz seed corpus.
//!
//! Each finding is rebuilt here from a few lines of code rather than stored as a blob, so
//! the test says what the input is. `fuzz/README.md` tells how the inputs were found.

use object::{
    Architecture, BinaryFormat, Endianness, SectionFlags, SectionKind, U32, U64, bytes_of,
    elf::{CompressionHeader64, ELFCOMPRESS_ZLIB, ELFCOMPRESS_ZSTD, SHF_COMPRESSED},
    write,
};

use super::{GoBinary, offsets};

/// A minimal ELF64 file whose only content is a `SHF_COMPRESSED` `.debug_info` section
/// with compression header `(ch_type, ch_size)` and `payload` as the compressed bytes.
fn elf_with_compressed_debug_info(ch_type: u32, ch_size: u64, payload: &[u8]) -> Vec<u8> {
    const LE: Endianness = Endianness::Little;
    let header = CompressionHeader64 {
        ch_type: U32::new(LE, ch_type),
        ch_reserved: U32::new(LE, 0),
        ch_size: U64::new(LE, ch_size),
        ch_addralign: U64::new(LE, 1),
    };
    let mut elf = write::Object::new(BinaryFormat::Elf, Architecture::X86_64, LE);
    let info = elf.add_section(Vec::new(), b".debug_info".to_vec(), SectionKind::Debug);
    let section = elf.section_mut(info);
    section.set_data([bytes_of(&header), payload].concat(), 1);
    section.flags = SectionFlags::Elf {
        sh_flags: u64::from(SHF_COMPRESSED),
    };
    elf.write().expect("an ELF file")
}

/// Fuzzer finding (`oom-d0afa782…`, a mutated seed whose `.debug_info` compression
/// header declared 4 160 749 993 bytes): `object` reserved the declared size (3.9 GB) before
/// inflating 281 bytes of zlib. A section may not claim more than deflate can expand to.
#[test]
fn zlib_section_declaring_gigabytes_is_refused_before_allocating() {
    let payload = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]; // zlib of ""
    let elf = elf_with_compressed_debug_info(ELFCOMPRESS_ZLIB, 4_160_749_993, &payload);
    let err = offsets::from_dwarf(&elf).expect_err("impossible size");
    assert!(
        matches!(
            err,
            offsets::OffsetsError::Compression {
                section: ".debug_info",
                ..
            }
        ),
        "got {err}"
    );
    // A size deflate can reach from the payload is still tried (and fails as corrupt).
    let elf = elf_with_compressed_debug_info(ELFCOMPRESS_ZLIB, 4096, &payload);
    let err = offsets::from_dwarf(&elf).expect_err("payload inflates to nothing");
    assert!(
        matches!(err, offsets::OffsetsError::Decompress { .. }),
        "got {err}"
    );
}

/// Found reading the code behind the fuzzer's first finding: `object` decompresses zstd
/// with `read_to_end`, which grows with the stream, not the declared size. This 8 KB
/// section of RLE blocks expands to 256 MB (the same trick in 260 KB gives 8 GB) before
/// the size mismatch is noticed. Go never writes zstd, so it is refused outright.
#[test]
fn zstd_section_is_refused_without_decompressing() {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd]; // magic
    frame.push(0x00); // frame header descriptor: no FCS, not single-segment, no checksum
    frame.push(0x38); // window descriptor: 128 KiB
    const BLOCKS: u32 = 2048;
    for i in 0..BLOCKS {
        let last = u32::from(i == BLOCKS - 1);
        let header = (128 * 1024) << 3 | 1 << 1 | last; // RLE block of 128 KiB
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0);
    }
    let elf = elf_with_compressed_debug_info(ELFCOMPRESS_ZSTD, 100, &frame);
    let err = offsets::from_dwarf(&elf).expect_err("zstd refused");
    assert!(
        matches!(
            err,
            offsets::OffsetsError::Compression {
                section: ".debug_info",
                ..
            }
        ),
        "got {err}"
    );
}

/// Fuzzer finding (`crash-7e9e77f2…`, a seed whose text segment's `p_offset` became
/// 0xeea1628d7b): `file_offset` mapped function entries to offsets far past the end of
/// the file, which the planner would have handed to the kernel as uprobe offsets.
#[test]
fn file_offset_is_none_past_the_end_of_the_file() {
    let mut bytes =
        include_bytes!("../../../fuzz/seeds/gobinary/go1.27.3-spinner-stripped").to_vec();
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    // The first PT_LOAD is the text segment; p_offset is at +8.
    bytes[phoff + 8..phoff + 16].copy_from_slice(&0xee_a162_8d7b_u64.to_le_bytes());
    let len = bytes.len() as u64;
    let bin = GoBinary::from_bytes(bytes).expect("the pclntab is intact");
    let signal_m = bin.functions_named("runtime.signalM");
    assert_eq!(signal_m.len(), 1);
    let entry = signal_m[0].entry;
    assert_eq!(
        bin.file_offset(entry),
        None,
        "{:?}",
        bin.file_offset(entry).map(|o| o > len)
    );
    assert_eq!(bin.read_code(entry, 16), None);
    // Addresses in the intact segments still map.
    let pclntab = bin.pclntab_info().vaddr;
    assert!(bin.file_offset(pclntab).is_some_and(|o| o < len));
}

/// Fuzzer finding (`crash-2f780682…`, a Go 1.16-layout seed mutated so that a function's
/// `_func.entry` is 0 and the functab ends at 0xffffffffffffffff): the function spans the
/// address space, and the pc-value step cap `size / quantum + 2` overflowed (a panic in
/// debug builds, a wrapped cap of 1 in release builds).
#[test]
fn go116_function_spanning_the_address_space() {
    let mut bytes =
        include_bytes!("../../../fuzz/seeds/gobinary/go1.21.13-spinner-layout-go116").to_vec();
    let header = {
        let bin = GoBinary::from_bytes(bytes.clone()).expect("seed opens");
        bin.file_offset(bin.pclntab_info().vaddr)
            .expect("header in the file") as usize
    };
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    // Go 1.16 header: magic, pad, quantum, ptrsize, nfunc, nfiles, then five offsets, the
    // last one (pclnOffset) locating the functab of (entry, funcoff) u64 pairs.
    let nfunc = word(&bytes, header + 8) as usize;
    let functab = header + word(&bytes, header + 56) as usize;
    let end_of_text = functab + 16 * nfunc;
    bytes[end_of_text..end_of_text + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    // The last function's own record (`_func.entry`, its first word) says it starts at 0.
    let last_func = functab + word(&bytes, functab + 16 * (nfunc - 1) + 8) as usize;
    bytes[last_func..last_func + 8].copy_from_slice(&0u64.to_le_bytes());
    let bin = GoBinary::from_bytes(bytes).expect("still a readable pclntab");
    let functions: Vec<_> = bin.functions().collect();
    assert_eq!(functions.len(), nfunc);
    let last = functions.last().unwrap();
    assert_eq!(last.entry, 0);
    assert!(bin.symbolize(u64::MAX - 1).len() <= 1);
}

/// A binary without `.go.buildinfo` and `.symtab`, like esbuild's npm releases (found in
/// `tests/realworld`): the version comes from the `runtime.buildVersion` string header.
#[test]
fn version_without_buildinfo_or_symtab() {
    let bytes =
        include_bytes!("../../../fuzz/seeds/gobinary/go1.27.3-spinner-stripped-nobuildinfo");
    let bin = GoBinary::from_bytes(bytes.to_vec()).expect("opens");
    assert!(bin.build_info().is_none());
    assert!(!bin.has_symtab());
    assert_eq!(bin.go_version().map(|v| v.raw.as_str()), Some("go1.27.3"));
}

/// The committed fuzz seeds (`fuzz/seeds/gobinary`, written by `fuzz/make_seeds.py`) are
/// miniature but complete Go executables: they must open, resolve the probe functions
/// and symbolise them to a file and line, in every layout the reader supports, without
/// a Go toolchain.
#[test]
fn fuzz_seeds_are_valid_go_binaries() {
    macro_rules! seed {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!("../../../fuzz/seeds/gobinary/", $name)).as_slice(),
            )
        };
    }
    let seeds = [
        seed!("go1.27.3-spinner-stripped"),
        seed!("go1.27.3-spinner-stripped-nobuildinfo"),
        seed!("go1.27.3-spinner-pie-zdwarf"),
        seed!("go1.27.3-spinner-symtab-dwarf"),
        seed!("go1.27.3-spinner-nosections"),
        seed!("go1.27.3-spinner-symbol-pclntab-zdebug"),
        seed!("go1.24.11-spinner-stripped"),
        seed!("go1.21.13-spinner-stripped"),
        seed!("go1.21.13-spinner-layout-go118"),
        seed!("go1.21.13-spinner-layout-go116"),
        seed!("go1.21.13-spinner-layout-go116-nosections"),
    ];
    for (name, bytes) in seeds {
        let bin = GoBinary::from_bytes(bytes.to_vec()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let version = bin
            .go_version()
            .unwrap_or_else(|| panic!("{name}: no version"));
        assert!(name.starts_with(&version.raw), "{name}: version {version}");
        for function in ["runtime.signalM", "runtime.retake", "runtime.doSigPreempt"] {
            let found = bin.functions_named(function);
            assert_eq!(found.len(), 1, "{name}: {function}: {found:?}");
            let frames = bin.symbolize(found[0].entry);
            let last = frames
                .last()
                .unwrap_or_else(|| panic!("{name}: {function}: no frame"));
            assert_eq!(last.function, function, "{name}");
            assert!(
                last.file.contains("/src/runtime/") && last.file.ends_with(".go"),
                "{name}: {function} in {}",
                last.file
            );
            assert!(last.line > 0, "{name}: {function}: line 0");
        }
        // Both asyncPreempt2 entries (the ABI0 wrapper and the real function).
        assert_eq!(
            bin.functions_named("runtime.asyncPreempt2").len(),
            2,
            "{name}"
        );
        if name.contains("dwarf") {
            let offsets =
                offsets::from_dwarf(bin.bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(offsets.is_complete(), "{name}: {offsets:?}");
        }
    }
    let go12 = include_bytes!("../../../fuzz/seeds/gobinary/go1.21.13-spinner-magic-go12");
    let err = GoBinary::from_bytes(go12.to_vec()).expect_err("Go 1.2 pclntab");
    assert!(err.to_string().contains("0xfffffffb"), "{err}");
}
