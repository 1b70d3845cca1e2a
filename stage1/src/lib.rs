//! stage1: the Racklet node loader.
//!
//! It runs as `/init` of a small initramfs on each compute unit (or as a
//! host process in simulation). It asks the BMC for its facts ([`bmc`]),
//! refreshes signed TUF metadata from bootd ([`tuf`] over `bootd-client`'s
//! HTTPS with every network limit),
//! decides what to boot ([`plan`], pure), installs an update into the
//! inactive slot ([`fetch`], [`install`], [`slots`]) and hands off to the
//! verified kernel ([`handoff`], [`sys`]). [`boot`] is the shell that ties
//! them together.
//!
//! Module map:
//! - [`slots`]: the on-disk A/B layout (byte table) and its commits.
//! - [`statearea`]: the trusted state kept on the slot disk.
//! - [`install`]: the update as a sequence of atomic commits.
//! - [`plan`]: the sans-IO boot decision.
//! - [`tuf`]: tough, the persistent store, trusted time, offline re-verify.
//! - [`fetch`]: streaming a target into a slot, with resume and backoff.
//! - [`handoff`]: payload checks, the hand-off record, the route
//!   (`kexec_file_load`, `kexec_load`, firmware).
//! - [`kexec_load`]: the arm64 `kexec_load` hand-off (plan by `racklet-kexec`).
//! - [`devicetree`]: the running device tree as files: spin-table CPUs
//!   (no kexec on arm64), a Pi 5's `boot_img_sha256`.
//! - [`efi`]: the firmware hand-off under Secure Boot: UKI onto the ESP,
//!   `BootNext` (load option encoder, GPT reader).
//! - [`sys`]: the only `unsafe`: kexec, reboot, mount, modules, clock.
//! - [`bmc`]: the BMC protocol client.
//! - [`identity`]: enrollment, and the node's key and certificate.
//! - [`net`]: link up, a DHCP lease, address and route (netlink).
//! - [`boot`]: one boot, start to hand-off; `confirm`; PID-1 mode.
#![deny(unsafe_code)]

pub mod bmc;
pub mod boot;
pub mod devicetree;
pub mod efi;
pub mod error;
pub mod fetch;
pub mod handoff;
pub mod identity;
pub mod install;
pub mod kexec_load;
pub mod net;
pub mod plan;
pub mod slots;
pub mod statearea;
pub mod sys;
pub mod tuf;

pub use error::{Error, Result};
