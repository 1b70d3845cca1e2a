//! SMBus Packet Error Code: CRC-8, polynomial x⁸+x²+x+1 (0x07), initial value
//! 0, no reflection, no final XOR (SMBus 3.x §6.4 "Packet Error Checking").
//!
//! The PEC covers every byte of the transaction as it appears on the bus,
//! *including* the address bytes (`addr << 1 | R/W`).

/// A running PEC, for bytes that arrive one at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pec(u8);

impl Pec {
    /// A fresh PEC (CRC register 0).
    pub const fn new() -> Self {
        Pec(0)
    }

    /// Feeds one byte.
    pub const fn update(self, byte: u8) -> Self {
        let mut crc = self.0 ^ byte;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
            bit += 1;
        }
        Pec(crc)
    }

    /// Feeds a slice.
    pub fn update_slice(self, bytes: &[u8]) -> Self {
        bytes.iter().fold(self, |pec, &b| pec.update(b))
    }

    /// The PEC byte so far.
    pub const fn value(self) -> u8 {
        self.0
    }
}

/// The PEC of `bytes`.
pub fn pec(bytes: &[u8]) -> u8 {
    Pec::new().update_slice(bytes).value()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers. "123456789" → 0xF4 is the catalogue check value of
    // CRC-8/SMBUS (Greg Cook's CRC RevEng catalogue). The single-byte values
    // and the frame PECs in tests/byte_tables.rs and bmc/README.md were
    // computed with an independent bit-serial implementation (Python), not
    // with this code.
    #[test]
    fn crc8_smbus_check_value() {
        assert_eq!(pec(b"123456789"), 0xF4);
    }

    #[test]
    fn empty_and_single_bytes() {
        assert_eq!(pec(&[]), 0x00);
        assert_eq!(pec(&[0x00]), 0x00);
        assert_eq!(pec(&[0x01]), 0x07);
        assert_eq!(pec(&[0x80]), 0x89);
        assert_eq!(pec(&[0xFF]), 0xF3);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data = [0x40, 0x01, 0x00, 0x41];
        let mut p = Pec::new();
        for b in data {
            p = p.update(b);
        }
        assert_eq!(p.value(), pec(&data));
    }

    #[test]
    fn appending_the_pec_gives_zero() {
        // Property of a CRC without final XOR: crc(m ‖ crc(m)) == 0.
        let m = [0x40, 0x06, 0x08, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut framed = [0u8; 12];
        framed[..11].copy_from_slice(&m);
        framed[11] = pec(&m);
        assert_eq!(pec(&framed), 0);
    }
}
