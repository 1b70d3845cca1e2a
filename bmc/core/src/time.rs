//! Monotonic time as the shell hands it in. The core never reads a clock.

use core::ops::{Add, Sub};

/// Milliseconds since the BMC started (monotonic; wraps after 584 million years).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

/// A span of time in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

impl Millis {
    /// Whole seconds.
    pub const fn from_secs(s: u64) -> Millis {
        Millis(s * 1000)
    }
}

impl Add<Millis> for Instant {
    type Output = Instant;
    fn add(self, d: Millis) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Sub<Instant> for Instant {
    type Output = Millis;
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    fn sub(self, earlier: Instant) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}
