//! A disk that loses power: the in-memory model of a block device with a
//! volatile write cache, for crash injection (like embassy-boot's `MemFlash`).
//!
//! Reads see every write. `sync` makes earlier writes durable. After the
//! `budget`-th operation (write or sync) the power is cut: that operation and
//! every later one fail, and [`CrashDisk::after_power_loss`] gives what the
//! platters hold: the durable bytes plus an arbitrary subset (chosen by
//! `seed`) of the unsynced writes, the last one of them torn at a 512-byte
//! sector boundary — the cache may reorder and tear writes.
#![allow(dead_code)]

use std::io;

use stage1::slots::Disk;

#[derive(Debug, Clone)]
pub struct CrashDisk {
    durable: Vec<u8>,
    cache: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    pub ops: usize,
    budget: Option<usize>,
    dead: bool,
    /// Writes ending past this offset fail with ENOSPC (a full disk).
    pub enospc_after: Option<u64>,
}

impl CrashDisk {
    pub fn new(len: usize) -> CrashDisk {
        CrashDisk {
            durable: vec![0; len],
            cache: vec![0; len],
            pending: Vec::new(),
            ops: 0,
            budget: None,
            dead: false,
            enospc_after: None,
        }
    }

    /// A disk holding exactly `bytes`, durable.
    pub fn from_bytes(bytes: Vec<u8>) -> CrashDisk {
        let mut d = CrashDisk::new(0);
        d.durable = bytes.clone();
        d.cache = bytes;
        d
    }

    /// Cut the power at the `n`-th operation from now (0: the next one).
    pub fn cut_power_after(&mut self, n: usize) {
        self.budget = Some(self.ops + n);
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// What survives the power cut.
    pub fn after_power_loss(&self, seed: u64) -> Vec<u8> {
        let mut img = self.durable.clone();
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let n = self.pending.len();
        for (i, (off, data)) in self.pending.iter().enumerate() {
            if next() % 2 == 0 {
                continue;
            }
            let len = if i + 1 == n && data.len() > 512 {
                // torn: a whole number of sectors
                (next() as usize % (data.len() / 512)) * 512
            } else {
                data.len()
            };
            img[*off as usize..*off as usize + len].copy_from_slice(&data[..len]);
        }
        img
    }

    /// The durable bytes (no power loss).
    pub fn durable(&self) -> Vec<u8> {
        self.durable.clone()
    }

    fn tick(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("power lost"));
        }
        if Some(self.ops) == self.budget {
            self.dead = true;
            return Err(io::Error::other("power lost"));
        }
        self.ops += 1;
        Ok(())
    }
}

impl Disk for CrashDisk {
    fn size(&mut self) -> io::Result<u64> {
        Ok(self.cache.len() as u64)
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("power lost"));
        }
        let end = off as usize + buf.len();
        if end > self.cache.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&self.cache[off as usize..end]);
        Ok(())
    }
    fn write_at(&mut self, off: u64, buf: &[u8]) -> io::Result<()> {
        self.tick()?;
        let end = off as usize + buf.len();
        if self.enospc_after.is_some_and(|l| end as u64 > l) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        if end > self.cache.len() {
            return Err(io::Error::other("write past the end of the disk"));
        }
        self.cache[off as usize..end].copy_from_slice(buf);
        self.pending.push((off, buf.to_vec()));
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.tick()?;
        for (off, data) in self.pending.drain(..) {
            self.durable[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}
