//! The running simulator: a ticker driving every unit, one protocol socket
//! per unit, the control socket and the metrics endpoint.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use racklet_bmc_core::{Config, Instant, Millis};
use racklet_bmc_proto::{encode_response, StreamReader, MAX_FRAME};
use racklet_hardware::Rack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::{Shared, SimClock};
use crate::unit::{SimUnit, UnitError};

/// What to simulate, and how.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The rack (from `hardware/rack.yaml`).
    pub rack: Rack,
    /// Where each unit's flash files live (`<unit>.state.flash`, `<unit>.banks.flash`).
    pub state_dir: PathBuf,
    /// Simulated milliseconds per real millisecond (1.0: real time).
    pub speed: f64,
    /// Replaces the rack's confirmation window (demos, tests).
    pub watchdog: Option<Duration>,
    /// How long a graceful shutdown waits for the OS.
    pub graceful_timeout: Duration,
}

impl SimConfig {
    /// Real time, the rack's own timings, a 10 s graceful-shutdown window.
    pub fn new(rack: Rack, state_dir: PathBuf) -> SimConfig {
        SimConfig {
            rack,
            state_dir,
            speed: 1.0,
            watchdog: None,
            graceful_timeout: Duration::from_secs(10),
        }
    }

    /// The core configuration of the unit at `position` in the rack.
    pub fn unit_config(&self, position: usize) -> Config {
        let ms = |d: Duration| Millis(d.as_millis() as u64);
        let p = &self.rack.power;
        Config {
            power_good_timeout: ms(p.power_good_timeout),
            reset_hold: ms(p.reset_hold),
            stagger_delay: Millis(ms(p.stagger).0 * position as u64),
            auto_power_on: true,
            graceful_timeout: ms(self.graceful_timeout),
            power_off_time: Millis(500),
            watchdog: ms(self.watchdog.unwrap_or(self.rack.boot.watchdog)),
            max_tries: self.rack.boot.max_tries,
            ..Config::default()
        }
    }
}

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The state directory could not be created.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A unit could not start.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Listener count does not match the rack.
    #[error("{got} unit listeners for a rack of {want} units")]
    Listeners {
        /// Units in the rack.
        want: usize,
        /// Listeners given.
        got: usize,
    },
}

/// The sockets the simulator serves (bound by the caller, so tests can use port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Control interface (line protocol, see [`crate::control`]).
    pub control: TcpListener,
    /// OpenMetrics over HTTP (`GET /metrics`).
    pub metrics: TcpListener,
    /// The BMC protocol, one per unit in rack order.
    pub units: Vec<TcpListener>,
}

impl Listeners {
    /// Binds `control`, `metrics`, and units on `units_base`, `units_base + 1`, …
    /// (all ephemeral when `units_base` has port 0).
    pub async fn bind(
        control: SocketAddr,
        metrics: SocketAddr,
        units_base: SocketAddr,
        count: usize,
    ) -> std::io::Result<Listeners> {
        let mut units = Vec::with_capacity(count);
        for i in 0..count {
            let mut a = units_base;
            if a.port() != 0 {
                a.set_port(a.port() + i as u16);
            }
            units.push(TcpListener::bind(a).await?);
        }
        Ok(Listeners {
            control: TcpListener::bind(control).await?,
            metrics: TcpListener::bind(metrics).await?,
            units,
        })
    }
}

/// Runs the simulator until `shutdown` completes.
pub async fn run(
    cfg: SimConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let nodes = &cfg.rack.nodes;
    if listeners.units.len() != nodes.len() {
        return Err(SimError::Listeners {
            want: nodes.len(),
            got: listeners.units.len(),
        });
    }
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| SimError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    // Every BMC starts at simulated time 0, and the clock starts once all
    // are up, so opening flash files cannot eat into the stagger.
    let mut units = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let u = SimUnit::start(node, cfg.unit_config(i), &cfg.state_dir, Instant(0))?;
        tracing::info!(
            unit = %u.name,
            addr = format_args!("0x{:02x}", node.smbus_address),
            seq = u.bmc.store().sequence(),
            "BMC started"
        );
        units.push(Mutex::new(u));
    }
    let clock = SimClock::start(cfg.speed);
    let sockets = listeners
        .units
        .iter()
        .map(|l| l.local_addr().expect("bound listener"))
        .collect();
    let shared = Arc::new(Shared {
        units,
        sockets,
        clock,
    });

    let mut tasks = tokio::task::JoinSet::new();
    {
        let shared = shared.clone();
        tasks.spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_millis(5));
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                iv.tick().await;
                let now = shared.clock.now();
                for i in 0..shared.units.len() {
                    shared.unit(i).step(now);
                }
            }
        });
    }
    for (i, l) in listeners.units.into_iter().enumerate() {
        let shared = shared.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, peer)) = l.accept().await else {
                    continue;
                };
                tracing::debug!(unit = i, %peer, "protocol connection");
                tokio::spawn(serve_link(shared.clone(), i, stream));
            }
        });
    }
    tasks.spawn(crate::control::serve(shared.clone(), listeners.control));
    tasks.spawn(crate::metrics::serve(shared.clone(), listeners.metrics));

    shutdown.await;
    tasks.shutdown().await;
    tracing::info!("simulator stopped");
    Ok(())
}

/// One protocol connection: the byte-stream framing of `racklet-bmc-proto`.
async fn serve_link(shared: Arc<Shared>, i: usize, mut stream: TcpStream) {
    let mut reader = StreamReader::requests();
    let mut buf = [0u8; 256];
    loop {
        let n = match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            // 50 ms of silence ends a partial frame.
            Err(_) => {
                reader.reset();
                continue;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        for &b in &buf[..n] {
            let reply = match reader.push(b) {
                None => continue,
                Some(Ok(frame)) => {
                    let now = shared.clock.now();
                    shared.unit(i).frame(frame, now)
                }
                Some(Err((command, e))) => {
                    let addr = shared.unit(i).bmc.addr();
                    let mut out = [0u8; MAX_FRAME];
                    let n = encode_response(addr, command, Err(e.code()), &mut out);
                    Some(out[..n].to_vec())
                }
            };
            if let Some(r) = reply {
                if stream.write_all(&r).await.is_err() {
                    return;
                }
            }
        }
    }
}
