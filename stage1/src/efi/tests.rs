use super::*;

fn esp_partition() -> Partition {
    Partition {
        number: 1,
        start_lba: 2048,
        size_lba: 0x10000,
        guid: Guid::parse("0fc63daf-8483-4772-8e79-3d69d8477de4").unwrap(),
    }
}

#[test]
fn guids_are_stored_mixed_endian() {
    // UEFI Appendix A: the first three fields little-endian.
    let g = Guid::parse(GLOBAL_VARIABLE).unwrap();
    assert_eq!(
        g.0,
        [
            0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03,
            0x2b, 0x8c
        ]
    );
    assert_eq!(g.to_string(), GLOBAL_VARIABLE);
    for bad in [
        "",
        "8be4df61-93ca-11d2-aa0d-00e098032b8",
        "zbe4df61-93ca-11d2-aa0d-00e098032b8c",
    ] {
        assert_eq!(Guid::parse(bad), None, "{bad}");
    }
}

#[test]
fn the_device_path_is_hard_drive_then_file_then_end() {
    let dp = device_path(&esp_partition(), "\\EFI\\A.efi").unwrap();
    // Hard Drive node: type 4, subtype 1, length 42.
    assert_eq!(&dp[0..4], &[4, 1, 42, 0]);
    assert_eq!(&dp[4..8], &1u32.to_le_bytes());
    assert_eq!(&dp[8..16], &2048u64.to_le_bytes());
    assert_eq!(&dp[16..24], &0x10000u64.to_le_bytes());
    assert_eq!(&dp[24..40], &esp_partition().guid.0);
    assert_eq!(&dp[40..42], &[2, 2]); // GPT, GUID signature
                                      // File Path node: 4 + 2·(10 + 1) = 26 bytes.
    assert_eq!(&dp[42..46], &[4, 4, 26, 0]);
    let path: Vec<u8> = "\\EFI\\A.efi\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(&dp[46..68], &path[..]);
    assert_eq!(&dp[68..], &[0x7f, 0xff, 4, 0]);
}

