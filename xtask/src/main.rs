//! `cargo xtask`: the project's own tasks, in Rust so they run wherever
//! cargo does (the rust-analyzer convention).
//!
//! - `cargo xtask test`: install what the tests need (as root on Debian),
//!   then formatting, lints and every test — the command CI runs.
//! - `cargo xtask setup`: only the installation step.
//! - `cargo xtask bench`: benchmarks against peers measured in the same run.
//! - `cargo xtask build-image RECIPE`: a reproducible boot image.
//! - `cargo xtask demo`: the demo rack, end to end (the main job).
//! - `cargo xtask e2e`: the whole boot chain under QEMU (root).
//! - `cargo xtask tuf-conformance`: the upstream TUF conformance suite
//!   against stage1's TUF client.
#![forbid(unsafe_code)]

mod bench;
mod build_image;
mod conformance;
mod demo;
mod e2e;
mod kernel;
mod pifiles;
mod secureboot;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Racklet developer tasks")]
struct Xtask {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install everything the tests need, then run formatting, lints and
    /// every test. This is what CI runs.
    Test(test::TestArgs),
    /// Install the Debian packages, Rust targets and Python packages the
    /// tests need (root), or check that they are there (not root).
    Setup,
    /// Run the benchmarks and print ratios against peers measured in the same run.
    Bench(bench::BenchArgs),
    /// Build a boot image (a Unified Kernel Image) from a recipe in images/.
    BuildImage(Box<build_image::BuildImageArgs>),
    /// The demo rack: build, sign, serve and boot five simulated nodes
    /// through the real chain, with the example keys (`-- --help` for options).
    Demo(demo::DemoArgs),
    /// Download and unpack Debian's kernel into target/kernel/ (for QEMU
    /// boots); prints the vmlinuz path.
    FetchKernel,
    /// Download and unpack the Raspberry Pi files a boot.img carries (GPU
    /// firmware, TF-A, device trees) from Debian into target/pi-files/.
    FetchPiFiles,
    /// The whole chain under QEMU: UEFI HTTP boot, DHCP, BMC, TUF, A/B
    /// install, kexec, confirm, update, tampering, button (root); x86_64
    /// nodes, arm64 ones (`--arch aarch64`) or both (`--arch all`).
    E2e(e2e::E2eArgs),
    /// The upstream TUF client conformance suite (vendored in
    /// ../shared/vendor) against stage1's TUF client.
    TufConformance(conformance::ConformanceArgs),
}

fn main() -> std::process::ExitCode {
    let x = Xtask::parse();
    let result = match x.command {
        Command::Test(a) => test::run(a),
        Command::Setup => setup::run().map(|_| ()),
        Command::Bench(a) => bench::run(a),
        Command::BuildImage(a) => build_image::run(&a).map(|_| ()),
        Command::Demo(a) => demo::run(&a),
        Command::FetchKernel => kernel::ensure().map(|k| println!("{}", k.display())),
        Command::FetchPiFiles => pifiles::ensure().map(|f| println!("{f:#?}")),
        Command::E2e(a) => e2e::run(&a),
        Command::TufConformance(a) => conformance::run(&a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("xtask: error: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
