//! The Racklet BMC simulator: one `racklet-bmc-core` BMC per unit of a rack
//! described in `hardware/rack.yaml`, with flash in files (counters survive
//! restarts), the BMC protocol per unit on a TCP socket, a control socket
//! (button, power, resets, status) and OpenMetrics on `/metrics`.
//!
//! `bmc-sim` (src/main.rs) is a thin CLI over [`server::run`]; tests run the
//! same function on `127.0.0.1:0` sockets.
//!
//! # Module map
//!
//! Each module uses only those below it (`xtask/tests/module_graph.rs`
//! checks that the graph has no cycle):
//!
//! ```text
//! harness   the simulator in a thread of its own, for other crates' tests
//!    │
//! server    SimConfig, Listeners, run(): the ticker, one protocol link per
//!    │      unit, and the two tasks below
//!    ├── control   the control line protocol (press, power, reset, status)
//!    ├── metrics   OpenMetrics on GET /metrics
//!    │      │
//! shared    Shared (the units, their sockets) and SimClock: what the tasks share
//!    │
//! unit      one simulated board: the BMC core, its rail, button and power sensor
//!    │
//! flash     NOR flash in a file
//!
//! client    a blocking protocol client over any stream (uses no other module)
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod flash;
pub mod harness;
pub mod metrics;
pub mod server;
pub mod shared;
pub mod unit;

pub use server::{run, Listeners, SimConfig, SimError};
