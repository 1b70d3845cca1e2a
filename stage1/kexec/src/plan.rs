//! The hand-off plan: which bytes go where, and where to enter.
//!
//! Placement (booting.rst, "4. Call the kernel image"; kexec-tools
//! `arm64_locate_kernel_segment`, `arm64_load_other_segments`):
//!
//! 1. kernel: the lowest 2 MiB-aligned base in usable RAM such that
//!    `[base + text_offset, + image_size)` is free (the file's length if it
//!    is longer); with placement bit 0 that is as close to the base of DRAM
//!    as the free RAM allows, with bit 1 it must end below 2^48;
//! 2. initrd: the lowest free range above the kernel, else below it, that
//!    keeps kernel and initrd inside one 1 GiB-aligned window of 32 GiB;
//! 3. device tree (≤ 2 MiB) and trampoline: the lowest free range above the
//!    kernel, else anywhere;
//!
//! every segment page-aligned and page-sized, none overlapping another or
//! anything reserved, and together at most half the RAM (`kexec_load`'s own
//! limit in `sanity_check_segment_list`).

use std::borrow::Cow;

use crate::error::Error;
use crate::fdt::DeviceTree;
use crate::image::{Image, Placement};
use crate::memmap::{align_down, align_up, parse_iomem, MemoryMap, PhysRange};
use crate::trampoline;
use crate::tree::{booted_from_uefi, reserved_ranges, rewrite_chosen, Chosen};

/// `KEXEC_ARCH_AARCH64` (`EM_AARCH64` 183 << 16): the `flags` of the load.
pub const KEXEC_ARCH_AARCH64: u64 = 183 << 16;
/// `KEXEC_SEGMENT_MAX`: the most segments `kexec_load` takes.
pub const KEXEC_SEGMENT_MAX: usize = 16;
/// arm64's `COMMAND_LINE_SIZE`, NUL included.
pub const COMMAND_LINE_SIZE: usize = 2048;
/// The boot protocol's limit for the DTB.
pub const DTB_MAX: usize = 2 << 20;

const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
const WINDOW: u64 = 32 * GIB;
const ADDR_48: u64 = 1 << 48;

/// What the plan is made for, besides the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The running kernel's page size (`sysconf(_SC_PAGESIZE)`): segments
    /// are aligned to it. 4, 16 or 64 KiB.
    pub page_size: u64,
    /// A fresh seed for the next kernel's KASLR (`/chosen/kaslr-seed`);
    /// `None` leaves it out, and the next kernel runs without KASLR unless
    /// it finds another source.
    pub kaslr_seed: Option<u64>,
}

impl Default for Options {
    /// 4 KiB pages (Debian's arm64 kernel), no KASLR seed.
    fn default() -> Options {
        Options {
            page_size: 4096,
            kaslr_seed: None,
        }
    }
}

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// The Image.
    Kernel,
    /// The initramfs.
    Initrd,
    /// The next device tree.
    DeviceTree,
    /// The entry code ([`crate::trampoline`]).
    Trampoline,
}

/// One `struct kexec_segment`: `bytes` copied to `dest`, the rest of
/// `memsz` zeroed by the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// What it is.
    pub kind: SegmentKind,
    /// Its contents (`buf`, `bufsz`).
    pub bytes: Cow<'a, [u8]>,
    /// Physical destination (`mem`), page-aligned.
    pub dest: u64,
    /// Bytes reserved there (`memsz`), page-aligned, ≥ `bytes.len()`.
    pub memsz: u64,
}

/// A checked hand-off: pass `segments` and `entry` to `kexec_load` with
/// [`KEXEC_ARCH_AARCH64`], then `reboot(LINUX_REBOOT_CMD_KEXEC)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The segments, by destination.
    pub segments: Vec<Segment<'a>>,
    /// Where the kernel starts executing: the trampoline.
    pub entry: u64,
    /// Where the Image is (its first byte is the kernel's entry).
    pub kernel: PhysRange,
    /// Where the initrd is, if any.
    pub initrd: Option<PhysRange>,
    /// Where the next device tree is (x0 at kernel entry).
    pub dtb: PhysRange,
    /// True if the running system came up through UEFI (its `linux,uefi-*`
    /// properties were passed on).
    pub uefi: bool,
}

fn page_round(len: usize, page: u64) -> Option<u64> {
    align_up((len as u64).max(1), page)
}

fn check_options(cmdline: &str, options: &Options) -> Result<(), Error> {
    let page = options.page_size;
    if ![4 << 10, 16 << 10, 64 << 10].contains(&page) {
        return Err(Error::BadPageSize(page));
    }
    if let Some(at) = cmdline.bytes().position(|b| b == 0) {
        return Err(Error::CmdlineNul { at });
    }
    if cmdline.len() >= COMMAND_LINE_SIZE {
        return Err(Error::CmdlineTooLong {
            len: cmdline.len(),
            max: COMMAND_LINE_SIZE,
        });
    }
    Ok(())
}

/// Step 1: the lowest 2 MiB-aligned base + `text_offset` with room.
fn place_kernel(free: &MemoryMap, image: &Image<'_>, page: u64) -> Result<PhysRange, Error> {
    let h = image.header;
    let need = align_up(h.image_size().max(image.bytes.len() as u64), page);
    let limit = match h.placement() {
        Placement::Anywhere => PhysRange::new(0, ADDR_48),
        Placement::NearDramBase => Some(PhysRange::ALL),
    };
    let found = match (need, limit) {
        (Some(need), Some(limit)) => free.first_fit(need, MIB2, h.text_offset(), 0, limit),
        _ => None,
    };
    found.ok_or(Error::KernelDoesNotFit {
        need: need.unwrap_or(u64::MAX),
        text_offset: h.text_offset(),
        largest: free.ranges().iter().map(PhysRange::len).max().unwrap_or(0),
    })
}

