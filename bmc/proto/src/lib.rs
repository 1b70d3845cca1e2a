//! The wire protocol between a Racklet compute unit and its BMC.
//!
//! `no_std`, no allocation. The compute unit (stage1, the booted OS) is the
//! SMBus host; the BMC answers at its SMBus address from
//! `hardware/rack.yaml`. Each exchange is one request frame (an SMBus Block
//! Write with PEC) and one response frame (an SMBus Block Read of the same
//! command, with PEC). The same bytes travel over a UART (QEMU) or a socket
//! (the simulator); see [`frame`] for the layouts and `bmc/README.md` for the
//! command table.
//!
//! A client (stage1) does:
//!
//! ```
//! use racklet_bmc_proto::{Request, Response, SmbusAddr, MAX_FRAME};
//!
//! let addr = SmbusAddr::new(0x20)?;
//! let req = Request::GetBootPlan;
//! let mut out = [0u8; MAX_FRAME];
//! let n = req.encode(addr, &mut out)?;
//! assert_eq!(&out[..n], &[0x40, 0x01, 0x00, 0x93]);
//! // … send &out[..n], read the response frame (see `StreamReader`) …
//! let answer = [0x41, 0x08, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x91];
//! match req.decode_response(addr, &answer)? {
//!     Response::BootPlan(plan) => assert_eq!(plan.tries_left, 2),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), racklet_bmc_proto::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod auth;
mod codec;
pub mod floors;
pub mod frame;
pub mod fuzz;
pub mod message;
pub mod pec;
pub mod response;
pub mod session;
pub mod types;

pub use auth::{Epoch, KeyHalf, SessionKey, Trailer, UnitKey};
pub use floors::{TufFloors, TufRole};
pub use frame::{
    decode_request, decode_response, encode_authenticated, encode_request,
    encode_request_with_trailer, encode_response,
};
pub use frame::{Incoming, StreamReader};
pub use message::{cmd, Request, FW_CHUNK_MAX};
pub use response::{
    AuthStatus, BootPlan, ButtonState, Clock, FwInfo, LastRefusal, PowerMetrics, PowerStatus,
    Refusals, Response, SlotInfo,
};
pub use session::Session;
pub use types::*;

/// Largest SMBus block (SMBus 2.0 limit, kept so any SMBus controller works).
pub const MAX_BLOCK: usize = 32;
/// Largest frame: address, command, count, 32 data bytes, PEC.
pub const MAX_FRAME: usize = MAX_BLOCK + 4;

/// Why a frame or a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PEC byte does not match the frame.
    #[error("PEC mismatch: frame carries 0x{got:02x}, computed 0x{computed:02x}")]
    Pec {
        /// PEC computed over the frame.
        computed: u8,
        /// PEC the frame carries.
        got: u8,
    },
    /// A frame or block of the wrong length.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// What this frame or command takes.
        expected: usize,
        /// What arrived.
        got: usize,
    },
    /// A block count over [`MAX_BLOCK`].
    #[error("block count {0} over the SMBus limit of 32")]
    BlockTooLong(usize),
    /// A command byte not in the table.
    #[error("unknown command 0x{0:02x}")]
    UnknownCommand(u8),
    /// A field outside its range.
    #[error("{field} out of range: {value}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// The value that arrived.
        value: u32,
    },
    /// A frame for another device.
    #[error("frame for address byte 0x{got:02x}, expected 0x{expected:02x}")]
    Address {
        /// Our address byte.
        expected: u8,
        /// The frame's.
        got: u8,
    },
    /// A state-changing request without its counter and tag.
    #[error("command 0x{0:02x} changes state and must carry a counter and a MAC")]
    Unauthenticated(u8),
    /// The BMC answered with an error status.
    #[error("BMC refused the request: {0}")]
    Refused(ErrorCode),
}

impl Error {
    /// The status byte the BMC answers a request that failed to decode with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Pec { .. } => ErrorCode::BadPec,
            Error::Length { .. } | Error::BlockTooLong(_) => ErrorCode::BadLength,
            Error::UnknownCommand(_) => ErrorCode::UnknownCommand,
            Error::OutOfRange { .. } => ErrorCode::OutOfRange,
            Error::Address { .. } => ErrorCode::BadState,
            Error::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Error::Refused(code) => *code,
        }
    }
}