#[test]
fn a_load_option_is_attributes_length_description_path() {
    let dp = device_path(&esp_partition(), esp_file(Slot::B)).unwrap();
    let opt = load_option("Racklet slot B", &dp).unwrap();
    assert_eq!(&opt[0..4], &[1, 0, 0, 0]); // LOAD_OPTION_ACTIVE
    assert_eq!(u16::from_le_bytes([opt[4], opt[5]]) as usize, dp.len());
    let desc: Vec<u8> = "Racklet slot B\0"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(&opt[6..6 + desc.len()], &desc[..]);
    assert_eq!(&opt[6 + desc.len()..], &dp[..]); // no optional data
                                                 // As efivarfs wants it: NV|BS|RT first.
    let file = efivarfs_file(ATTRIBUTES_NV_BS_RT, &opt);
    assert_eq!(&file[..4], &[7, 0, 0, 0]);
    assert_eq!(&file[4..], &opt[..]);
    assert_eq!(
        boot_variable(0x1a),
        "Boot001A-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    );
    assert!(matches!(
        load_option("bad\u{1F600}", &dp),
        Err(EfiError::NotUcs2(_))
    ));
    assert!(matches!(
        load_option("nul\0", &dp),
        Err(EfiError::NotUcs2(_))
    ));
}

#[test]
fn the_boot_number_is_reused_for_our_entry_and_fresh_otherwise() {
    let dp = device_path(&esp_partition(), esp_file(Slot::A)).unwrap();
    let ours = load_option(description(Slot::A), &dp).unwrap();
    let firmware = |d: &str| efivarfs_file(7, &load_option(d, &dp).unwrap());
    let mut vars = vec![(0, firmware("UEFI Shell")), (1, firmware("UEFI HTTPv4"))];
    assert_eq!(
        choose_boot_number(&vars, &ours, description(Slot::A)).unwrap(),
        (2, true)
    );
    // Ours already there, byte for byte: nothing to write.
    vars.push((5, efivarfs_file(7, &ours)));
    assert_eq!(
        choose_boot_number(&vars, &ours, description(Slot::A)).unwrap(),
        (5, false)
    );
    // Our slot's entry, stale (another partition): overwritten in place.
    let other = Partition {
        start_lba: 4096,
        ..esp_partition()
    };
    let stale = load_option(
        description(Slot::A),
        &device_path(&other, esp_file(Slot::A)).unwrap(),
    )
    .unwrap();
    vars[2] = (5, efivarfs_file(7, &stale));
    assert_eq!(
        choose_boot_number(&vars, &ours, description(Slot::A)).unwrap(),
        (5, true)
    );
    // Slot B's entry is not slot A's.
    assert_eq!(
        choose_boot_number(&vars, &ours, description(Slot::B)).unwrap(),
        (2, true)
    );
}

/// A GPT with the ESP as entry `at` (0-based) of `n` 128-byte entries.
pub(super) fn gpt(n: usize, at: usize) -> (Vec<u8>, Vec<u8>) {
    let mut entries = vec![0u8; n * 128];
    let e = &mut entries[at * 128..(at + 1) * 128];
    e[0..16].copy_from_slice(&Guid::parse(ESP_TYPE).unwrap().0);
    e[16..32].copy_from_slice(&esp_partition().guid.0);
    e[32..40].copy_from_slice(&2048u64.to_le_bytes());
    e[40..48].copy_from_slice(&(2048u64 + 0x10000 - 1).to_le_bytes());
    let mut h = vec![0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&(n as u32).to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    let crc = crc32fast::hash(&h[..92]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    (h, entries)
}

#[test]
fn the_esp_is_found_in_a_gpt_whose_crcs_check_out() {
    let (h, e) = gpt(128, 2);
    let p = find_esp("vdb", &h, &e).unwrap().unwrap();
    assert_eq!(
        p,
        Partition {
            number: 3,
            ..esp_partition()
        }
    );
    // No ESP; not a GPT at all.
    let (h2, mut e2) = gpt(128, 2);
    e2[2 * 128] ^= 1;
    assert!(
        matches!(find_esp("vdb", &h2, &e2), Err(EfiError::BadGpt { reason, .. }) if reason.contains("array CRC32"))
    );
    assert_eq!(find_esp("vdb", &[0u8; 512], &e).unwrap(), None);
    let mut h3 = h.clone();
    h3[80] ^= 1;
    assert!(
        matches!(find_esp("vdb", &h3, &e), Err(EfiError::BadGpt { reason, .. }) if reason.contains("header CRC32"))
    );
    assert!(matches!(
        find_esp("vdb", &h, &e[..1000]),
        Err(EfiError::BadGpt { .. })
    ));
}

#[test]
fn install_writes_the_uki_the_option_and_boot_next() {
    let d = tempfile::tempdir().unwrap();
    let (esp, vars) = (d.path().join("esp"), d.path().join("efivars"));
    std::fs::create_dir_all(&vars).unwrap();
    std::fs::write(vars.join(boot_variable(0)), efivarfs_file(7, b"\x01\0\0\0")).unwrap();
    let n = install(&esp, &vars, &esp_partition(), Slot::B, b"MZ signed uki").unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        std::fs::read(esp.join("EFI/racklet/slot-b.efi")).unwrap(),
        b"MZ signed uki"
    );
    let opt = std::fs::read(vars.join(boot_variable(1))).unwrap();
    let want = load_option(
        description(Slot::B),
        &device_path(&esp_partition(), esp_file(Slot::B)).unwrap(),
    )
    .unwrap();
    assert_eq!(opt, efivarfs_file(7, &want));
    assert_eq!(
        std::fs::read(vars.join(boot_next_variable())).unwrap(),
        [7, 0, 0, 0, 1, 0]
    );
    // Again: the same entry is reused, BootNext rewritten.
    assert_eq!(
        install(&esp, &vars, &esp_partition(), Slot::B, b"MZ v2").unwrap(),
        1
    );
}
