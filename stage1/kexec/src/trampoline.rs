//! The few instructions between `kexec_load`'s entry and the kernel.
//!
//! With `kexec_load` (not `kexec_file_load`) the arm64 kernel enters the
//! new image with x0 = 0, not the device tree (the crate doc says why,
//! with sources), while the boot protocol wants x0 = the DTB's physical
//! address and x1 = x2 = x3 = 0. This trampoline is the entry point: it
//! loads both addresses from a literal pool behind it and branches.
//!
//! It runs with the MMU off, so its data loads are Device-nGnRnE accesses,
//! which must be aligned: the segment starts page-aligned and the two
//! literals sit at 8-byte-aligned offsets. It touches only general-purpose
//! registers, so it runs the same at EL1 or EL2. Caches need no work: the
//! kernel cleaned every segment to the point of coherency and invalidated
//! the instruction cache before turning the MMU off.
//!
//! | offset | word (LE) | assembly | effect |
//! |---|---|---|---|
//! | 0x00 | `580000c0` | `ldr x0, 0x18` | x0 = DTB address |
//! | 0x04 | `580000f0` | `ldr x16, 0x20` | x16 (IP0, a scratch register) = kernel entry |
//! | 0x08 | `aa1f03e1` | `mov x1, xzr` | x1 = 0 |
//! | 0x0c | `aa1f03e2` | `mov x2, xzr` | x2 = 0 |
//! | 0x10 | `aa1f03e3` | `mov x3, xzr` | x3 = 0 |
//! | 0x14 | `d61f0200` | `br x16` | enter the kernel |
//! | 0x18 | 8 bytes | `.quad` | DTB physical address |
//! | 0x20 | 8 bytes | `.quad` | kernel entry physical address |
//!
//! Encodings (Arm ARM, A64): LDR (literal) 64-bit is `0x58000000 |
//! imm19 << 5 | Rt` with imm19 = (literal − pc) / 4; MOV (register) is ORR
//! (shifted register) `0xaa000000 | Rm << 16 | Rn << 5 | Rd` with Rn = XZR;
//! BR is `0xd61f0000 | Rn << 5`. `tests/trampoline.rs` checks the table
//! against binutils when `aarch64-linux-gnu-objdump`/`-as` are installed.

/// The code: each instruction word with its assembly (binutils syntax).
pub const CODE: [(u32, &str); 6] = [
    (0x5800_00c0, "ldr x0, 0x18"),
    (0x5800_00f0, "ldr x16, 0x20"),
    (0xaa1f_03e1, "mov x1, xzr"),
    (0xaa1f_03e2, "mov x2, xzr"),
    (0xaa1f_03e3, "mov x3, xzr"),
    (0xd61f_0200, "br x16"),
];

/// Offset of the DTB address literal.
pub const DTB_LITERAL: usize = 0x18;
/// Offset of the kernel entry literal.
pub const ENTRY_LITERAL: usize = 0x20;
/// Length of the trampoline with its literals.
pub const LEN: usize = 0x28;

/// The trampoline for a DTB at `dtb` and a kernel entered at `entry`.
pub fn build(dtb: u64, entry: u64) -> [u8; LEN] {
    let mut out = [0u8; LEN];
    for (i, (word, _)) in CODE.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out[DTB_LITERAL..DTB_LITERAL + 8].copy_from_slice(&dtb.to_le_bytes());
    out[ENTRY_LITERAL..ENTRY_LITERAL + 8].copy_from_slice(&entry.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encodings, rebuilt from their fields.
    #[test]
    fn words_match_their_fields() {
        let ldr =
            |rt: u32, pc: usize, lit: usize| 0x5800_0000 | (((lit - pc) / 4) as u32) << 5 | rt;
        let mov = |rd: u32| 0xaa00_0000 | 31 << 16 | 31 << 5 | rd;
        let br = |rn: u32| 0xd61f_0000 | rn << 5;
        let want = [
            ldr(0, 0, DTB_LITERAL),
            ldr(16, 4, ENTRY_LITERAL),
            mov(1),
            mov(2),
            mov(3),
            br(16),
        ];
        assert_eq!(CODE.map(|(w, _)| w), want);
        // The code ends where the first literal begins; literals are aligned.
        assert_eq!(CODE.len() * 4, DTB_LITERAL);
        assert_eq!(
            (DTB_LITERAL % 8, ENTRY_LITERAL % 8, ENTRY_LITERAL + 8),
            (0, 0, LEN)
        );
    }

    #[test]
    fn literals_are_little_endian() {
        let t = build(0x4820_0000, 0x4200_0000);
        assert_eq!(&t[..4], &[0xc0, 0x00, 0x00, 0x58]);
        assert_eq!(
            &t[DTB_LITERAL..DTB_LITERAL + 8],
            &0x4820_0000u64.to_le_bytes()
        );
        assert_eq!(&t[ENTRY_LITERAL..], &0x4200_0000u64.to_le_bytes());
    }
}
