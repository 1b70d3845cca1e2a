//! The Arm CMSDK APB UART as the MPS2 boards (and QEMU) have it.
//!
//! | offset | register | bits used |
//! |---|---|---|
//! | 0x00 | DATA | byte in/out |
//! | 0x04 | STATE | bit 0 TX full, bit 1 RX full |
//! | 0x08 | CTRL | bit 0 TX enable, bit 1 RX enable |
//! | 0x10 | BAUDDIV | divisor (≥ 16) |

use core::ptr::{read_volatile, write_volatile};

/// UART0 (the protocol link).
pub const UART0: usize = 0x4000_4000;
/// UART1 (the console).
pub const UART1: usize = 0x4000_5000;

/// One CMSDK UART.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables TX and RX of the UART at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a CMSDK APB UART that nothing else uses.
    pub unsafe fn new(base: usize) -> Uart {
        let u = Uart { base };
        // SAFETY: the caller guarantees `base` is a CMSDK UART; BAUDDIV and
        // CTRL are plain read/write registers.
        unsafe {
            write_volatile((base + 0x10) as *mut u32, 16);
            write_volatile((base + 0x08) as *mut u32, 0b11);
        }
        u
    }

    fn state(&self) -> u32 {
        // SAFETY: STATE is a read-only register of the UART owned by `self`.
        unsafe { read_volatile((self.base + 0x04) as *const u32) }
    }

    /// A received byte, if one is waiting.
    pub fn read(&mut self) -> Option<u8> {
        if self.state() & 0b10 == 0 {
            return None;
        }
        // SAFETY: DATA of the UART owned by `self`; reading pops the RX byte.
        Some(unsafe { read_volatile(self.base as *const u32) } as u8)
    }

    /// Sends one byte, waiting while TX is full.
    pub fn write_byte(&mut self, b: u8) {
        while self.state() & 0b01 != 0 {}
        // SAFETY: DATA of the UART owned by `self`; writing queues a TX byte.
        unsafe { write_volatile(self.base as *mut u32, u32::from(b)) }
    }

    /// Sends all bytes.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}
