//! `racklet-demo`: the demo rack. Run it with `cargo xtask demo`, which
//! builds the binaries and images first and passes their paths.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use racklet_demo::{Images, Options, PiStage1};

/// A simulated rack booted end to end through the real chain, with the
/// example keys on the `demo` channel.
#[derive(Debug, Parser)]
#[command(name = "racklet-demo", version)]
struct Args {
    /// Working directory (everything the demo makes lives here).
    #[arg(long, default_value = "target/demo")]
    workdir: PathBuf,
    /// Class reset: wipe an earlier run's working directory first (fresh
    /// rack PKI, node identities, disks, BMC counters).
    #[arg(long)]
    reset: bool,
    /// Sign with newly generated keys instead of keys-example/.
    #[arg(long)]
    fresh_keys: bool,
    /// Keep the rack running after the scenario, for exploring, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
    /// The BMCs' confirmation window, in seconds (the rack file says 120;
    /// short, so the watchdog scene takes seconds).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(2..=120))]
    watchdog_s: u64,
    /// Move every port (8443, 7700-7705, 9700) by this much.
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
    /// The workspace root (set by `cargo xtask demo`).
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Where the project's binaries are (set by `cargo xtask demo`).
    #[arg(long, default_value = "target/debug")]
    bin: PathBuf,
    /// The four images, v1 to v4 (built by `cargo xtask demo`).
    #[arg(long = "image", num_args = 4, required = true, value_names = ["V1", "V2", "V3", "V4"])]
    images: Vec<PathBuf>,
    /// The arm64 stage1 the Raspberry Pi pair is made of: its UKI, and the
    /// kernel and initramfs in it (set by `cargo xtask demo`).
    #[arg(long, num_args = 3, value_names = ["UKI", "KERNEL", "INITRAMFS"], requires = "pi_files")]
    pi_stage1: Vec<PathBuf>,
    /// The Pi files (`cargo xtask fetch-pi-files`: dtb/, firmware/, bl31.bin).
    #[arg(long, value_name = "DIR", requires = "pi_stage1")]
    pi_files: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let images = Images {
        v1: abs(a.images[0].clone()),
        v2: abs(a.images[1].clone()),
        v3: abs(a.images[2].clone()),
        v4: abs(a.images[3].clone()),
    };
    let o = Options {
        workspace: abs(a.workspace),
        bin: abs(a.bin),
        workdir: abs(a.workdir),
        images,
        reset: a.reset,
        fresh_keys: a.fresh_keys,
        keep_running: a.keep_running,
        watchdog: Duration::from_secs(a.watchdog_s),
        port_offset: a.port_offset,
        pi: a.pi_files.map(|files| PiStage1 {
            uki: abs(a.pi_stage1[0].clone()),
            kernel: abs(a.pi_stage1[1].clone()),
            initramfs: abs(a.pi_stage1[2].clone()),
            files: abs(files),
        }),
    };
    match racklet_demo::run(o) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nracklet-demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Args::command().debug_assert();
    }
}
