//! What the simulator's tasks share: the units, their protocol sockets and
//! simulated time. `server` builds it; its protocol links, the control
//! socket (`control`) and the metrics endpoint (`metrics`) each hold an
//! `Arc` of it, so none of them needs another.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use racklet_bmc_core::Instant;

use crate::unit::SimUnit;

/// Simulated time.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start: std::time::Instant,
    speed: f64,
}

impl SimClock {
    /// A clock at simulated time 0 now, running `speed` simulated
    /// milliseconds per real millisecond.
    pub fn start(speed: f64) -> SimClock {
        SimClock {
            start: std::time::Instant::now(),
            speed,
        }
    }

    /// Simulated milliseconds since the simulator started.
    pub fn now(&self) -> Instant {
        Instant((self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as u64)
    }
}

/// What the tasks share.
#[derive(Debug)]
pub struct Shared {
    /// Units in rack order.
    pub units: Vec<Mutex<SimUnit>>,
    /// Protocol socket of each unit.
    pub sockets: Vec<SocketAddr>,
    /// Simulated time.
    pub clock: SimClock,
}

impl Shared {
    /// Locks a unit (a poisoned lock means a unit panicked: propagate).
    pub fn unit(&self, i: usize) -> MutexGuard<'_, SimUnit> {
        self.units[i].lock().expect("unit lock poisoned")
    }

    /// Index of the unit called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        (0..self.units.len()).find(|&i| self.unit(i).name == name)
    }
}