/// Step 2: above the kernel, else below it, inside a 1 GiB-aligned 32 GiB
/// window that covers both.
fn place_initrd(
    free: &MemoryMap,
    kernel: PhysRange,
    len: usize,
    page: u64,
) -> Result<PhysRange, Error> {
    let size = page_round(len, page).unwrap_or(u64::MAX);
    let above = PhysRange::new(
        kernel.end(),
        align_down(kernel.start(), GIB).saturating_add(WINDOW),
    );
    let below = PhysRange::new(
        align_up(kernel.end(), GIB)
            .unwrap_or(u64::MAX)
            .saturating_sub(WINDOW),
        kernel.start(),
    );
    if let Some(r) = [above, below]
        .into_iter()
        .flatten()
        .find_map(|w| free.first_fit(size, page, 0, 0, w))
    {
        return Ok(r);
    }
    Err(match free.first_fit(size, page, 0, 0, PhysRange::ALL) {
        Some(_) => Error::InitrdOutsideWindow { size, kernel },
        None => Error::NoRoom {
            what: "initrd",
            size,
        },
    })
}

/// Step 3: the lowest free range at or above `floor`, else the lowest.
fn place_low(
    free: &MemoryMap,
    what: &'static str,
    len: usize,
    page: u64,
    floor: u64,
) -> Result<PhysRange, Error> {
    let size = page_round(len, page).unwrap_or(u64::MAX);
    free.first_fit(size, page, 0, floor, PhysRange::ALL)
        .or_else(|| free.first_fit(size, page, 0, 0, PhysRange::ALL))
        .ok_or(Error::NoRoom { what, size })
}

/// Plans the hand-off to `kernel` (an arm64 Image, `Image.gz` or EFI zboot)
/// with `initrd` (empty: none) and `cmdline`, from the running system's
/// device tree (`/sys/firmware/fdt`) and memory map (`/proc/iomem`).
pub fn plan<'a>(
    kernel: &'a [u8],
    initrd: &'a [u8],
    cmdline: &str,
    running_fdt: &[u8],
    iomem: &str,
    options: &Options,
) -> Result<Plan<'a>, Error> {
    check_options(cmdline, options)?;
    let page = options.page_size;
    let image = Image::parse(kernel)?;
    let mut tree = DeviceTree::parse(running_fdt)?;
    let uefi = booted_from_uefi(&tree);
    if uefi && initrd.is_empty() {
        return Err(Error::NoInitrdAfterUefiBoot);
    }
    let mut free = MemoryMap::from_iomem(&parse_iomem(iomem)?)?;
    for r in reserved_ranges(&tree)? {
        free.exclude(r);
    }

    let kernel_at = place_kernel(&free, &image, page)?;
    free.exclude(kernel_at);
    let initrd_at = match initrd.is_empty() {
        true => None,
        false => Some(place_initrd(&free, kernel_at, initrd.len(), page)?),
    };
    if let Some(r) = initrd_at {
        free.exclude(r);
    }

    rewrite_chosen(
        &mut tree,
        &Chosen {
            bootargs: cmdline,
            // The initrd's own length, not its page-rounded segment.
            initrd: initrd_at.and_then(|r| PhysRange::at(r.start(), initrd.len() as u64)),
            kaslr_seed: options.kaslr_seed,
        },
    );
    let dtb_bytes = tree.to_blob()?;
    if dtb_bytes.len() > DTB_MAX {
        return Err(Error::DtbTooLarge {
            size: dtb_bytes.len(),
        });
    }
    let dtb = place_low(&free, "device tree", dtb_bytes.len(), page, kernel_at.end())?;
    free.exclude(dtb);
    let tramp = place_low(&free, "trampoline", trampoline::LEN, page, kernel_at.end())?;

    let mut segments = vec![
        Segment {
            kind: SegmentKind::Kernel,
            bytes: image.bytes,
            dest: kernel_at.start(),
            memsz: kernel_at.len(),
        },
        Segment {
            kind: SegmentKind::DeviceTree,
            bytes: Cow::Owned(dtb_bytes),
            dest: dtb.start(),
            memsz: dtb.len(),
        },
        Segment {
            kind: SegmentKind::Trampoline,
            bytes: Cow::Owned(trampoline::build(dtb.start(), kernel_at.start()).to_vec()),
            dest: tramp.start(),
            memsz: tramp.len(),
        },
    ];
    if let Some(r) = initrd_at {
        segments.push(Segment {
            kind: SegmentKind::Initrd,
            bytes: Cow::Borrowed(initrd),
            dest: r.start(),
            memsz: r.len(),
        });
    }
    segments.sort_by_key(|s| s.dest);
    let total = segments.iter().fold(0u64, |t, s| t.saturating_add(s.memsz));
    let ram = free.managed_estimate();
    if total > ram / 2 {
        return Err(Error::OverHalfOfRam { total, ram });
    }
    Ok(Plan {
        segments,
        entry: tramp.start(),
        kernel: kernel_at,
        initrd: initrd_at,
        dtb,
        uefi,
    })
}
