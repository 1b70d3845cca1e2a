//! The crate's error: one variant per refusal, each with what was wrong.

use crate::memmap::PhysRange;

/// Why no hand-off plan could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel is not a usable arm64 `Image` (wrong architecture,
    /// truncated, big-endian, bad compression, …).
    #[error("kernel: {0}")]
    Image(#[from] crate::image::Error),
    /// `/proc/iomem` could not be read as a memory map.
    #[error("memory map: {0}")]
    MemoryMap(#[from] crate::memmap::Error),
    /// The running device tree (`/sys/firmware/fdt`) does not parse.
    #[error("running device tree: {0}")]
    DeviceTree(#[from] crate::fdt::Error),
    /// A `/reserved-memory` child whose `reg` is not whole (address, size)
    /// pairs of the node's cell sizes.
    #[error("device tree {node}: reg of {len} bytes is not whole ({address_cells}+{size_cells})-cell pairs")]
    BadReg {
        /// Path of the node.
        node: String,
        /// Length of its `reg`.
        len: usize,
        /// `#address-cells` in force.
        address_cells: u32,
        /// `#size-cells` in force.
        size_cells: u32,
    },
    /// `#address-cells` or `#size-cells` outside 1..=2 where a range is read.
    #[error("device tree {node}: {name} = {value} (only 1 or 2 cells are read)")]
    BadCells {
        /// Path of the node.
        node: String,
        /// `#address-cells` or `#size-cells`.
        name: &'static str,
        /// Its value.
        value: u32,
    },
    /// The command line holds a NUL byte (the kernel would cut it there).
    #[error("command line contains a NUL byte at {at}")]
    CmdlineNul {
        /// Byte offset of the NUL.
        at: usize,
    },
    /// The command line, with its NUL, is over arm64's `COMMAND_LINE_SIZE`.
    #[error("command line of {len} bytes (+ NUL) is over arm64's limit of {max}")]
    CmdlineTooLong {
        /// Its length without the NUL.
        len: usize,
        /// `COMMAND_LINE_SIZE` (2048).
        max: usize,
    },
    /// No initrd after a UEFI boot: the next kernel would take the first
    /// boot's initrd from the EFI configuration table (memory since freed).
    #[error("no initrd: after a UEFI boot the next kernel would find the first boot's initrd through the EFI configuration table")]
    NoInitrdAfterUefiBoot,
    /// The page size is not 4, 16 or 64 KiB.
    #[error("page size {0:#x} is not 4, 16 or 64 KiB")]
    BadPageSize(u64),
    /// No 2 MiB-aligned base + `text_offset` with `image_size` free.
    #[error("kernel needs {need:#x} bytes at a 2 MiB-aligned base + {text_offset:#x}; the largest free RAM range is {largest:#x} bytes")]
    KernelDoesNotFit {
        /// `image_size` (or the file, if longer), page-rounded.
        need: u64,
        /// The Image's `text_offset`.
        text_offset: u64,
        /// The largest usable range.
        largest: u64,
    },
    /// Free RAM for the initrd exists, but only outside every 1 GiB-aligned
    /// 32 GiB window that also covers the kernel.
    #[error("initrd of {size:#x} bytes fits only outside the 32 GiB window around the kernel at {kernel}")]
    InitrdOutsideWindow {
        /// Page-rounded initrd size.
        size: u64,
        /// Where the kernel was placed.
        kernel: PhysRange,
    },
    /// No free RAM left for a segment.
    #[error("no free RAM left for the {what} ({size:#x} bytes)")]
    NoRoom {
        /// `initrd`, `device tree` or `trampoline`.
        what: &'static str,
        /// Page-rounded size.
        size: u64,
    },
    /// The next device tree is over the 2 MiB the boot protocol allows.
    #[error("next device tree is {size} bytes, over the boot protocol's 2 MiB")]
    DtbTooLarge {
        /// Its size.
        size: usize,
    },
    /// The segments together are over half of the kernel's RAM, which
    /// `kexec_load` refuses (`sanity_check_segment_list`).
    #[error(
        "segments take {total:#x} bytes, over half of the {ram:#x} bytes of RAM kexec_load allows"
    )]
    OverHalfOfRam {
        /// Sum of the segments' `memsz`.
        total: u64,
        /// RAM as estimated from `/proc/iomem`.
        ram: u64,
    },
}
