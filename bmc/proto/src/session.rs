//! The client's side of an epoch: the session key and the next counter.

use crate::auth::{Epoch, SessionKey};
use crate::frame::encode_authenticated;
use crate::types::SmbusAddr;

/// The client's half of a session: the key and the next counter. Sans IO:
/// it only encodes frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    key: SessionKey,
    epoch: Epoch,
    next: u32,
}

impl Session {
    /// A session of `epoch` whose BMC last accepted `last_counter`
    /// (`GetAuthStatus` says both).
    pub fn new(key: SessionKey, epoch: Epoch, last_counter: u32) -> Session {
        Session {
            key,
            epoch,
            next: last_counter.saturating_add(1),
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The counter the next frame will carry.
    pub fn next_counter(&self) -> u32 {
        self.next
    }

    /// Moves the next counter above `last_counter` (what `GetAuthStatus`
    /// says the BMC accepted last: another client of the same epoch may
    /// have sent frames since). Never moves it back.
    pub fn resync(&mut self, last_counter: u32) {
        self.next = self.next.max(last_counter.saturating_add(1));
    }

    /// Encodes `req` with the next counter (and uses it up).
    pub fn encode(
        &mut self,
        addr: SmbusAddr,
        req: &crate::Request<'_>,
        out: &mut [u8; crate::MAX_FRAME],
    ) -> Result<usize, crate::Error> {
        if self.next == u32::MAX {
            // The BMC would refuse every later counter: a new epoch is needed.
            return Err(crate::Error::OutOfRange {
                field: "counter",
                value: self.next,
            });
        }
        let n = encode_authenticated(addr, req, &self.key, self.epoch, self.next, out)?;
        self.next += 1;
        Ok(n)
    }
}
