//! Little helpers shared by the request and response codecs.

use crate::{Error, MAX_BLOCK};

pub(crate) fn need(data: &[u8], len: usize) -> Result<(), Error> {
    if data.len() == len {
        Ok(())
    } else {
        Err(Error::Length {
            expected: len,
            got: data.len(),
        })
    }
}

pub(crate) fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

pub(crate) fn u64_at(d: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[at..at + 8]);
    u64::from_le_bytes(b)
}

pub(crate) fn flag(b: u8, field: &'static str) -> Result<bool, Error> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(Error::OutOfRange {
            field,
            value: v.into(),
        }),
    }
}

/// A small cursor that writes into a block buffer.
pub(crate) struct Put<'b> {
    pub(crate) buf: &'b mut [u8; MAX_BLOCK],
    pub(crate) len: usize,
}

impl Put<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf[self.len] = v;
        self.len += 1;
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf[self.len..self.len + v.len()].copy_from_slice(v);
        self.len += v.len();
    }
}
