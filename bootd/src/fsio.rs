//! Atomic file writes: write a temporary file beside the target, fsync it,
//! rename it over the target, fsync the directory. A crash at any point leaves
//! either the old file or the new one, never a torn one. The writing itself
//! is `imgsign::fsio`'s (one implementation for the whole chain); this module
//! gives it bootd's modes and errors.

use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// Who may read the file written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0644: certificates, state records.
    Public,
    /// 0600: private keys.
    Secret,
}

/// Atomically replaces `path` with `bytes` (creating its directory).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    create_parent(path)?;
    imgsign::fsio::write_atomic(path, bytes, mode.bits()).map_err(|e| from_imgsign(path, e))
}

/// Like [`write_atomic`], but never replaces an existing file, even one
/// that appears meanwhile (a key is never overwritten).
pub fn write_new(path: &Path, bytes: &[u8], mode: Mode) -> Result<()> {
    create_parent(path)?;
    imgsign::fsio::write_new(path, bytes, mode.bits()).map_err(|e| from_imgsign(path, e))
}

/// The directory `path` goes in, created if missing.
fn create_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
        path: dir.to_owned(),
        source,
    })
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        }
    }
}

/// imgsign's write errors as bootd's, naming the same file.
fn from_imgsign(path: &Path, e: imgsign::Error) -> Error {
    match e {
        imgsign::Error::AlreadyExists { path } => Error::AlreadyExists { path },
        imgsign::Error::Write { path, source } => Error::WriteFile { path, source },
        other => Error::WriteFile {
            path: path.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// Reads a whole file, naming it on error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole UTF-8 file, naming it on error.
pub fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secret_files_are_0600_and_write_new_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        write_new(&p, b"one", Mode::Secret).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_new(&p, b"two", Mode::Secret).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"three", Mode::Secret).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
