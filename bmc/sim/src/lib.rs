//! The Racklet BMC simulator: one `racklet-bmc-core` BMC per unit of a rack
//! described in `hardware/rack.yaml`, with flash in files (counters survive
//! restarts), the BMC protocol per unit on a TCP socket, a control socket
//! (button, power, resets, status) and OpenMetrics on `/metrics`.
//!
//! `bmc-sim` (src/main.rs) is a thin CLI over [`server::run`]; tests run the
//! same function on `127.0.0.1:0` sockets.
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod flash;
pub mod harness;
pub mod metrics;
pub mod server;
pub mod unit;

pub use server::{run, Listeners, SimConfig, SimError};
