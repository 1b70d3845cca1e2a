//! **This is not a kernel.** The demo rack runs on laptops without QEMU, so
//! its OS images carry this small program where a Linux kernel would be: it
//! is a real executable for the node's architecture (so stage1's payload
//! checks — machine type, sections — run on something real), and in
//! simulation stage1 records the validated hand-off instead of executing it.
//! Recipes that need a real kernel point at one (see `images/README.md`).
#![forbid(unsafe_code)]

fn main() {
    println!("racklet stand-in kernel: this is NOT Linux; it stands in for one in demo images");
}
