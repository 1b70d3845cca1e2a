//! Trusted state on the slot disk, for nodes whose state directory does not
//! survive a reboot (stage1 as PID 1 runs from an initramfs: its state
//! directory is RAM).
//!
//! Without it a node forgets, at every boot, which metadata versions it has
//! seen — so a compromised server could replay metadata that is old but not
//! yet expired (TUF 5.3–5.6's rollback checks need a persistent store). The
//! state directory (`trusted/`, `tough/`, a few KiB) is therefore also kept
//! in the unused gap between the slot headers and slot A.
//!
//! The disk is not trusted storage: whoever holds it (or any OS booted on
//! the node) can rewrite this area. So what comes back from it can only ever
//! make stage1 *stricter*: root walks start from the pinned root, never from
//! a stored one ([`crate::tuf::TufConfig::pinned_anchor`]); stored metadata
//! is verified again from that root; time is never kept ([`NOT_KEPT`]: the
//! BMC's clock is the time). The worst a forged area can do is what wiping
//! the disk does: forget versions seen, or make the node refuse updates
//! until the area is rewritten.
//!
//! | offset | length | what |
//! |---|---|---|
//! | 64 KiB | 448 KiB | state copy 0 |
//! | 512 KiB | 448 KiB | state copy 1 |
//!
//! Each copy (integers little-endian):
//!
//! | offset | length | field |
//! |---|---|---|
//! | 0 | 8 | magic `RKLSTAT1` |
//! | 8 | 8 | generation (higher wins; +1 per save) |
//! | 16 | 4 | payload length `n` |
//! | 20 | 4 | CRC-32 (IEEE) of bytes 0..20 and the payload |
//! | 24 | `n` | entries: path length u16, path (UTF-8, relative, `/`-separated), data length u32, data |
//!
//! A save writes the copy that does not hold the newest generation, then
//! fsyncs: a power cut mid-save tears only that copy, its CRC fails, and the
//! other copy (one save older) is loaded. A restore accepts only relative
//! paths of plain components, and only into an empty state directory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::slots::{COPY_OFFSETS, HEADER_LEN, SLOTS_OFFSET};

/// Magic of a state copy.
pub const MAGIC: [u8; 8] = *b"RKLSTAT1";
/// Where the two copies start.
pub const OFFSETS: [u64; 2] = [64 << 10, 512 << 10];
/// Bytes per copy (header included).
pub const COPY_LEN: u64 = 448 << 10;
const HEAD: usize = 24;

// The copies sit between the slot headers and slot A, and apart.
const _: () = assert!(COPY_OFFSETS[1] + HEADER_LEN as u64 <= OFFSETS[0]);
const _: () = assert!(OFFSETS[0] + COPY_LEN <= OFFSETS[1]);
const _: () = assert!(OFFSETS[1] + COPY_LEN <= SLOTS_OFFSET);

/// Why the trusted state could not be kept on, or taken from, the disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file system call on the state directory failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// "reading", "creating", …
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing or syncing one copy on the disk failed.
    #[error("{what} state copy {copy}: {source}")]
    Copy {
        /// "writing" or "syncing".
        what: &'static str,
        /// Which copy (0 or 1).
        copy: usize,
        /// The cause.
        source: std::io::Error,
    },
    /// A file name in the state directory that is not UTF-8.
    #[error("{} is not UTF-8", .path.display())]
    NotUtf8 {
        /// The name.
        path: PathBuf,
    },
    /// A path longer than an entry can name (65535 bytes).
    #[error("path {path} too long")]
    PathTooLong {
        /// The path.
        path: String,
    },
    /// A file larger than an entry can hold (4 GiB).
    #[error("{path} too large")]
    FileTooLarge {
        /// The path.
        path: String,
    },
    /// More state than one copy holds.
    #[error("state is {len} bytes; the disk keeps at most {max}")]
    TooLarge {
        /// The encoded size.
        len: usize,
        /// A copy's payload room.
        max: u64,
    },
    /// An entry whose path is absolute, empty or climbs (`..`).
    #[error("entry path {path:?} is not a plain relative path")]
    UnsafePath {
        /// The path.
        path: String,
    },
    /// An entry path that is not UTF-8.
    #[error("entry path is not UTF-8")]
    EntryNotUtf8,
    /// A length that runs past the payload.
    #[error("entry runs past the payload")]
    Truncated,
}

fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| StateError::Io { what, path, source }.into()
}

