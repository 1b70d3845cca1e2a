//! The Racklet BMC's logic, `no_std`, no allocation, no `unsafe`.
//!
//! * [`unit::Unit`]: power sequencing, A/B boot slots, button, rollback
//!   counters, clock and power metrics of one compute unit — pure state
//!   machines, events and `now` in, output levels and responses out.
//! * [`store::Store`]: the power-fail-safe state log on NOR flash
//!   (`embedded-storage`).
//! * [`fwupdate`]: Ed25519-signed BMC firmware updates into the inactive bank.
//! * [`pac1921`]: a PAC1921-class power monitor driver (`embedded-hal` I²C).
//! * [`Bmc`]: ties them together for a shell (firmware, simulator): frames
//!   in, frames out, every state change committed before its answer leaves.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod button;
pub mod fwupdate;
pub mod memflash;
pub mod pac1921;
pub mod state;
pub mod store;
pub mod time;
pub mod unit;

use ed25519_dalek::VerifyingKey;
use embedded_storage::nor_flash::NorFlash;
use racklet_bmc_proto::{
    decode_request, encode_response, Error as ProtoError, ErrorCode, FwInfo, Request, Response,
    SmbusAddr, MAX_FRAME,
};

pub use state::Persistent;
pub use store::{Store, StoreError};
pub use time::{Instant, Millis};
pub use unit::{Config, Event, Outputs, Unit};

/// Why a BMC could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state flash could not be mounted.
    #[error("cannot mount the state flash: {0}")]
    MountState(#[source] StoreError),
    /// The firmware bank flash cannot hold two banks.
    #[error("firmware bank flash too small")]
    Banks,
}

/// One BMC: the unit logic, its state store and its firmware banks.
#[derive(Debug)]
pub struct Bmc<S, B> {
    addr: SmbusAddr,
    unit: Unit,
    store: Store<S>,
    banks: B,
    fw: fwupdate::FwUpdater,
    key: VerifyingKey,
}

impl<S: NorFlash, B: NorFlash> Bmc<S, B> {
    /// Mounts the state flash and starts the unit at `now`. `banks` holds
    /// two equal firmware banks; `key` verifies firmware images.
    pub fn new(
        addr: SmbusAddr,
        cfg: Config,
        state_flash: S,
        banks: B,
        key: VerifyingKey,
        now: Instant,
    ) -> Result<Self, Error> {
        if banks.capacity() < 2 * B::ERASE_SIZE {
            return Err(Error::Banks);
        }
        let store = Store::mount(state_flash, Persistent::factory(cfg.max_tries))
            .map_err(Error::MountState)?;
        let unit = Unit::new(cfg, *store.current(), now);
        Ok(Bmc {
            addr,
            unit,
            store,
            banks,
            fw: fwupdate::FwUpdater::default(),
            key,
        })
    }

    /// The unit's logic (read-only).
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// The state store.
    pub fn store(&self) -> &Store<S> {
        &self.store
    }

    /// Gives the state flash and the firmware banks back (the BMC "loses power").
    pub fn into_flashes(self) -> (S, B) {
        (self.store.into_flash(), self.banks)
    }

    /// The firmware banks.
    pub fn banks(&self) -> &B {
        &self.banks
    }

    /// The SMBus address.
    pub fn addr(&self) -> SmbusAddr {
        self.addr
    }

