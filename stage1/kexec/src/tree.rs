//! What the hand-off reads in the running device tree and changes for the
//! next kernel.
//!
//! Read: the memory the tree reserves — `/memreserve/` entries and the
//! `reg` of every `/reserved-memory` child (booting.rst: memory "not marked
//! as reserved … will be considered as available", so nothing reserved is
//! written over) — and whether the system came up through UEFI
//! (`/chosen/linux,uefi-system-table`).
//!
//! Written, in `/chosen` (created if missing), as kexec-tools
//! (`kexec/arch/arm64/kexec-arm64.c` `setup_2nd_dtb`, `kexec/dt-ops.c`)
//! and u-root (`pkg/boot/linux/load_linux_image.go` `sanitizeFDT`) do:
//!
//! | property | next kernel gets |
//! |---|---|
//! | `bootargs` | the payload's command line (NUL-terminated) |
//! | `linux,initrd-start`, `linux,initrd-end` | the new initrd (u64 each), or removed |
//! | `linux,elfcorehdr`, `linux,usable-memory-range` | removed (crash-dump only) |
//! | `kaslr-seed` | removed, or the caller's fresh seed (u64) |
//! | `rng-seed` | removed (the kernel wipes it after use; stale entropy is never reused) |
//! | `linux,uefi-*`, `stdout-path`, everything else | kept as it was |

use crate::error::Error;
use crate::fdt::{DeviceTree, Node};
use crate::memmap::PhysRange;

/// Removed from `/chosen` and not put back.
const DROPPED: [&str; 4] = [
    "linux,elfcorehdr",
    "linux,usable-memory-range",
    "kaslr-seed",
    "rng-seed",
];

/// What the next kernel's `/chosen` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chosen<'a> {
    /// Its command line (no NUL inside).
    pub bootargs: &'a str,
    /// Where its initrd is, if it has one.
    pub initrd: Option<PhysRange>,
    /// A fresh KASLR seed; `None` drops the property.
    pub kaslr_seed: Option<u64>,
}

/// Rewrites `/chosen` of `tree` for the next kernel (see the module doc).
pub fn rewrite_chosen(tree: &mut DeviceTree, next: &Chosen<'_>) {
    let chosen = tree.root.child_or_insert("chosen");
    for name in DROPPED
        .iter()
        .chain(&["linux,initrd-start", "linux,initrd-end"])
    {
        chosen.remove_property(name);
    }
    let mut args = next.bootargs.as_bytes().to_vec();
    args.push(0);
    chosen.set_property("bootargs", args);
    if let Some(r) = next.initrd {
        chosen.set_property("linux,initrd-start", r.start().to_be_bytes().to_vec());
        chosen.set_property("linux,initrd-end", r.end().to_be_bytes().to_vec());
    }
    if let Some(seed) = next.kaslr_seed {
        chosen.set_property("kaslr-seed", seed.to_be_bytes().to_vec());
    }
}

/// True if the running system was booted through UEFI: its EFI stub left
/// the system table's address in `/chosen`.
pub fn booted_from_uefi(tree: &DeviceTree) -> bool {
    tree.root
        .child("chosen")
        .is_some_and(|c| c.property("linux,uefi-system-table").is_some())
}

/// Every range the tree reserves: `/memreserve/` and `/reserved-memory/*`
/// `reg`, in that order (zero-sized entries skipped).
pub fn reserved_ranges(tree: &DeviceTree) -> Result<Vec<PhysRange>, Error> {
    let mut out: Vec<PhysRange> = tree
        .reservations
        .iter()
        .filter_map(|r| PhysRange::at(r.address, r.size))
        .collect();
    let Some(rm) = tree.root.child("reserved-memory") else {
        return Ok(out);
    };
    // A node's #address-cells/#size-cells describe its children's `reg`;
    // the specification's defaults are 2 and 1.
    let inherited = (
        tree.root.property_u32("#address-cells").unwrap_or(2),
        tree.root.property_u32("#size-cells").unwrap_or(1),
    );
    let ac = rm.property_u32("#address-cells").unwrap_or(inherited.0);
    let sc = rm.property_u32("#size-cells").unwrap_or(inherited.1);
    for (name, value) in [("#address-cells", ac), ("#size-cells", sc)] {
        if !(1..=2).contains(&value) {
            return Err(Error::BadCells {
                node: "/reserved-memory".into(),
                name,
                value,
            });
        }
    }
    for child in &rm.children {
        out.extend(reg_ranges(child, ac, sc)?);
    }
    Ok(out)
}

/// The (address, size) pairs of `node`'s `reg` (none if it has no `reg`:
/// a dynamically placed region, which `/proc/iomem` shows as reserved).
fn reg_ranges(node: &Node, ac: u32, sc: u32) -> Result<Vec<PhysRange>, Error> {
    let Some(reg) = node.property("reg") else {
        return Ok(Vec::new());
    };
    let pair = 4 * (ac + sc) as usize;
    if reg.is_empty() || reg.len() % pair != 0 {
        return Err(Error::BadReg {
            node: format!("/reserved-memory/{}", node.name),
            len: reg.len(),
            address_cells: ac,
            size_cells: sc,
        });
    }
    let cells = |b: &[u8]| {
        b.chunks(4).fold(0u64, |v, c| {
            v << 32 | u64::from(u32::from_be_bytes(c.try_into().unwrap_or([0; 4])))
        })
    };
    Ok(reg
        .chunks(pair)
        .filter_map(|p| {
            let (a, s) = p.split_at(4 * ac as usize);
            // A region that runs past the address space is cut at its end.
            let (a, s) = (cells(a), cells(s));
            PhysRange::new(a, a.saturating_add(s))
        })
        .collect())
}
