//! Crash-safe file writing, one implementation for the whole chain: every
//! file imgsign publishes, every record bootd keeps and every piece of
//! trusted state stage1 persists is written to a temporary file in the same
//! directory, fsynced, renamed over its final name, and the directory is
//! fsynced. A reader (or a power cut) sees the old file or the new one,
//! never a mix.
//!
//! Owned by `imgsign/` (publishing a repository atomically is its concept);
//! a crate of its own so that the node's code (stage1) writes the same way
//! without linking the signer.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! let p = dir.path().join("state/trusted-time");
//! racklet_fsio::write_atomic(&p, b"2026-12-03T12:00:00Z", racklet_fsio::Mode::Public)?;
//! assert_eq!(std::fs::read(&p).unwrap(), b"2026-12-03T12:00:00Z");
//! # Ok::<(), racklet_fsio::Error>(())
//! ```
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file operation that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Creating, writing, syncing or renaming a file (or its directory) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// [`write_new`] found the file already there.
    #[error("{path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who may read a file written here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0644: metadata, certificates, state records.
    Public,
    /// 0600: private keys and other secrets.
    Secret,
}

impl Mode {
    /// The permission bits.
    pub const fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

/// A temporary file next to its destination, removed on drop unless
/// [`TempFile::persist`] moved it into place.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates `.<name>.tmp-<pid>-<n>` beside `dest` with the given mode.
    pub fn beside(dest: &Path, mode: Mode) -> Result<TempFile> {
        let dir = parent(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for n in 0..1000u32 {
            let path = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode.bits())
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::Write { path, source }),
            }
        }
        Err(Error::Write {
            path: dest.to_owned(),
            source: io::Error::other("could not create a temporary file"),
        })
    }

    /// The open file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("TempFile used after persist")
    }

    /// The temporary path (for error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the data, renames it over `dest` and fsyncs the directory.
    pub fn persist(mut self, dest: &Path) -> Result<()> {
        let file = self.file.take().expect("TempFile persisted twice");
        file.sync_all().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })?;
        drop(file);
        fs::rename(&self.path, dest).map_err(|source| Error::Write {
            path: dest.to_owned(),
            source,
        })?;
        // The rename happened: nothing left to clean up.
        self.path = PathBuf::new();
        sync_dir(parent(dest))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: a leftover temporary file is harmless (never
            // referenced by metadata) and is named so it is easy to spot.
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// fsyncs a directory so that renames in it survive a power cut.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })
}

/// Creates the directory `dest` goes in, if missing.
fn create_parent(dest: &Path) -> Result<()> {
    let dir = parent(dest);
    fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Atomically replaces (or creates) `dest` with `bytes`, creating its
/// directory if missing.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    create_parent(dest)?;
    let mut tmp = TempFile::beside(dest, mode)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file().write_all(bytes).map_err(|source| Error::Write {
        path: tmp_path,
        source,
    })?;
    tmp.persist(dest)
}

/// Creates `dest` with `bytes`, failing if it exists (even if it appears
/// while this runs); atomic like [`write_atomic`] (used for secrets: a key
/// is never half-written and never overwritten).
pub fn write_new(dest: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    create_parent(dest)?;
    if dest.exists() {
        return Err(Error::AlreadyExists {
            path: dest.to_owned(),
        });
    }
    let mut tmp = TempFile::beside(dest, mode)?;
    let tmp_path = tmp.path().to_owned();
    tmp.file().write_all(bytes).map_err(|source| Error::Write {
        path: tmp_path.clone(),
        source,
    })?;
    tmp.file().sync_all().map_err(|source| Error::Write {
        path: tmp_path.clone(),
        source,
    })?;
    // link(2) fails if dest appeared meanwhile: never overwrite a key.
    fs::hard_link(&tmp_path, dest).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            Error::AlreadyExists {
                path: dest.to_owned(),
            }
        } else {
            Error::Write {
                path: dest.to_owned(),
                source,
            }
        }
    })?;
    drop(tmp);
    sync_dir(parent(dest))
}

/// Reads a whole (small) file, naming it on error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole UTF-8 file, naming it on error.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Length and SHA-256 of a stream, computed in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest256 {
    /// Number of bytes.
    pub length: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

impl Digest256 {
    /// Lower-case hex of the SHA-256.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Buffer size for streaming copies: large enough to amortise syscalls,
/// small enough that memory stays flat whatever the image size.
pub const CHUNK: usize = 1 << 20;

/// Reads `src` to its end, writing every byte to `dst` (if any) and hashing it
/// in the same pass; `progress` is called with the bytes done so far.
///
/// Reading and hashing run on this thread while a second thread writes, so
/// the copy costs little more than the hash. Memory is bounded by a few
/// [`CHUNK`]s, whatever the size of the input.
pub fn copy_and_hash(
    src: &mut dyn Read,
    dst: Option<&mut (dyn Write + Send)>,
    progress: &mut dyn FnMut(u64),
) -> io::Result<Digest256> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    match dst {
        None => {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = read_full(src, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                length += n as u64;
                progress(length);
            }
        }
        Some(dst) => {
            // Two buffers travel between the reader and the writer thread.
            let (to_writer, from_reader) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(2);
            let (to_reader, from_writer) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
            for _ in 0..3 {
                to_reader.send(vec![0u8; CHUNK]).expect("channel open");
            }
            std::thread::scope(|s| -> io::Result<()> {
                let writer = s.spawn(move || -> io::Result<()> {
                    for (buf, n) in from_reader {
                        dst.write_all(&buf[..n])?;
                        // The reader may have stopped already; that is fine.
                        let _ = to_reader.send(buf);
                    }
                    dst.flush()
                });
                let read_result = (|| -> io::Result<()> {
                    loop {
                        let Ok(mut buf) = from_writer.recv() else {
                            // The writer stopped early: its error is reported below.
                            return Ok(());
                        };
                        let n = read_full(src, &mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        hasher.update(&buf[..n]);
                        length += n as u64;
                        progress(length);
                        if to_writer.send((buf, n)).is_err() {
                            return Ok(());
                        }
                    }
                })();
                drop(to_writer);
                let write_result = writer
                    .join()
                    .map_err(|_| io::Error::other("writer thread panicked"))?;
                read_result?;
                write_result
            })?;
        }
    }
    Ok(Digest256 {
        length,
        sha256: hasher.finalize().into(),
    })
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_and_hash_matches_one_shot_hash() {
        for len in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            let mut calls = 0;
            let d = copy_and_hash(&mut &data[..], Some(&mut out), &mut |_| calls += 1).unwrap();
            assert_eq!(out, data);
            assert_eq!(d.length, len as u64);
            assert_eq!(d.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
            let d2 = copy_and_hash(&mut &data[..], None, &mut |_| ()).unwrap();
            assert_eq!(d, d2);
            assert_eq!(calls, len.div_ceil(CHUNK));
        }
    }

    #[test]
    fn copy_reports_writer_errors() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = vec![1u8; 5 * CHUNK];
        let err = copy_and_hash(&mut &data[..], Some(&mut Full), &mut |_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_new(&p, b"one", Mode::Secret).unwrap();
        assert!(matches!(
            write_new(&p, b"two", Mode::Secret),
            Err(Error::AlreadyExists { .. })
        ));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn secret_files_are_0600_and_parents_are_created() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/k.pem");
        write_new(&p, b"one", Mode::Secret).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"two", Mode::Secret).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let q = dir.path().join("c/pub.pem");
        write_atomic(&q, b"x", Mode::Public).unwrap();
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn write_atomic_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", Mode::Public).unwrap();
        write_atomic(&p, b"two", Mode::Public).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
