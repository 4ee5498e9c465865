//! Fuzz the Go binary reader (`goprobe::gobin`) with arbitrary files.
//!
//! Everything a goprobe session asks of an untrusted binary is exercised: opening it
//! (ELF headers, pclntab location and header, build info, moduledata, text start),
//! the build info and version, the probe-table lookups by name (`.symtab` and pclntab),
//! a bounded walk over every function, address lookups (`function_at`, `symbolize`
//! with inline trees, `pcsp`, `file_offset`, `read_code`) at function entries and at
//! addresses taken from the input, and the DWARF struct-offset reader. The contract
//! (see `tracer/src/gobin/mod.rs`): an error or a partial answer, never a panic, an
//! unbounded allocation or an unbounded loop.
#![no_main]

use goprobe::{
    gobin::{GoBinary, offsets},
    probes::{PROBES, ProbeTarget},
};
use libfuzzer_sys::fuzz_target;

/// Functions walked by `functions()`: enough to reach the table's later records
/// without making one input cost O(nfunc).
const MAX_FUNCTIONS: usize = 256;
/// Functions whose addresses are symbolised.
const MAX_SYMBOLIZED: usize = 32;

fuzz_target!(|data: &[u8]| {
    // The DWARF reader on the raw bytes (the same ELF reader, then gimli).
    let _ = offsets::from_dwarf(data);
    let _ = offsets::from_dwarf_partial(data);

    let Ok(bin) = GoBinary::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = format!("{bin:?}");
    let _ = bin.go_version().map(|v| (v.to_string(), v.at_least(1, 21)));
    if let Some(info) = bin.build_info() {
        let _ = (info.setting("-buildmode"), info.setting("CGO_ENABLED"));
        let _ = info.deps.iter().map(|d| d.path.len()).sum::<usize>();
    }
    let _ = (
        bin.is_pie(),
        bin.has_symtab(),
        bin.has_dwarf(),
        bin.machine(),
    );
    let _ = (
        bin.text_start(),
        bin.text_start_source(),
        bin.pclntab_info(),
    );
    let _ = (
        bin.first_load_vaddr(),
        bin.moduledata_vaddr(),
        bin.bytes().len(),
    );
    let segments = bin.load_segments();

    // The probe table's functions, one name at a time and all at once.
    let names: Vec<&str> = PROBES
        .iter()
        .filter_map(|p| match p.target {
            ProbeTarget::Uprobe { function, .. } => Some(function),
            ProbeTarget::Tracepoint { .. } => None,
        })
        .chain(["runtime.asyncPreempt", "runtime.text", "main.main", ""])
        .collect();
    let mut found = Vec::new();
    for name in &names {
        found.extend(bin.functions_named(name));
    }
    let many = bin.functions_named_many(&names);
    assert_eq!(many.len(), names.len());

    // A bounded walk over the pclntab.
    found.extend(bin.functions().take(MAX_FUNCTIONS));

    // Addresses: every function's entry, middle and end, plus words of the input
    // taken as raw addresses and as offsets into the text.
    let text = bin.text_start();
    let mut pcs: Vec<u64> = Vec::new();
    for f in found.iter().take(MAX_SYMBOLIZED) {
        pcs.extend([
            f.entry,
            f.entry + f.size() / 2,
            f.end.wrapping_sub(1),
            f.end,
        ]);
    }
    for chunk in data.rchunks_exact(8).take(8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap());
        pcs.extend([word, text.wrapping_add(word % 0x10_0000)]);
    }
    pcs.extend(segments.iter().map(|&(vaddr, _)| vaddr));
    for pc in pcs {
        let _ = bin.function_at(pc);
        let frames = bin.symbolize(pc);
        let _ = frames
            .iter()
            .map(|fr| fr.function.len() + fr.file.len())
            .sum::<usize>();
        let _ = bin.pcsp(pc);
        if let Some(off) = bin.file_offset(pc) {
            assert!(off < data.len() as u64, "file offset {off:#x} past the end");
        }
        let _ = bin.read_code(pc, 16);
    }
});
