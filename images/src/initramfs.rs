//! A deterministic initramfs: a `newc` cpio archive whose bytes depend only
//! on its contents.
//!
//! Entries are sorted by path, parent directories are created implicitly
//! (mode 0755), owners are root, every mtime is `SOURCE_DATE_EPOCH` (or 0),
//! and inode numbers count up in that order. Building the same files twice
//! gives the same bytes.

use std::collections::BTreeMap;
use std::io::Write;

use crate::{Error, Result};

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { mode: u32, data: Vec<u8> },
}

/// An initramfs being assembled.
#[derive(Debug, Clone, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Node>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

impl Initramfs {
    /// An empty archive.
    pub fn new() -> Initramfs {
        Initramfs::default()
    }

    /// Adds a regular file at an absolute path (`/etc/motd`), creating its
    /// parent directories.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let rel = path.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(Error::Initramfs(format!("bad path `{path}`")));
        }
        let mut parent = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(p);
            match self.entries.get(&parent) {
                Some(Node::File { .. }) => {
                    return Err(Error::Initramfs(format!(
                        "`/{parent}` is a file, so `{path}` cannot be under it"
                    )))
                }
                _ => {
                    self.entries.insert(parent.clone(), Node::Dir);
                }
            }
        }
        if self.entries.contains_key(rel) {
            return Err(Error::Initramfs(format!("`{path}` added twice")));
        }
        self.entries.insert(
            rel.to_owned(),
            Node::File {
                mode: mode & 0o7777,
                data,
            },
        );
        Ok(())
    }

    /// Writes the archive. `mtime` is the timestamp of every entry.
    pub fn write(&self, mut out: impl Write, mtime: u32) -> Result<()> {
        let io = |e: std::io::Error| Error::Initramfs(format!("writing the archive: {e}"));
        for (ino, (path, node)) in self.entries.iter().enumerate() {
            let (mode, data): (u32, &[u8]) = match node {
                Node::Dir => (S_IFDIR | 0o755, &[]),
                Node::File { mode, data } => (S_IFREG | mode, data),
            };
            let len = u32::try_from(data.len())
                .map_err(|_| Error::Initramfs(format!("`/{path}` is over 4 GiB")))?;
            let mut w = cpio::newc::Builder::new(path)
                .ino(ino as u32 + 1)
                .mode(mode)
                .uid(0)
                .gid(0)
                .nlink(if matches!(node, Node::Dir) { 2 } else { 1 })
                .mtime(mtime)
                .write(&mut out, len);
            w.write_all(data).map_err(io)?;
            w.finish().map_err(io)?;
        }
        cpio::newc::trailer(&mut out).map_err(io)?;
        Ok(())
    }

    /// The archive as bytes.
    pub fn to_bytes(&self, mtime: u32) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write(&mut v, mtime)?;
        Ok(v)
    }
}

/// The mtime for reproducible builds: `SOURCE_DATE_EPOCH` if set and valid,
/// otherwise 0 (1970-01-01).
pub fn source_date_epoch() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            Error::Initramfs(format!(
                "SOURCE_DATE_EPOCH=`{v}` is not a number of seconds (fits in 32 bits)"
            ))
        }),
        Err(_) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_adding_does_not_change_the_bytes() {
        let mut a = Initramfs::new();
        a.add_file("/init", 0o755, b"#!init".to_vec()).unwrap();
        a.add_file("/etc/racklet/root.json", 0o644, b"{}".to_vec())
            .unwrap();
        a.add_file("/etc/motd", 0o644, b"hi".to_vec()).unwrap();
        let mut b = Initramfs::new();
        b.add_file("/etc/motd", 0o644, b"hi".to_vec()).unwrap();
        b.add_file("/etc/racklet/root.json", 0o644, b"{}".to_vec())
            .unwrap();
        b.add_file("/init", 0o755, b"#!init".to_vec()).unwrap();
        assert_eq!(a.to_bytes(7).unwrap(), b.to_bytes(7).unwrap());
        assert_ne!(a.to_bytes(7).unwrap(), a.to_bytes(8).unwrap());
    }

    #[test]
    fn archive_reads_back_with_directories_first() {
        let mut a = Initramfs::new();
        a.add_file("/etc/racklet/modules", 0o644, b"x\n".to_vec())
            .unwrap();
        a.add_file("/init", 0o755, vec![1, 2, 3]).unwrap();
        let bytes = a.to_bytes(1_700_000_000).unwrap();
        let mut r = &bytes[..];
        let mut seen = Vec::new();
        loop {
            let reader = cpio::NewcReader::new(r).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                break;
            }
            seen.push((
                e.name().to_owned(),
                e.mode(),
                e.uid(),
                e.mtime(),
                e.file_size(),
            ));
            r = reader.finish().unwrap();
        }
        assert_eq!(
            seen,
            [
                ("etc".into(), 0o040755, 0, 1_700_000_000, 0),
                ("etc/racklet".into(), 0o040755, 0, 1_700_000_000, 0),
                ("etc/racklet/modules".into(), 0o100644, 0, 1_700_000_000, 2),
                ("init".into(), 0o100755, 0, 1_700_000_000, 3),
            ]
        );
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused() {
        let mut a = Initramfs::new();
        a.add_file("/init", 0o755, vec![]).unwrap();
        assert!(a.add_file("/init", 0o755, vec![]).is_err());
        assert!(a.add_file("/init/x", 0o644, vec![]).is_err());
        assert!(a.add_file("/../x", 0o644, vec![]).is_err());
        assert!(a.add_file("/", 0o644, vec![]).is_err());
    }
}
