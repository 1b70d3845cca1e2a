//! The client side of bootd: what a node (stage1), an operator's
//! `bootd client` and bootd itself (mirroring an upstream origin) use to
//! talk HTTPS.
//!
//! - [`tls`]: the one TLS client configuration of the tree (pinned CA,
//!   optional client certificate, ChaCha20 first, aws-lc-rs);
//! - [`http`]: requests with deadlines and limits ([`Client`]);
//! - [`api`]: enrollment, reports and `whoami` over the [`bootd_api`] types;
//! - `tuf` (feature `tough`): a `tough::Transport` over the client.
//!
//! It serves nothing and signs nothing, so the node's code may link it;
//! the server's routes use the same [`bootd_api`] types on the other side.
#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod http;
pub mod tls;
#[cfg(feature = "tough")]
pub mod tuf;

pub use api::{new_key_and_csr, refusal, report, whoami, Enrollment, Identity, PendingEnrollment};
pub use error::{display_chain, Deadline, Error, Result};
pub use http::{Client, NetConfig, Response};
#[cfg(feature = "tough")]
pub use tuf::TufTransport;
