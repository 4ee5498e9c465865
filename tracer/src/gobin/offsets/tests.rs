use super::*;

#[test]
fn garbage_is_an_elf_error_not_a_panic() {
    for bytes in [
        &b""[..],
        b"\x7fELF",
        b"not an elf file at all",
        &[0u8; 4096],
    ] {
        let err = from_dwarf(bytes).expect_err("garbage must not parse");
        assert!(
            matches!(err, OffsetsError::Elf { .. }),
            "unexpected error for {} bytes: {err}",
            bytes.len()
        );
    }
}

/// A valid ELF64 header with no sections at all.
fn empty_elf() -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = object::write::elf::Writer::new(object::Endianness::Little, true, &mut out);
    w.reserve_file_header();
    w.write_file_header(&object::write::elf::FileHeader {
        os_abi: 0,
        abi_version: 0,
        e_type: object::elf::ET_EXEC,
        e_machine: object::elf::EM_X86_64,
        e_entry: 0,
        e_flags: 0,
    })
    .expect("ELF header");
    out
}

#[test]
fn elf_without_dwarf_is_no_dwarf() {
    let err = from_dwarf(&empty_elf()).expect_err("no DWARF");
    assert!(matches!(err, OffsetsError::NoDwarf), "got {err}");
    let err = from_dwarf_partial(&empty_elf()).expect_err("no DWARF");
    assert!(matches!(err, OffsetsError::NoDwarf), "got {err}");
}

#[test]
fn resolve_without_dwarf_uses_the_table() {
    let (offsets, source) = resolve(&empty_elf(), "go1.23.9").expect("table has 1.23");
    assert_eq!(
        source,
        OffsetsSource::Table {
            release: (1, 23),
            exact: true
        }
    );
    assert_eq!(Some((offsets, true)), from_table(1, 23));
    let err = resolve(&empty_elf(), "go1.20.14").expect_err("1.20 unsupported");
    assert!(
        matches!(
            err,
            OffsetsError::UnsupportedRelease {
                major: 1,
                minor: 20
            }
        ),
        "got {err}"
    );
    let err = resolve(&empty_elf(), "gccgo").expect_err("not a version");
    assert!(matches!(err, OffsetsError::BadVersion(_)), "got {err}");
}

#[test]
fn parses_go_versions() {
    for (text, want) in [
        ("go1.21.13", (1, 21)),
        ("1.25.5", (1, 25)),
        ("go1.26rc1", (1, 26)),
        ("go1.27.3 X:greenteagc", (1, 27)),
        ("devel go1.28-abcdef Tue Jan 1", (1, 28)),
        ("go1.9", (1, 9)),
    ] {
        assert_eq!(parse_go_version(text).ok(), Some(want), "{text}");
    }
    for text in ["", "go", "go1", "gox.y", "go1.x"] {
        assert!(parse_go_version(text).is_err(), "{text:?} should not parse");
    }
}

#[test]
fn table_is_sorted_unique_complete_and_starts_at_1_21() {
    let table = table();
    assert_eq!(table.first().map(|e| e.0), Some((1, 21)), "oldest entry");
    for pair in table.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "table not strictly ascending at {:?}",
            pair[1].0
        );
    }
    for (release, version, offsets) in table {
        assert!(offsets.is_complete(), "{release:?} has unknown offsets");
        assert_eq!(
            parse_go_version(version).ok(),
            Some(*release),
            "entry {release:?} derived from {version}"
        );
    }
}

#[test]
fn table_lookup_exact_newer_and_older() {
    let table = table();
    for (release, _, offsets) in table {
        assert_eq!(from_table(release.0, release.1), Some((*offsets, true)));
    }
    let (newest_release, _, newest) = table.last().expect("table is not empty");
    assert_eq!(
        from_table(newest_release.0, newest_release.1 + 5),
        Some((*newest, false)),
        "unknown newer minor takes the newest layout, inexact"
    );
    assert_eq!(from_table(1, 20), None);
    assert_eq!(from_table(1, 0), None);
    assert_eq!(from_table(0, 99), None);
}

#[test]
fn generated_json_matches_the_checked_in_table() {
    assert_eq!(
        generate_table_json(table()),
        TABLE_JSON,
        "offsets_table.json was edited by hand or the generator changed: regenerate it"
    );
}

#[test]
fn generation_is_deterministic_sorts_and_parses_back() {
    let a = (
        (1, 30),
        "go1.30.1".to_owned(),
        RuntimeOffsets([7; FIELD_COUNT]),
    );
    let b = ((1, 29), "go1.29.0".to_owned(), RuntimeOffsets::UNKNOWN);
    let one = generate_table_json(&[a.clone(), b.clone()]);
    let two = generate_table_json(&[b.clone(), a.clone()]);
    assert_eq!(one, two);
    let first_29 = one.find("\"1.29\"").expect("1.29 present");
    let first_30 = one.find("\"1.30\"").expect("1.30 present");
    assert!(first_29 < first_30, "entries sorted by release");
    assert!(one.contains("\"g_goid\": null"), "unknown written as null");
    assert_eq!(parse_table(&one), Ok(vec![b, a]));
}

#[test]
fn table_parser_rejects_missing_and_unknown_fields() {
    let good =
        generate_table_json(&[((1, 21), "go1.21.0".into(), RuntimeOffsets([8; FIELD_COUNT]))]);
    let missing = good.replace("        \"g_goid\": 8,\n", "");
    assert!(parse_table(&missing).unwrap_err().contains("no g_goid"));
    let unknown = good.replace("\"g_goid\": 8", "\"g_goid\": 8, \"g_m\": 48");
    assert!(
        parse_table(&unknown)
            .unwrap_err()
            .contains("unknown field g_m")
    );
}

#[test]
fn fields_follow_the_field_enum() {
    let offsets = RuntimeOffsets(std::array::from_fn(|i| i as u32 * 8));
    assert_eq!(offsets[Field::GGoid], 0);
    assert_eq!(offsets[Field::PSysmontickSchedwhen], 96);
    let keys: Vec<&str> = offsets.fields().map(|(key, _)| key).collect();
    assert_eq!(keys, Field::ALL.map(Field::key));
    assert!(!RuntimeOffsets::UNKNOWN.is_complete());
}

#[test]
fn diff_names_differing_fields() {
    let a = RuntimeOffsets([1; FIELD_COUNT]);
    let mut b = a;
    b.0[Field::MProcid as usize] = 2;
    assert_eq!(a.diff(&b), vec![("m_procid", 1, 2)]);
    assert!(a.diff(&a).is_empty());
}
