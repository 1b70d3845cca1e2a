//! The attacks of the Pi boot path, each refused by [`accept`] (what the
//! modelled Pi and `imgsign verify` run) with an error naming it. `accept`
//! returns nothing on a refusal, so a model that writes only what it
//! returned writes nothing at all.

mod common;

use common::*;
use racklet_piboot::fat_read::FatProblem;
use racklet_piboot::sig::{sign_boot_img, BootSig, SigTimestamp};
use racklet_piboot::{accept, Error};

fn ts(t: i64) -> SigTimestamp {
    SigTimestamp::from_unix(t).unwrap()
}

fn signed(key: &TestKey, image: &[u8], at: i64) -> String {
    sign_boot_img(image, ts(at), None, key).unwrap().encode()
}

#[test]
fn a_signed_pair_is_accepted_and_unpacks_to_the_inputs() {
    let key = TestKey::generate();
    let files = pi4_files();
    let image = build(&files);
    let sig = signed(&key, &image, EPOCH);
    let ok = accept(&image, sig.as_bytes(), &key.public(), None).unwrap();
    assert_eq!(ok.sig.ts(), ts(EPOCH));
    for (path, data) in &files {
        let f = ok.image.file(path.as_str()).unwrap();
        assert_eq!(&ok.image.contents(f), data);
    }
    // The same image again, and a newer one, are fine.
    assert!(accept(&image, sig.as_bytes(), &key.public(), Some(ts(EPOCH))).is_ok());
}

#[test]
fn a_boot_img_changed_after_signing_is_refused() {
    let key = TestKey::generate();
    let mut image = build(&pi4_files());
    let sig = signed(&key, &image, EPOCH);
    let last = image.len() - 1;
    image[last] ^= 0x01;
    let err = accept(&image, sig.as_bytes(), &key.public(), None).unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err}");
}

#[test]
fn a_boot_sig_signed_with_another_key_is_refused() {
    let (key, attacker) = (TestKey::generate(), TestKey::generate());
    let image = build(&pi4_files());
    let sig = signed(&attacker, &image, EPOCH);
    let err = accept(&image, sig.as_bytes(), &key.public(), None).unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err}");
}

#[test]
fn an_unsigned_boot_sig_is_refused() {
    let key = TestKey::generate();
    let image = build(&pi4_files());
    let sig = BootSig::digest_only(&image, ts(EPOCH), None).encode();
    let err = accept(&image, sig.as_bytes(), &key.public(), None).unwrap_err();
    assert!(matches!(err, Error::Unsigned), "{err}");
}

#[test]
fn a_replayed_older_signed_boot_img_is_refused() {
    let key = TestKey::generate();
    let old = build(&pi4_files());
    let old_sig = signed(&key, &old, EPOCH);
    let mut newer_files = pi4_files();
    newer_files[4].1 = filler(700_001, 7);
    let new = build(&newer_files);
    let new_sig = signed(&key, &new, EPOCH + 86_400);
    let seen = accept(&new, new_sig.as_bytes(), &key.public(), None)
        .unwrap()
        .sig
        .ts();
    let err = accept(&old, old_sig.as_bytes(), &key.public(), Some(seen)).unwrap_err();
    assert!(
        matches!(err, Error::StaleTimestamp { offered, last_accepted } if offered == ts(EPOCH) && last_accepted == seen),
        "{err}"
    );
}

#[test]
fn oversized_downloads_are_refused_before_parsing() {
    let key = TestKey::generate();
    let err = accept(&[0; 16], &[b'0'; 2000], &key.public(), None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                what: "boot.sig",
                ..
            }
        ),
        "{err}"
    );
    let big = vec![0u8; 30_000_001];
    let err = accept(&big, b"", &key.public(), None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                what: "boot.img",
                ..
            }
        ),
        "{err}"
    );
}

/// The FAT12 layout of an image, read from its boot sector, to forge lies.
struct Layout {
    fat: usize,
    fat_bytes: usize,
    fats: usize,
    root: usize,
}

impl Layout {
    fn of(image: &[u8]) -> Self {
        assert_eq!(&image[54..59], b"FAT12");
        let le16 = |at: usize| usize::from(u16::from_le_bytes([image[at], image[at + 1]]));
        let bps = le16(11);
        let fat = le16(14) * bps;
        let fat_bytes = le16(22) * bps;
        let fats = usize::from(image[16]);
        Self {
            fat,
            fat_bytes,
            fats,
            root: fat + fats * fat_bytes,
        }
    }

    fn get(&self, image: &[u8], c: u32) -> u32 {
        let at = self.fat + c as usize * 3 / 2;
        let v = u32::from(u16::from_le_bytes([image[at], image[at + 1]]));
        if c.is_multiple_of(2) {
            v & 0xFFF
        } else {
            v >> 4
        }
    }

