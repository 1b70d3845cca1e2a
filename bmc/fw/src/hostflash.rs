//! NOR flash kept in RAM and mirrored to a file on the host through Arm
//! semihosting, so it survives a restart of the emulator.
//!
//! The MPS2 board as QEMU models it has no flash that persists (its "flash"
//! is RAM loaded from `-kernel`), and QEMU offers no pflash on mps2. So the
//! firmware keeps a NOR-accurate [`MemFlash`] in RAM (the same type the
//! power-cut tests use) and, after every successful program or erase,
//! writes the changed bytes to a host file with `SYS_SEEK` + `SYS_WRITE`.
//! At start it reads the file back. QEMU needs
//! `-semihosting-config enable=on,target=native`; the file is opened
//! relative to QEMU's working directory.

use cortex_m_semihosting::{nr, syscall};
use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use racklet_bmc_core::memflash::{MemFlash, MemFlashError};

/// A [`MemFlash`] mirrored to a host file.
pub struct HostFlash<const N: usize> {
    mem: MemFlash<N>,
    fd: Option<usize>,
}

fn open(name: &[u8], mode: usize) -> Option<usize> {
    // `name` must be NUL-terminated for SYS_OPEN; the length excludes the NUL.
    // SAFETY: SYS_OPEN reads `name.len() - 1` bytes from a live buffer.
    let fd = unsafe { syscall!(OPEN, name.as_ptr(), mode, name.len() - 1) };
    (fd as isize >= 0).then_some(fd)
}

impl<const N: usize> HostFlash<N> {
    /// Opens (or creates) the host file `name` (NUL-terminated) and loads it.
    /// Without semihosting the flash is RAM only (`persistent()` is false).
    pub fn open(name: &'static [u8]) -> HostFlash<N> {
        let mut mem = MemFlash::<N>::new();
        let fd = match open(name, nr::open::RW_BINARY) {
            Some(fd) => {
                let mut image = [0xFFu8; N];
                // SAFETY: SYS_READ writes at most N bytes into `image`.
                // A short or new file leaves the rest erased.
                let _not_read = unsafe { syscall!(READ, fd, image.as_mut_ptr(), N) };
                mem = MemFlash::from_image(&image);
                Some(fd)
            }
            None => open(name, nr::open::RW_TRUNC_BINARY),
        };
        let mut f = HostFlash { mem, fd };
        if fd.is_some() {
            // Make the file whole (a new file, or a short one).
            f.mirror(0, N);
        }
        f
    }

    /// True when changes reach the host file.
    pub fn persistent(&self) -> bool {
        self.fd.is_some()
    }

    fn mirror(&mut self, offset: usize, len: usize) {
        let Some(fd) = self.fd else { return };
        let bytes = &self.mem.image()[offset..offset + len];
        // SAFETY: SYS_SEEK takes plain integers; SYS_WRITE reads `len` bytes
        // from a live slice.
        let ok = unsafe {
            syscall!(SEEK, fd, offset) == 0 && syscall!(WRITE, fd, bytes.as_ptr(), bytes.len()) == 0
        };
        if !ok {
            // Keep running from RAM rather than stop the BMC.
            self.fd = None;
        }
    }
}

impl<const N: usize> ErrorType for HostFlash<N> {
    type Error = MemFlashError;
}

impl<const N: usize> ReadNorFlash for HostFlash<N> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.mem.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> NorFlash for HostFlash<N> {
    const WRITE_SIZE: usize = racklet_bmc_core::memflash::WRITE_SIZE;
    const ERASE_SIZE: usize = racklet_bmc_core::memflash::SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.mem.erase(from, to)?;
        self.mirror(from as usize, (to - from) as usize);
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.mem.write(offset, bytes)?;
        self.mirror(offset as usize, bytes.len());
        Ok(())
    }
}
