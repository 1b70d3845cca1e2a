//! The Racklet BMC simulator: one `racklet-bmc-core` BMC per unit of a rack
//! described in `hardware/rack.yaml`, with flash in files, the protocol on
//! TCP sockets, a control socket and OpenMetrics.
#![forbid(unsafe_code)]

pub mod client;
