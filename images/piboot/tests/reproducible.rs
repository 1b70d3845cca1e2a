//! The writer: round trip through the strict reader, the same bytes for
//! the same inputs, the FAT type for the size.

mod common;

use common::*;
use racklet_piboot::fat_read::FatType;
use racklet_piboot::fat_write::{write_boot_img, BootFile, BootImgOptions, FatTime, VolumeLabel};
use racklet_piboot::{BootImg, Error, MAX_BOOT_IMG_BYTES};

#[test]
fn written_files_read_back_exactly() {
    let files = pi4_files();
    let image = build(&files);
    let img = BootImg::read(&image).unwrap();
    assert_eq!(img.files().len(), files.len());
    for (path, data) in &files {
        let f = img
            .file(path.as_str())
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(f.path(), path.as_str(), "the long name is kept");
        assert_eq!(&img.contents(f), data, "{path}");
    }
    assert!(img.file("CONFIG.TXT").is_some(), "FAT names ignore case");
}

#[test]
fn the_same_inputs_make_the_same_bytes_in_any_order() {
    let files = pi4_files();
    let a = build(&files);
    let mut reversed = files.clone();
    reversed.reverse();
    let b = build(&reversed);
    assert_eq!(a, b, "order of the input list must not matter");
    assert_eq!(a, build(&files), "a second run must give the same bytes");

    let later = BootImgOptions::racklet(FatTime::from_unix(EPOCH + 3600).unwrap());
    let entries: Vec<BootFile<'_>> = files
        .iter()
        .map(|(path, data)| BootFile { path, data })
        .collect();
    assert_ne!(
        a,
        write_boot_img(&entries, &later).unwrap(),
        "the timestamp is in the bytes"
    );
}

#[test]
fn volume_id_label_and_size_are_where_the_boot_sector_says() {
    let image = build(&pi4_files());
    assert_eq!(image.len() % (64 * 1024), 0);
    let total: usize = pi4_files().iter().map(|(_, d)| d.len()).sum();
    assert!(
        image.len() < total + total / 8 + 256 * 1024,
        "{} bytes for {total}",
        image.len()
    );
    // FAT12/16 BPB: volume id at 39, label at 43, type at 54.
    assert_eq!(&image[39..43], &0x5250_4942u32.to_le_bytes());
    assert_eq!(&image[43..54], b"RACKLET    ");
    assert_eq!(&image[54..62], b"FAT12   ");
    assert_eq!(BootImg::read(&image).unwrap().fat_type(), FatType::Fat12);
}

#[test]
fn a_large_image_is_fat16_and_still_reads() {
    let files = vec![
        (p("Image"), filler(20_000_000, 9)),
        (p("config.txt"), b"x\n".to_vec()),
    ];
    let image = build(&files);
    let img = BootImg::read(&image).unwrap();
    assert_eq!(img.fat_type(), FatType::Fat16);
    assert_eq!(img.contents(img.file("Image").unwrap()), files[0].1);
}

#[test]
fn refusals_as_a_table() {
    let big = filler(MAX_BOOT_IMG_BYTES as usize, 1);
    let (a, b) = (p("config.txt"), p("CONFIG.TXT"));
    let (dir, inside) = (p("overlays"), p("overlays/x.dtbo"));
    let cases: Vec<(Vec<BootFile<'_>>, &str)> = vec![
        (
            vec![
                BootFile {
                    path: &a,
                    data: b"1",
                },
                BootFile {
                    path: &b,
                    data: b"2",
                },
            ],
            "duplicate",
        ),
        (
            vec![
                BootFile {
                    path: &dir,
                    data: b"1",
                },
                BootFile {
                    path: &inside,
                    data: b"2",
                },
            ],
            "nested",
        ),
        (
            vec![BootFile {
                path: &a,
                data: &big,
            }],
            "too-large",
        ),
    ];
    for (entries, name) in cases {
        let err = write_boot_img(&entries, &options()).unwrap_err();
        let ok = match name {
            "duplicate" => matches!(err, Error::DuplicateBootPath { .. }),
            "nested" => matches!(err, Error::BadBootPath { .. }),
            _ => matches!(err, Error::BootImgTooLarge { .. }),
        };
        assert!(ok, "{name}: {err}");
    }
    assert!(VolumeLabel::new("racklet").is_err());
}