    /// Sets FAT entry `c` in every copy (so the copies still agree).
    fn set(&self, image: &mut [u8], c: u32, v: u32) {
        for copy in 0..self.fats {
            let at = self.fat + copy * self.fat_bytes + c as usize * 3 / 2;
            let old = u16::from_le_bytes([image[at], image[at + 1]]);
            let new = if c.is_multiple_of(2) {
                (old & 0xF000) | v as u16
            } else {
                (old & 0x000F) | ((v as u16) << 4)
            };
            image[at..at + 2].copy_from_slice(&new.to_le_bytes());
        }
    }

    /// Offset of the root-directory entry whose 8.3 name is `short`.
    fn entry(&self, image: &[u8], short: &[u8; 11]) -> usize {
        (0..512)
            .map(|i| self.root + 32 * i)
            .find(|&at| &image[at..at + 11] == short)
            .expect("entry present")
    }

    fn chain(&self, image: &[u8], entry: usize) -> Vec<u32> {
        let mut c = u32::from(u16::from_le_bytes([image[entry + 26], image[entry + 27]]));
        let mut out = vec![c];
        while self.get(image, c) < 0xFF8 {
            c = self.get(image, c);
            out.push(c);
        }
        out
    }
}

#[test]
fn a_boot_img_whose_fat_lies_is_refused_even_when_signed() {
    type Forge = fn(&Layout, &mut Vec<u8>);
    type Expect = fn(&FatProblem) -> bool;
    let cases: &[(&str, Forge, Expect)] = &[
        (
            "size beyond its chain",
            |l, img| {
                let e = l.entry(img, b"START4  ELF");
                img[e + 28..e + 32].copy_from_slice(&2_000_000u32.to_le_bytes());
            },
            |p| {
                matches!(
                    p,
                    FatProblem::SizeBeyondChain {
                        size: 2_000_000,
                        ..
                    }
                )
            },
        ),
        (
            "chain longer than its size",
            |l, img| {
                let e = l.entry(img, b"FIXUP4  DAT");
                img[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes());
            },
            |p| matches!(p, FatProblem::ChainBeyondSize { size: 1, .. }),
        ),
        (
            "chain past the end",
            |l, img| {
                let e = l.entry(img, b"START4  ELF");
                let last = *l.chain(img, e).last().unwrap();
                l.set(img, last, 0xFF0);
            },
            |p| matches!(p, FatProblem::ChainPastEnd { cluster: 0xFF0, .. }),
        ),
        (
            "loop",
            |l, img| {
                let e = l.entry(img, b"START4  ELF");
                let chain = l.chain(img, e);
                l.set(img, *chain.last().unwrap(), chain[1]);
            },
            |p| matches!(p, FatProblem::Loop { .. }),
        ),
        (
            "chain into a free cluster",
            |l, img| {
                let e = l.entry(img, b"START4  ELF");
                let chain = l.chain(img, e);
                l.set(img, chain[2], 0);
            },
            |p| matches!(p, FatProblem::ChainIntoFree { .. }),
        ),
        (
            "two files sharing clusters",
            |l, img| {
                let a = l.entry(img, b"START4  ELF");
                let b = l.entry(img, b"FIXUP4  DAT");
                // fixup4.dat now claims start4.elf's clusters and size.
                let (first, size) = (a + 26..a + 28, a + 28..a + 32);
                img.copy_within(first, b + 26);
                img.copy_within(size, b + 28);
            },
            |p| matches!(p, FatProblem::CrossLinked { other, .. } if other == "fixup4.dat"),
        ),
        (
            "FAT copies that differ",
            |l, img| {
                let at = l.fat + l.fat_bytes - 1;
                img[at] ^= 0xFF;
            },
            |p| matches!(p, FatProblem::FatCopiesDiffer),
        ),
        (
            "a volume larger than the image",
            |_, img| {
                let keep = img.len() - 4096;
                img.truncate(keep);
            },
            |p| matches!(p, FatProblem::VolumeBeyondImage { .. }),
        ),
    ];
    let key = TestKey::generate();
    let honest = build(&pi4_files());
    let layout = Layout::of(&honest);
    for (name, forge, expected) in cases {
        let mut image = honest.clone();
        forge(&layout, &mut image);
        // The attacker holds no key, but suppose the signer signed it
        // anyway: the FAT check still refuses it.
        let sig = signed(&key, &image, EPOCH);
        match accept(&image, sig.as_bytes(), &key.public(), None) {
            Err(Error::ReadBootImg { problem, .. }) if expected(&problem) => {}
            Err(e) => panic!("{name}: refused, but for the wrong reason: {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
}
