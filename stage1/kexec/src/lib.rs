//! The sans-IO core of stage1's arm64 hand-off with `kexec_load(2)`, for
//! kernels without `KEXEC_FILE` (Debian's arm64 kernel has none).
//!
//! Bytes in, a [`Plan`] out: [`plan()`] takes the payload's kernel, initrd
//! and command line and the running system's `/sys/firmware/fdt` and
//! `/proc/iomem`, and returns the segments (bytes, destination, size) and
//! the entry point for `kexec_load`. No file, syscall or clock is touched
//! here; stage1's `sys` module reads the two files and makes the calls.
//!
//! | module | what |
//! |---|---|
//! | [`image`] | the arm64 `Image` header; `Image.gz` and EFI zboot inflated |
//! | [`memmap`] | `/proc/iomem` → usable RAM (never anything reserved) |
//! | [`fdt`] | a strict DTB reader/writer (fuzzed: `fuzz/fuzz_targets/kexec_fdt.rs`) |
//! | [`tree`] | reserved memory in the tree; `/chosen` for the next kernel |
//! | [`trampoline`] | the entry code: x0 = DTB, x1–x3 = 0, branch to the kernel |
//! | [`plan`](mod@plan) | placement and the plan |
//!
//! # Facts this relies on, with their sources
//!
//! How Linux 6.1 enters a `kexec_load`ed image on arm64
//! (`arch/arm64/kernel/machine_kexec.c`, `relocate_kernel.S`, as changed in
//! 5.16 by "arm64: kexec: keep MMU enabled during kexec relocation"):
//! - `machine_kexec` masks DAIF and runs `arm64_relocate_new_kernel` from
//!   the control page, which copies the segments into place with the MMU
//!   on, cleans and invalidates each page to the PoC, invalidates the
//!   I-cache, turns the MMU and caches off (`SCTLR_EL1 =
//!   INIT_SCTLR_EL1_MMU_OFF`) and branches to the entry with x0 =
//!   `kimage->arch.dtb_mem`, x1–x3 = 0, at EL1 — or, on a kernel running
//!   nVHE at EL2, through `HVC_SOFT_RESTART`, at EL2 with the same x0.
//! - `arch.dtb_mem` is set only by `kexec_file_load`'s arm64 loader
//!   (`machine_kexec_file.c`); the `kimage` is zero-allocated
//!   (`kernel/kexec_core.c`), so after `kexec_load` x0 is **0**. Hence the
//!   [`trampoline`], which is the plan's entry point (kexec-tools uses a
//!   purgatory that also re-hashes the segments, u-root a 10-word
//!   trampoline; neither is copied here).
//! - `kexec_load` refuses segments that are not page-aligned in `mem` and
//!   `memsz`, overlap, have `bufsz > memsz`, or add up to more than half of
//!   `totalram_pages` (`sanity_check_segment_list`); at most
//!   `KEXEC_SEGMENT_MAX` = 16. `flags` carry `KEXEC_ARCH_AARCH64` =
//!   `EM_AARCH64` (183) << 16 (`include/uapi/linux/kexec.h`).
//!
//! The boot protocol (`Documentation/arm64/booting.rst`): Image at a 2 MiB
//! aligned base + `text_offset` with `image_size` bytes free; DTB 8-byte
//! aligned, at most 2 MB; an initrd within one 1 GB-aligned window of at
//! most 32 GB that covers the Image; x0 = DTB, x1–x3 = 0; MMU off, the
//! image cleaned to the PoC; any memory not reserved is the kernel's.
//!
//! After a UEFI boot, a 6.1 kernel given no initrd in `/chosen` takes the
//! one the EFI stub registered in the EFI configuration table
//! (`drivers/firmware/efi/efi.c`, `efi_config_parse_tables`, when
//! `phys_initrd_size == 0`) — the first boot's, long freed. A plan after a
//! UEFI boot therefore needs an initrd ([`Error::NoInitrdAfterUefiBoot`]).
//!
//! Checked under `qemu-system-aarch64 -M virt` with Debian 12's 6.1 kernel:
//! the recordings in `tests/data/` and how they were made are described in
//! `tests/data/README.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod fdt;
pub mod fuzz;
pub mod image;
pub mod memmap;
pub mod plan;
pub mod trampoline;
pub mod tree;

pub use error::Error;
pub use plan::{plan, Options, Plan, Segment, SegmentKind, KEXEC_ARCH_AARCH64};
