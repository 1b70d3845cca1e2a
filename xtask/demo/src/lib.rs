//! The demo rack: the whole Racklet chain on one laptop, scripted.
//!
//! It runs the project's real binaries as a rack would — `imgsign` (the
//! release manager's laptop), `bootd serve` (the rack's boot server),
//! `bmc-sim run` (five BMCs), and per node `stage1 boot` / `stage1 confirm`
//! on a file-backed disk — over real sockets and real TLS, and checks at
//! every step that each node did what the chain promises. Any surprise ends
//! the run with an error naming the node and what it did instead.
//!
//! `cargo xtask demo` builds everything and starts [`run`]; see
//! `docs/src/demo.md` for the walk-through a class follows.
//!
//! # Module map
//!
//! | module | what |
//! |---|---|
//! | [`run`] (here) | checks the rack file, the ports and the working directory, then plays the scenario |
//! | `scenario` | one run: sets up, plays the seven steps in order, stops the rack; the expectations every step uses |
//! | `scenario::sign` | step 1: the release manager signs v1, bootd starts (and signing, serving for later steps) |
//! | `scenario::enroll` | step 2: the nodes enroll, the BMCs power them on, every node boots v1 |
//! | `scenario::updates` | steps 3–5: an update, an update that never confirms, the button |
//! | `scenario::attacks` | step 6: a compromised boot server (a tampered image, a rollback) |
//! | `scenario::summary` | step 7: the rack as the BMCs and the nodes report it |
//! | [`node`] | one node: runs stage1 per boot, plays its OS, narrates stage1's log |
//! | [`rack`] | bootd and bmc-sim as child processes, the BMC control socket, ports |
//! | [`attacker`] | the compromised boot server of step 6 |
//! | [`https`] | a GET pinned to the rack CA |
//! | [`ui`] | the progress lines a class follows |
//! | [`work`] | the working directory and the command log |
#![forbid(unsafe_code)]

pub mod attacker;
pub mod https;
pub mod node;
pub mod rack;
mod scenario;
pub mod ui;
pub mod work;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::rack::Ports;
use crate::work::Workdir;

/// The images the demo publishes, built by `cargo xtask demo` from
/// `images/recipes/` (reproducible, so every class gets the same bytes).
#[derive(Clone, Debug)]
pub struct Images {
    /// demo-os 1.0.0, security version 1: the first install.
    pub v1: PathBuf,
    /// demo-os 2.0.0, security version 1: a feature update.
    pub v2: PathBuf,
    /// demo-os 3.0.0, security version 2: a security fix that hangs.
    pub v3: PathBuf,
    /// demo-os 4.0.0, security version 2: the fixed security fix.
    pub v4: PathBuf,
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct Options {
    /// The workspace (for `hardware/rack.yaml`, `keys-example/`).
    pub workspace: PathBuf,
    /// Where the binaries are (`target/debug`).
    pub bin: PathBuf,
    /// The working directory.
    pub workdir: PathBuf,
    /// The images.
    pub images: Images,
    /// Wipe an earlier run's working directory first (class reset).
    pub reset: bool,
    /// Generate new signing keys instead of the published example keys.
    pub fresh_keys: bool,
    /// Keep the rack running after the scenario, until Ctrl-C.
    pub keep_running: bool,
    /// The BMCs' confirmation window.
    pub watchdog: Duration,
    /// Added to every port.
    pub port_offset: u16,
    /// The arm64 stage1 the Raspberry Pi pair is made of; none: no Pi scene.
    pub pi: Option<PiStage1>,
}

/// What `imgsign sign release` makes a Raspberry Pi's `boot.img` of.
#[derive(Clone, Debug)]
pub struct PiStage1 {
    /// The arm64 stage1 UKI (the release's image).
    pub uki: PathBuf,
    /// The kernel inside it.
    pub kernel: PathBuf,
    /// The initramfs inside it.
    pub initramfs: PathBuf,
    /// `dtb/`, `firmware/`, `bl31.bin` (`cargo xtask fetch-pi-files`).
    pub files: PathBuf,
}

/// Runs the scenario; `Ok` only if every node did what was expected.
pub fn run(o: Options) -> Result<()> {
    let rack = racklet_hardware::Rack::load(&o.workspace.join("hardware/rack.yaml"))
        .context("loading hardware/rack.yaml")?;
    let ports = Ports::new(o.port_offset)?;
    ports.check_free(rack.nodes.len())?;
    let w = Workdir::prepare(&o.workdir, o.reset)?;
    scenario::play(o, w, &rack)
}
