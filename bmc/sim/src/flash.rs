//! NOR flash in a file: a NOR-accurate [`MemFlash`] in memory, written
//! through to the file after every program and erase, so a simulated BMC
//! restarted on the same file finds what a real one would find in its flash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use racklet_bmc_core::memflash::{MemFlash, MemFlashError, SECTOR, WRITE_SIZE};

/// Why a flash file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlashFileError {
    /// Opening, reading or creating the file failed.
    #[error("flash file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file exists with another size.
    #[error("flash file {path} is {len} bytes, expected {expected}")]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The flash size.
        expected: usize,
    },
}

/// `N` bytes of NOR flash backed by a file.
#[derive(Debug)]
pub struct FileFlash<const N: usize> {
    mem: Box<MemFlash<N>>,
    file: File,
}

impl<const N: usize> FileFlash<N> {
    /// Opens `path`, creating an erased flash file if it does not exist.
    pub fn open(path: &Path) -> Result<Self, FlashFileError> {
        let io = |source| FlashFileError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut image = vec![0xFFu8; N];
        if len == 0 {
            file.write_all(&image).map_err(io)?;
            file.sync_data().map_err(io)?;
        } else if len != N as u64 {
            return Err(FlashFileError::Size {
                path: path.to_owned(),
                len,
                expected: N,
            });
        } else {
            file.read_exact(&mut image).map_err(io)?;
        }
        let image: Box<[u8; N]> = image.into_boxed_slice().try_into().expect("length N");
        Ok(FileFlash {
            mem: Box::new(MemFlash::from_image(&image)),
            file,
        })
    }

    fn mirror(&mut self, offset: usize, len: usize) -> Result<(), MemFlashError> {
        let bytes = &self.mem.image()[offset..offset + len];
        let r = self
            .file
            .seek(SeekFrom::Start(offset as u64))
            .and_then(|_| self.file.write_all(bytes))
            .and_then(|_| self.file.sync_data());
        // A host I/O failure is reported like a flash failure: the store
        // then keeps the old state.
        r.map_err(|_| MemFlashError::PowerCut)
    }
}

impl<const N: usize> ErrorType for FileFlash<N> {
    type Error = MemFlashError;
}

impl<const N: usize> ReadNorFlash for FileFlash<N> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.mem.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> NorFlash for FileFlash<N> {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = SECTOR;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.mem.erase(from, to)?;
        self.mirror(from as usize, (to - from) as usize)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.mem.write(offset, bytes)?;
        self.mirror(offset as usize, bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reach_the_file_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        let mut f = FileFlash::<{ 2 * SECTOR }>::open(&p).unwrap();
        f.write(8, &[1, 2, 3, 4]).unwrap();
        drop(f);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 2 * SECTOR);
        assert_eq!(&bytes[8..12], &[1, 2, 3, 4]);
        let mut f = FileFlash::<{ 2 * SECTOR }>::open(&p).unwrap();
        let mut b = [0u8; 4];
        f.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        // Still NOR: no write over programmed bytes.
        assert_eq!(f.write(8, &[0; 4]), Err(MemFlashError::NotErased));
    }

    #[test]
    fn a_file_of_the_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, [0u8; 100]).unwrap();
        assert!(matches!(
            FileFlash::<{ 2 * SECTOR }>::open(&p),
            Err(FlashFileError::Size { len: 100, .. })
        ));
    }
}