    /// Handles an event; commits any state change. A failed commit puts the
    /// unit in safe off with fault `Storage`.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Outputs {
        self.unit.on_event(event, now);
        if self.store.commit(self.unit.persistent()).is_err() {
            self.unit.storage_fault();
        }
        self.unit.outputs()
    }

    /// Handles one request frame; writes the response frame to `out` and
    /// returns its length, or `None` for a frame addressed to another device.
    ///
    /// A refused request changes nothing, in memory or in flash. An accepted
    /// one is committed before its response is produced; if the commit
    /// fails the change is dropped and the answer is [`ErrorCode::Storage`].
    pub fn handle_frame(
        &mut self,
        frame: &[u8],
        now: Instant,
        out: &mut [u8; MAX_FRAME],
    ) -> Option<usize> {
        let incoming = decode_request(self.addr, frame);
        let result = match incoming.request {
            Err(ProtoError::Address { .. }) => return None,
            Err(e) => Err(e.code()),
            Ok(req) if req.is_authenticated() => {
                let addr = self.addr;
                self.apply(|unit| unit.handle_authenticated(addr, &incoming, now))
            }
            Ok(req) => self.handle_request(&req, now),
        };
        Some(encode_response(
            self.addr,
            incoming.command,
            result.as_ref().map_err(|e| *e),
            out,
        ))
    }

    /// Handles a decoded request (see [`Bmc::handle_frame`]). A decoded
    /// request has lost its MAC: a state-changing one is refused with
    /// [`ErrorCode::Unauthenticated`] (only [`Bmc::handle_frame`] can check it).
    pub fn handle_request(
        &mut self,
        req: &Request<'_>,
        now: Instant,
    ) -> Result<Response, ErrorCode> {
        let snapshot = self.unit.clone();
        let result = match *req {
            Request::FwBegin { version, total_len } => self
                .fw
                .begin(&mut self.banks, self.unit.persistent(), version, total_len)
                .map(|_| Response::Done),
            Request::FwChunk { offset, data } => self
                .fw
                .chunk(&mut self.banks, self.unit.persistent(), offset, data)
                .map(|_| Response::Done),
            Request::FwFinish => self
                .fw
                .finish(&mut self.banks, self.unit.persistent_mut(), &self.key)
                .map(Response::FwInfo),
            Request::GetFwInfo => {
                let st = self.unit.persistent();
                Ok(Response::FwInfo(FwInfo {
                    version: st.fw_version,
                    bank: st.fw_bank,
                }))
            }
            _ => self.unit.handle(req, now),
        };
        self.commit_or_undo(snapshot, result)
    }

    /// Sets the clock from the BMC's own operator interface (a person at
    /// the rack, the simulator's control socket) — not a frame from the
    /// host, so no MAC. Never backwards; committed like a request.
    pub fn set_time_by_operator(
        &mut self,
        time: racklet_bmc_proto::UnixTime,
        now: Instant,
    ) -> Result<(), ErrorCode> {
        self.apply(|unit| unit.set_time(time, now).map(|()| Response::Done))
            .map(drop)
    }

    /// The clock is lost: its RTC battery ran out, or this BMC module
    /// replaced a failed one (the simulator's `clock-lost`). It counts from
    /// 1970 again and says it was never set, so stage1 refuses it and asks
    /// bootd for signed time. Committed like a request.
    pub fn lose_clock(&mut self, now: Instant) -> Result<(), ErrorCode> {
        self.apply(|unit| {
            unit.lose_clock(now);
            Ok(Response::Done)
        })
        .map(drop)
    }

    /// Runs `f` on the unit; keeps its change only if it succeeds and
    /// reaches flash.
    fn apply(
        &mut self,
        f: impl FnOnce(&mut Unit) -> Result<Response, ErrorCode>,
    ) -> Result<Response, ErrorCode> {
        let snapshot = self.unit.clone();
        let result = f(&mut self.unit);
        self.commit_or_undo(snapshot, result)
    }

    fn commit_or_undo(
        &mut self,
        snapshot: Unit,
        result: Result<Response, ErrorCode>,
    ) -> Result<Response, ErrorCode> {
        match result {
            Err(code) => {
                self.unit = snapshot;
                Err(code)
            }
            Ok(resp) => match self.store.commit(self.unit.persistent()) {
                Ok(()) => Ok(resp),
                Err(_) => {
                    self.unit = snapshot;
                    Err(ErrorCode::Storage)
                }
            },
        }
    }
}
