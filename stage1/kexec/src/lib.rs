//! The sans-IO core of stage1's arm64 hand-off with `kexec_load(2)`, for
//! kernels without `KEXEC_FILE` (Debian's arm64 kernel has none).
//!
//! Bytes in, decisions out; no file, syscall or clock is touched here.
//!
//! | module | what |
//! |---|---|
//! | [`image`] | the arm64 `Image` header; `Image.gz` and EFI zboot inflated |
//! | [`memmap`] | `/proc/iomem` → usable RAM (never anything reserved) |
//! | [`fdt`] | a strict DTB reader/writer (fuzzed: `fuzz/fuzz_targets/kexec_fdt.rs`) |
//! | [`trampoline`] | the entry code: x0 = DTB, x1–x3 = 0, branch to the kernel |
#![forbid(unsafe_code)]

pub mod fdt;
pub mod fuzz;
pub mod image;
pub mod memmap;
pub mod trampoline;
