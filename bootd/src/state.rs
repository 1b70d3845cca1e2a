//! The state every serving task shares: what can change at run time
//! ([`Live`]), the verified snapshot in service, node identities, metrics,
//! the node store and the connection counts; and the per-connection facts
//! the router reads ([`ConnInfo`]).
//!
//! Its own module so that the serving shell (`server`), the router
//! (`routes`) and the background loops (`reconcile`) all depend on it and
//! not on each other: the module graph stays a DAG
//! (`xtask/tests/module_graph.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use racklet_hardware::Rack;

use crate::config::Config;
use crate::error::PiPairError;
use crate::metrics::Metrics;
use crate::nodes::NodeStore;
use crate::repo::Snapshot;
use crate::tls::SharedIdentities;

/// What can change at run time without a restart.
pub(crate) struct Live {
    pub(crate) config: Arc<Config>,
    pub(crate) rack: Arc<Rack>,
    pub(crate) tls: Arc<rustls::ServerConfig>,
}

/// Everything the serving threads and background loops share.
pub(crate) struct Shared {
    pub(crate) live: RwLock<Arc<Live>>,
    pub(crate) snapshot: RwLock<Option<Arc<Snapshot>>>,
    pub(crate) identities: SharedIdentities,
    pub(crate) metrics: Metrics,
    pub(crate) store: NodeStore,
    pub(crate) open: AtomicUsize,
    pub(crate) per_address: Mutex<HashMap<IpAddr, usize>>,
    /// The Pi-key verdicts on first-stage pairs, per snapshot.
    pub(crate) pi_checks: PiChecks,
    /// The online timestamp key, for `v1/time`.
    pub(crate) time_key: crate::time::KeyCache,
}

impl Shared {
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().ok().and_then(|s| s.clone())
    }
}

/// The Pi-key verdicts on first-stage pairs (`firststage`), by what was
/// checked: the same bytes against the same key get the same verdict,
/// whichever snapshot (a re-signed timestamp makes a new one) or entry
/// asks.
#[derive(Debug, Default)]
pub(crate) struct PiChecks {
    pub(crate) verdicts: Mutex<HashMap<PairId, PiVerdict>>,
    /// Held while a check runs: a rack of Pis powering on together asks
    /// for one pair at once, and only the first reads and checks it.
    pub(crate) running: tokio::sync::Mutex<()>,
}

/// What a Pi verdict is about: SHA-256 (hex) of `boot.img` and `boot.sig`
/// (as TUF verified them) and of the public key file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PairId {
    pub(crate) image_sha256: String,
    pub(crate) sig_sha256: String,
    pub(crate) key_sha256: String,
}

/// Served, or refused with the reason.
pub(crate) type PiVerdict = std::result::Result<(), Arc<PiPairError>>;

/// Per-connection facts the router needs.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    /// SHA-256 of the verified client certificate, if one was presented.
    pub(crate) client_cert: Option<String>,
}
