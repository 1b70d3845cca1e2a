//! A NOR flash in RAM that behaves like the real part, and can lose power.
//!
//! NOR rules it enforces: erased bytes read `0xFF`; a write can only clear
//! bits, so writing a byte that is not erased is refused (embedded-storage
//! leaves that undefined; being strict catches store bugs); writes and reads
//! must be aligned to [`WRITE_SIZE`]/[`READ_SIZE`]; erases cover whole
//! [`SECTOR`]s.
//!
//! Power cuts: [`MemFlash::cut_power_at`]`(n)` makes the n-th program or
//! erase operation from now (0-based) fail half-way — a write programs only
//! its first half of words, an erase resets only the first half of each
//! sector — and every operation after it fail, until [`MemFlash::restore_power`].
//!
//! The firmware uses the same type as its (RAM) flash; the tests use the
//! power cuts.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Sector (erase unit) size.
pub const SECTOR: usize = 4096;
/// Write granularity.
pub const WRITE_SIZE: usize = 4;
/// Read granularity.
pub const READ_SIZE: usize = 1;

/// Why a [`MemFlash`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemFlashError {
    /// Misaligned offset or length.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// A write to bytes that are not erased.
    NotErased,
    /// The power was cut.
    PowerCut,
}

impl NorFlashError for MemFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            MemFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            MemFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            MemFlashError::NotErased | MemFlashError::PowerCut => NorFlashErrorKind::Other,
        }
    }
}

/// `N` bytes of NOR flash (`N` a multiple of [`SECTOR`]).
#[derive(Clone, Debug)]
pub struct MemFlash<const N: usize> {
    mem: [u8; N],
    /// Program/erase operations left before the power cut (`None`: no cut planned).
    cut_in: Option<usize>,
    dead: bool,
    /// Program and erase operations performed (including the one cut).
    pub ops: usize,
    /// Erases per sector (wear).
    pub erases: [u32; 64],
}

impl<const N: usize> Default for MemFlash<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MemFlash<N> {
    /// An erased flash.
    pub const fn new() -> Self {
        assert!(N.is_multiple_of(SECTOR) && N / SECTOR <= 64);
        MemFlash {
            mem: [0xFF; N],
            cut_in: None,
            dead: false,
            ops: 0,
            erases: [0; 64],
        }
    }

    /// A flash holding `image` (e.g. read back from a file).
    pub fn from_image(image: &[u8; N]) -> Self {
        let mut f = Self::new();
        f.mem.copy_from_slice(image);
        f
    }

    /// The raw contents.
    pub fn image(&self) -> &[u8; N] {
        &self.mem
    }

    /// The power fails during the `n`-th program/erase operation from now.
    pub fn cut_power_at(&mut self, n: usize) {
        self.cut_in = Some(n);
    }

    /// Power is back: operations work again (contents stay as the cut left them).
    pub fn restore_power(&mut self) {
        self.dead = false;
        self.cut_in = None;
    }

    /// True after a cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Counts one operation; true when this one is the one that is cut.
    fn tick(&mut self) -> Result<bool, MemFlashError> {
        if self.dead {
            return Err(MemFlashError::PowerCut);
        }
        self.ops += 1;
        match self.cut_in {
            Some(0) => {
                self.dead = true;
                self.cut_in = None;
                Ok(true)
            }
            Some(n) => {
                self.cut_in = Some(n - 1);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    fn check(&self, offset: u32, len: usize, align: usize) -> Result<usize, MemFlashError> {
        let o = offset as usize;
        if !o.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(MemFlashError::NotAligned);
        }
        if o.checked_add(len).is_none_or(|end| end > N) {
            return Err(MemFlashError::OutOfBounds);
        }
        Ok(o)
    }
}

impl<const N: usize> ErrorType for MemFlash<N> {
    type Error = MemFlashError;
}

impl<const N: usize> ReadNorFlash for MemFlash<N> {
    const READ_SIZE: usize = READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.dead {
            return Err(MemFlashError::PowerCut);
        }
        let o = self.check(offset, bytes.len(), READ_SIZE)?;
        bytes.copy_from_slice(&self.mem[o..o + bytes.len()]);
        Ok(())
    }

    fn capacity(&self) -> usize {
        N
    }
}

impl<const N: usize> NorFlash for MemFlash<N> {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if to < from {
            return Err(MemFlashError::OutOfBounds);
        }
        let o = self.check(from, (to - from) as usize, SECTOR)?;
        let cut = self.tick()?;
        for s in (o..to as usize).step_by(SECTOR) {
            self.erases[s / SECTOR] += 1;
            let end = if cut { s + SECTOR / 2 } else { s + SECTOR };
            self.mem[s..end].fill(0xFF);
        }
        if cut {
            Err(MemFlashError::PowerCut)
        } else {
            Ok(())
        }
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let o = self.check(offset, bytes.len(), WRITE_SIZE)?;
        if self.mem[o..o + bytes.len()].iter().any(|&b| b != 0xFF) {
            return Err(MemFlashError::NotErased);
        }
        let cut = self.tick()?;
        let n = if cut {
            (bytes.len() / WRITE_SIZE / 2) * WRITE_SIZE
        } else {
            bytes.len()
        };
        for (m, b) in self.mem[o..o + n].iter_mut().zip(bytes) {
            *m &= *b;
        }
        if cut {
            Err(MemFlashError::PowerCut)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_rules() {
        let mut f = MemFlash::<{ 2 * SECTOR }>::new();
        assert_eq!(f.write(1, &[0; 4]), Err(MemFlashError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(MemFlashError::NotAligned));
        assert_eq!(f.write(8192, &[0; 4]), Err(MemFlashError::OutOfBounds));
        f.write(0, &[0x0F, 1, 2, 3]).unwrap();
        assert_eq!(f.write(0, &[0xFF; 4]), Err(MemFlashError::NotErased));
        assert_eq!(f.erase(0, 100), Err(MemFlashError::NotAligned));
        f.erase(0, SECTOR as u32).unwrap();
        let mut b = [0u8; 4];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0xFF; 4]);
        assert_eq!(f.erases[0], 1);
    }

    #[test]
    fn a_cut_write_programs_half_and_then_everything_fails() {
        let mut f = MemFlash::<SECTOR>::new();
        f.cut_power_at(1);
        f.write(0, &[0; 8]).unwrap();
        assert_eq!(f.write(8, &[0; 8]), Err(MemFlashError::PowerCut));
        assert_eq!(&f.image()[8..16], &[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(f.read(0, &mut [0; 4]), Err(MemFlashError::PowerCut));
        assert_eq!(f.erase(0, SECTOR as u32), Err(MemFlashError::PowerCut));
        f.restore_power();
        f.read(0, &mut [0; 4]).unwrap();
    }

    #[test]
    fn a_cut_erase_leaves_half_the_sector() {
        let mut f = MemFlash::<SECTOR>::new();
        f.write(0, &[0; SECTOR]).unwrap();
        f.cut_power_at(0);
        assert!(f.erase(0, SECTOR as u32).is_err());
        assert_eq!(f.image()[0], 0xFF);
        assert_eq!(f.image()[SECTOR - 1], 0);
    }
}