/// Files never kept on the disk: time. The BMC is the time authority for a
/// node whose state comes off the disk — a planted far-future floor would
/// otherwise expire every piece of metadata and, pushed to the BMC's clock,
/// outlive a wiped disk.
pub const NOT_KEPT: [&str; 2] = ["trusted-time", "tough/latest_known_time.json"];

/// Every regular file below `dir`, as (relative path, bytes), sorted.
fn collect(dir: &Path, rel: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir.join(rel))
        .map_err(io("reading", dir.join(rel)))?
        .collect::<std::io::Result<_>>()
        .map_err(io("reading", dir.join(rel)))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let ty = e.file_type().map_err(io("reading", &name))?;
        if ty.is_dir() {
            collect(dir, &name, out)?;
        } else if ty.is_file() {
            let path = name
                .to_str()
                .ok_or_else(|| StateError::NotUtf8 { path: name.clone() })?
                .to_owned();
            if NOT_KEPT.contains(&path.as_str()) {
                continue;
            }
            let data = std::fs::read(dir.join(&name)).map_err(io("reading", &name))?;
            out.push((path, data));
        }
    }
    Ok(())
}

/// The encoded payload of a state directory.
pub fn encode_dir(dir: &Path) -> Result<Vec<u8>> {
    let mut files = Vec::new();
    collect(dir, Path::new(""), &mut files)?;
    let mut p = Vec::new();
    for (path, data) in files {
        let len = u16::try_from(path.len())
            .map_err(|_| StateError::PathTooLong { path: path.clone() })?;
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(path.as_bytes());
        let dlen = u32::try_from(data.len())
            .map_err(|_| StateError::FileTooLarge { path: path.clone() })?;
        p.extend_from_slice(&dlen.to_le_bytes());
        p.extend_from_slice(&data);
    }
    if p.len() as u64 > COPY_LEN - HEAD as u64 {
        return Err(StateError::TooLarge {
            len: p.len(),
            max: COPY_LEN - HEAD as u64,
        }
        .into());
    }
    Ok(p)
}

/// A relative path of plain components, or why not.
fn safe_path(p: &str) -> Result<PathBuf> {
    let path = PathBuf::from(p);
    if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(StateError::UnsafePath { path: p.to_owned() }.into());
    }
    Ok(path)
}

/// Splits a payload into its entries (checking every length and path).
pub fn decode(payload: &[u8]) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = payload;
    let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        if rest.len() < n {
            return Err(StateError::Truncated.into());
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    while !rest.is_empty() {
        let n = u16::from_le_bytes(take(&mut rest, 2)?.try_into().expect("2 bytes")) as usize;
        let path = String::from_utf8(take(&mut rest, n)?).map_err(|_| StateError::EntryNotUtf8)?;
        let path = safe_path(&path)?;
        let d = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        out.push((path, take(&mut rest, d)?));
    }
    Ok(out)
}

fn crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// One copy: (generation, payload) if it is intact.
fn read_copy(disk: &File, i: usize) -> Option<(u64, Vec<u8>)> {
    let mut head = [0u8; HEAD];
    disk.read_exact_at(&mut head, OFFSETS[i]).ok()?;
    if head[0..8] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let n = u32::from_le_bytes(head[16..20].try_into().ok()?) as u64;
    if n > COPY_LEN - HEAD as u64 {
        return None;
    }
    let mut payload = vec![0u8; n as usize];
    disk.read_exact_at(&mut payload, OFFSETS[i] + HEAD as u64)
        .ok()?;
    let want = u32::from_le_bytes(head[20..24].try_into().ok()?);
    (crc(&head[..20], &payload) == want).then_some((generation, payload))
}

/// The newest intact copy: (generation, payload).
pub fn load(disk: &File) -> Option<(u64, Vec<u8>)> {
    (0..2)
        .filter_map(|i| read_copy(disk, i))
        .max_by_key(|c| c.0)
}

