//! The byte tables in stage1/README.md, checked against the code: every
//! row's offset and length, that the rows tile the structure, and what the
//! encoder writes at each field.

use racklet_bmc_proto::Slot;
use racklet_release::{ImageName, SecurityVersion};
use stage1::slots::{
    Geometry, SlotImage, SlotState, COPY_OFFSETS, CRC_OFFSET, HEADER_LEN, MAGIC, RECORD_LEN,
    RECORD_OFFSETS, SLOTS_OFFSET,
};

/// Rows `(offset, length, field)` of the table under `heading`.
fn table(heading: &str) -> Vec<(String, String, String)> {
    let readme = include_str!("../README.md");
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"));
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let c: Vec<String> = l.split('|').map(|s| s.trim().to_owned()).collect();
            (c[1].clone(), c[2].clone(), c[3].clone())
        })
        .collect()
}

fn state() -> SlotState {
    let mut s = SlotState::empty(Geometry::for_disk(64 << 20).unwrap());
    s.generation = 0x0102_0304_0506_0708;
    let img = SlotImage {
        name: ImageName::new("os-x86_64-1.2.0.uki").unwrap(),
        version: "1.2.0".parse().unwrap(),
        security_version: SecurityVersion(7),
        sha256: [0xAB; 32],
        length: 12345,
    };
    s.invalidate(Slot::B, img).unwrap();
    s.mark_valid(Slot::B).unwrap();
    s.flip(Slot::B).unwrap();
    s
}

fn num(s: &str) -> usize {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not a number"))
}

#[test]
fn the_disk_table_matches_the_code() {
    let rows = table("### Disk");
    assert_eq!(num(&rows[0].0) as u64, COPY_OFFSETS[0]);
    assert_eq!(num(&rows[0].1), HEADER_LEN);
    assert_eq!(num(&rows[1].0) as u64, COPY_OFFSETS[1]);
    for (i, row) in rows[2..4].iter().enumerate() {
        assert_eq!(num(&row.0) as u64, stage1::statearea::OFFSETS[i]);
        assert_eq!(num(&row.1) as u64, stage1::statearea::COPY_LEN);
        assert!(row.2.contains(&format!("trusted state, copy {i}")));
    }
    assert_eq!(num(&rows[4].0) as u64, SLOTS_OFFSET);
    assert!(rows[4].2.contains("slot A") && rows[5].2.contains("slot B"));
    let g = Geometry::for_disk(64 << 20).unwrap();
    assert_eq!(g.capacity, ((64 << 20) - SLOTS_OFFSET) / 2 / 4096 * 4096);
    assert_eq!(g.offsets[1], g.offsets[0] + g.capacity);
}

#[test]
fn the_header_table_matches_the_encoder() {
    let s = state();
    let b = s.encode();
    let rows = table("### Header");
    let mut at = 0;
    for (off, len, field) in &rows {
        let (off, len) = (num(off), num(len));
        assert_eq!(off, at, "row {field} does not follow the previous one");
        at += len;
        let bytes = &b[off..off + len];
        let le = |n: u64| -> Vec<u8> { n.to_le_bytes()[..len].to_vec() };
        match field.as_str() {
            f if f.starts_with("magic") => assert_eq!(bytes, MAGIC),
            f if f.starts_with("format version") => assert_eq!(bytes, le(1)),
            f if f.starts_with("header length") => assert_eq!(bytes, le(HEADER_LEN as u64)),
            "generation" => assert_eq!(bytes, le(s.generation)),
            "slot A offset" => assert_eq!(bytes, le(s.geometry.offsets[0])),
            "slot B offset" => assert_eq!(bytes, le(s.geometry.offsets[1])),
            "slot capacity" => assert_eq!(bytes, le(s.geometry.capacity)),
            f if f.starts_with("active slot") => assert_eq!(bytes, [1]),
            "zero" => assert!(bytes.iter().all(|&x| x == 0)),
            "slot A record" => assert_eq!((off, len), (RECORD_OFFSETS[0], RECORD_LEN)),
            "slot B record" => assert_eq!((off, len), (RECORD_OFFSETS[1], RECORD_LEN)),
            f if f.starts_with("CRC-32") => {
                assert_eq!(off, CRC_OFFSET);
                assert_eq!(bytes, crc32fast::hash(&b[..CRC_OFFSET]).to_le_bytes());
            }
            other => panic!("README field {other:?} is not checked"),
        }
    }
    assert_eq!(at, HEADER_LEN);
}

