//! stage1: the Racklet node loader.
//!
//! It runs as `/init` of a small initramfs on each compute unit (or as a
//! host process in simulation). It asks the BMC for its facts, refreshes
//! signed TUF metadata from bootd, decides what to boot ([`plan`]), installs
//! an update into the inactive slot ([`install`], [`slots`]) and hands off to
//! the verified kernel ([`handoff`]).
//!
//! Module map:
//! - [`slots`]: the on-disk A/B layout (byte table) and its commits.
//! - [`install`]: the update as a sequence of atomic commits.
#![forbid(unsafe_code)]

pub mod error;
pub mod install;
pub mod plan;
pub mod slots;

pub use error::{Error, Result};