/// Saves `dir` into the older copy; returns the new generation.
pub fn save(disk: &File, dir: &Path) -> Result<u64> {
    let payload = encode_dir(dir)?;
    let copies = [read_copy(disk, 0), read_copy(disk, 1)];
    let newest = copies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.as_ref().map(|(g, p)| (i, *g, p)))
        .max_by_key(|c| c.1);
    if let Some((_, _, p)) = newest {
        if *p == payload {
            // Unchanged: no write, no wear.
            return Ok(newest.map_or(0, |c| c.1));
        }
    }
    let (target, generation) = match newest {
        Some((i, g, _)) => (1 - i, g + 1),
        None => (0, 1),
    };
    let mut head = [0u8; HEAD];
    head[0..8].copy_from_slice(&MAGIC);
    head[8..16].copy_from_slice(&generation.to_le_bytes());
    head[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let c = crc(&head[..20], &payload);
    head[20..24].copy_from_slice(&c.to_le_bytes());
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&payload);
    disk.write_all_at(&bytes, OFFSETS[target])
        .map_err(|source| StateError::Copy {
            what: "writing",
            copy: target,
            source,
        })?;
    disk.sync_data().map_err(|source| StateError::Copy {
        what: "syncing",
        copy: target,
        source,
    })?;
    Ok(generation)
}

/// Fills an empty `dir` from the disk's newest copy. Returns the number of
/// files restored (0: no copy on the disk, or `dir` was not empty).
pub fn restore(disk: &File, dir: &Path) -> Result<usize> {
    let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Ok(0);
    }
    let Some((_, payload)) = load(disk) else {
        return Ok(0);
    };
    let entries: Vec<_> = decode(&payload)?
        .into_iter()
        .filter(|(p, _)| !NOT_KEPT.iter().any(|n| p == Path::new(n)))
        .collect();
    for (path, data) in &entries {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        // 0600 for every file: the node's key is among them.
        racklet_fsio::write_atomic(&to, data, racklet_fsio::Mode::Secret)?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> (tempfile::TempDir, File) {
        let t = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(t.path().join("disk"))
            .unwrap();
        f.set_len(SLOTS_OFFSET).unwrap();
        (t, f)
    }

    fn state(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, d) in files {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, d).unwrap();
        }
        t
    }

    #[test]
    fn a_saved_directory_comes_back_into_an_empty_one_only() {
        let (_t, d) = disk();
        let s = state(&[
            ("trusted/5.targets.json", "t5"),
            ("tough/timestamp.json", "ts"),
            ("trusted-time", "2099-01-01T00:00:00Z"),
        ]);
        assert_eq!(save(&d, s.path()).unwrap(), 1);
        assert_eq!(save(&d, s.path()).unwrap(), 1, "unchanged: not rewritten");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(restore(&d, empty.path()).unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(empty.path().join("trusted/5.targets.json")).unwrap(),
            "t5"
        );
        // Time is never kept: the BMC is the clock.
        assert!(!empty.path().join("trusted-time").exists());
        let busy = state(&[("trusted/1.root.json", "mine")]);
        assert_eq!(restore(&d, busy.path()).unwrap(), 0);
        assert_eq!(
            std::fs::read_to_string(busy.path().join("trusted/1.root.json")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_torn_save_leaves_the_previous_copy() {
        let (_t, d) = disk();
        save(&d, state(&[("trusted/timestamp.json", "old")]).path()).unwrap();
        let g = save(&d, state(&[("trusted/timestamp.json", "new")]).path()).unwrap();
        assert_eq!(g, 2);
        // Tear the newest copy (copy 1) in its payload: copy 0 wins.
        d.write_all_at(b"XX", OFFSETS[1] + HEAD as u64 + 3).unwrap();
        let (g, p) = load(&d).unwrap();
        assert_eq!(g, 1);
        assert_eq!(decode(&p).unwrap()[0].1, b"old");
        // The next save goes into the torn copy, never over the good one.
        assert_eq!(
            save(&d, state(&[("trusted-time", "newer")]).path()).unwrap(),
            2
        );
        assert_eq!(read_copy(&d, 0).unwrap().0, 1);
    }

    #[test]
    fn hostile_entries_are_refused() {
        for path in ["../etc/passwd", "/etc/passwd", "a/../../b", ""] {
            let mut p = Vec::new();
            p.extend_from_slice(&(path.len() as u16).to_le_bytes());
            p.extend_from_slice(path.as_bytes());
            p.extend_from_slice(&1u32.to_le_bytes());
            p.push(b'x');
            assert!(decode(&p).is_err(), "{path}");
        }
        // Lengths that run past the payload.
        assert!(decode(&[5, 0, b'a']).is_err());
        assert!(decode(&[1, 0, b'a', 9, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn a_state_too_large_for_the_area_is_an_error_not_a_truncation() {
        let (_t, d) = disk();
        let big = "x".repeat(COPY_LEN as usize);
        let e = save(&d, state(&[("big", &big)]).path()).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        assert!(load(&d).is_none());
    }
}