#[test]
fn the_record_table_matches_the_encoder() {
    let s = state();
    let b = s.encode();
    let r = &b[RECORD_OFFSETS[1]..RECORD_OFFSETS[1] + RECORD_LEN];
    let img = s.slot(Slot::B).image.clone().unwrap();
    let rows = table("### Slot record");
    let mut at = 0;
    for (off, len, field) in &rows {
        let (off, len) = (num(off), num(len));
        assert_eq!(off, at, "row {field}");
        at += len;
        let bytes = &r[off..off + len];
        let padded = |v: &[u8]| {
            let mut p = v.to_vec();
            p.resize(len, 0);
            p
        };
        match field.as_str() {
            f if f.starts_with("status") => assert_eq!(bytes, [2]),
            "name length" => assert_eq!(bytes, [img.name.as_str().len() as u8]),
            "version length" => assert_eq!(bytes, [img.version.to_string().len() as u8]),
            "zero" => assert!(bytes.iter().all(|&x| x == 0)),
            "image length" => assert_eq!(bytes, img.length.to_le_bytes()),
            f if f.starts_with("security version") => {
                assert_eq!(bytes, u64::from(img.security_version.0).to_le_bytes())
            }
            "SHA-256" => assert_eq!(bytes, img.sha256),
            "target name" => assert_eq!(bytes, padded(img.name.as_str().as_bytes())),
            f if f.starts_with("version") => {
                assert_eq!(bytes, padded(img.version.to_string().as_bytes()))
            }
            other => panic!("README field {other:?} is not checked"),
        }
    }
    assert_eq!(at, RECORD_LEN);
    // The empty slot A record is all zero.
    assert!(b[RECORD_OFFSETS[0]..RECORD_OFFSETS[0] + RECORD_LEN]
        .iter()
        .all(|&x| x == 0));
}

#[test]
fn the_state_copy_table_matches_the_writer() {
    let rows = table("### Trusted state copy");
    let t = tempfile::tempdir().unwrap();
    let disk = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(t.path().join("disk"))
        .unwrap();
    disk.set_len(SLOTS_OFFSET).unwrap();
    let dir = t.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("timestamp.json"), "2026-11-25T00:00:00Z").unwrap();
    stage1::statearea::save(&disk, &dir).unwrap();
    let mut b = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&disk, &mut b, stage1::statearea::OFFSETS[0])
        .unwrap();
    let payload = stage1::statearea::encode_dir(&dir).unwrap();
    let at = |r: usize| num(&rows[r].0);
    assert_eq!(&b[at(0)..at(0) + 8], b"RKLSTAT1");
    assert_eq!(
        u64::from_le_bytes(b[at(1)..at(1) + 8].try_into().unwrap()),
        1
    );
    assert_eq!(
        u32::from_le_bytes(b[at(2)..at(2) + 4].try_into().unwrap()) as usize,
        payload.len()
    );
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..20]);
    h.update(&payload);
    assert_eq!(
        u32::from_le_bytes(b[at(3)..at(3) + 4].try_into().unwrap()),
        h.finalize()
    );
    assert_eq!(&b[at(4)..at(4) + payload.len()], &payload[..]);
    // The entry encoding: u16 length, path, u32 length, data.
    assert_eq!(&payload[..2], &14u16.to_le_bytes());
    assert_eq!(&payload[2..16], b"timestamp.json");
    assert_eq!(&payload[16..20], &20u32.to_le_bytes());
}
