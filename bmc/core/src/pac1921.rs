//! A PAC1921-class high-side power monitor on I²C (`embedded-hal` 1.0).
//!
//! Registers used (Microchip PAC1921 datasheet, gains left at their 1×
//! defaults):
//!
//! | register | bytes | meaning |
//! |---|---|---|
//! | `0x10`–`0x11` | 2 | VBUS result, 10 bits left-justified (`raw >> 6`); full scale 32 V |
//! | `0x12`–`0x13` | 2 | VSENSE result, 10 bits left-justified; full scale 100 mV |
//! | `0xFD` | 1 | product ID, `0x5B` |
//! | `0xFE` | 1 | manufacturer ID, `0x5D` |
//!
//! The register pointer auto-increments, so one write-read fetches both
//! results. Current = VSENSE / R_sense.

use embedded_hal::i2c::I2c;

/// Register addresses.
pub mod reg {
    /// VBUS result, high byte.
    pub const VBUS: u8 = 0x10;
    /// Product ID.
    pub const PRODUCT_ID: u8 = 0xFD;
}

/// Expected product ID.
pub const PRODUCT_ID: u8 = 0x5B;
/// Expected manufacturer ID (Microchip).
pub const MANUFACTURER_ID: u8 = 0x5D;

/// A source of rail voltage and current.
pub trait PowerSensor {
    /// Bus error.
    type Error;
    /// One reading: (millivolts, milliamps).
    fn sample(&mut self) -> Result<(u32, u32), Self::Error>;
}

/// Why the monitor could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pac1921Error<E> {
    /// The bus transaction failed.
    #[error("I2C transaction failed: {0:?}")]
    Bus(E),
    /// The device at the address is not a PAC1921.
    #[error("not a PAC1921: product 0x{product:02x}, manufacturer 0x{manufacturer:02x}")]
    WrongDevice {
        /// Product ID read.
        product: u8,
        /// Manufacturer ID read.
        manufacturer: u8,
    },
}

/// The driver.
#[derive(Debug)]
pub struct Pac1921<I> {
    i2c: I,
    addr: u8,
    rsense_milliohm: u32,
}

impl<I: I2c> Pac1921<I> {
    /// Checks the device IDs at `addr`; `rsense_milliohm` is the shunt.
    pub fn new(mut i2c: I, addr: u8, rsense_milliohm: u32) -> Result<Self, Pac1921Error<I::Error>> {
        let mut id = [0u8; 2];
        i2c.write_read(addr, &[reg::PRODUCT_ID], &mut id)
            .map_err(Pac1921Error::Bus)?;
        if id != [PRODUCT_ID, MANUFACTURER_ID] {
            return Err(Pac1921Error::WrongDevice {
                product: id[0],
                manufacturer: id[1],
            });
        }
        Ok(Pac1921 {
            i2c,
            addr,
            rsense_milliohm: rsense_milliohm.max(1),
        })
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }
}

impl<I: I2c> PowerSensor for Pac1921<I> {
    type Error = Pac1921Error<I::Error>;

    fn sample(&mut self) -> Result<(u32, u32), Self::Error> {
        let mut b = [0u8; 4];
        self.i2c
            .write_read(self.addr, &[reg::VBUS], &mut b)
            .map_err(Pac1921Error::Bus)?;
        let vbus = u32::from(u16::from_be_bytes([b[0], b[1]]) >> 6);
        let vsense = u32::from(u16::from_be_bytes([b[2], b[3]]) >> 6);
        let millivolts = vbus * 32_000 / 1023;
        let microvolts = vsense * 100_000 / 1023;
        let milliamps = microvolts / self.rsense_milliohm;
        Ok((millivolts, milliamps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
    use std::vec;

    #[test]
    fn reads_ids_then_both_results_in_one_transaction() {
        // VBUS code 163 (≈ 5.1 V) and VSENSE code 307 (≈ 30 mV, 3 A over 10 mΩ),
        // both left-justified by 6 bits.
        let vbus: u16 = 163 << 6;
        let vsense: u16 = 307 << 6;
        let expectations = [
            Transaction::write_read(0x4C, vec![0xFD], vec![0x5B, 0x5D]),
            Transaction::write_read(
                0x4C,
                vec![0x10],
                vec![
                    (vbus >> 8) as u8,
                    vbus as u8,
                    (vsense >> 8) as u8,
                    vsense as u8,
                ],
            ),
        ];
        let i2c = Mock::new(&expectations);
        let mut pac = Pac1921::new(i2c, 0x4C, 10).unwrap();
        let (mv, ma) = pac.sample().unwrap();
        assert_eq!(mv, 163 * 32_000 / 1023); // 5098 mV
        assert_eq!(mv, 5098);
        assert_eq!(ma, 3000);
        pac.release().done();
    }

    #[test]
    fn refuses_another_device() {
        let expectations = [Transaction::write_read(0x4C, vec![0xFD], vec![0x12, 0x34])];
        let i2c = Mock::new(&expectations);
        let mut handle = i2c.clone();
        match Pac1921::new(i2c, 0x4C, 10) {
            Err(Pac1921Error::WrongDevice {
                product: 0x12,
                manufacturer: 0x34,
            }) => {}
            other => panic!("expected WrongDevice, got {other:?}"),
        }
        handle.done();
    }

    #[test]
    fn bus_errors_surface() {
        use embedded_hal::i2c::ErrorKind;
        let expectations = [
            Transaction::write_read(0x4C, vec![0xFD], vec![0x5B, 0x5D]),
            Transaction::write_read(0x4C, vec![0x10], vec![0; 4]).with_error(ErrorKind::Bus),
        ];
        let i2c = Mock::new(&expectations);
        let mut pac = Pac1921::new(i2c, 0x4C, 10).unwrap();
        assert_eq!(pac.sample(), Err(Pac1921Error::Bus(ErrorKind::Bus)));
        pac.release().done();
    }
}
