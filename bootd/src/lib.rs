//! bootd: the rack's HTTPS boot server.
//!
//! It serves a TUF repository (made by `imgsign`) that it has verified
//! itself from a pinned root ([`repo`]), runs the rack's own certificate
//! authority ([`pki`]), enrolls nodes and takes their reports over mTLS
//! ([`nodes`]; the wire types are the `bootd-api` contract crate, the node
//! side is `bootd-client`), and exports OpenMetrics ([`metrics`]).
//!
//! The binary is a thin shell: it parses arguments, sets up tracing, binds
//! the sockets and calls [`run`]. Tests run the same [`run`] on `127.0.0.1:0`.
//!
//! Structure for what comes next: proxyDHCP (issue 7) will be another
//! listener family started from [`run`] beside the HTTPS ones, with its
//! policy a pure function over the validated [`config::Config`] and the rack.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod files;
mod firststage;
mod io;
pub mod metrics;
pub mod nodes;
pub mod pki;
pub mod proxydhcp;
mod reconcile;
pub mod repo;
mod routes;
pub mod server;
mod state;
pub mod time;
pub mod tls;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{run, Listeners};
