//! SMBus transactions, and the same bytes over a byte stream.
//!
//! A request is an SMBus **Block Write** with PEC:
//!
//! | byte | value |
//! |---|---|
//! | 0 | `addr << 1 \| 0` |
//! | 1 | command |
//! | 2 | count N (0..=32) |
//! | 3..3+N | data |
//! | 3+N | PEC over bytes 0..3+N |
//!
//! The response is read with an SMBus **Block Read** of the same command:
//! on the bus the host sends `addr<<1|0, command, Sr, addr<<1|1`, the BMC
//! answers `count, status, payload…, PEC`. Over a stream (UART, socket) the
//! response frame is:
//!
//! | byte | value |
//! |---|---|
//! | 0 | `addr << 1 \| 1` |
//! | 1 | count N (1..=32) |
//! | 2 | status: 0 = ok, else an [`ErrorCode`] |
//! | 3..2+N | payload (empty unless status is 0) |
//! | 2+N | PEC over `addr<<1\|0, command, addr<<1\|1`, then bytes 1..2+N |
//!
//! The PEC of a response is exactly the PEC of the SMBus Block Read, so the
//! same value checks on the bus and on a stream, and it binds the response
//! to the command it answers.
//!
//! A state-changing request ([`Request::is_authenticated`]) carries a
//! counter and a tag after its data (see [`crate::auth`]); the count byte
//! covers them.

use crate::auth::{self, Epoch, SessionKey, Trailer, TRAILER_LEN};
use crate::message::Request;
use crate::pec::Pec;
use crate::response::Response;
use crate::types::{ErrorCode, SmbusAddr};
use crate::{Error, MAX_BLOCK, MAX_FRAME};

/// Encodes `req` as a Block Write frame for the BMC at `addr`, without a
/// MAC. Returns its length. (A state-changing request sent this way is
/// refused with [`ErrorCode::Unauthenticated`]; use [`encode_authenticated`].)
pub fn encode_request(
    addr: SmbusAddr,
    req: &Request<'_>,
    out: &mut [u8; MAX_FRAME],
) -> Result<usize, Error> {
    let mut data = [0u8; MAX_BLOCK];
    let n = req.encode_data(&mut data)?;
    Ok(put_frame(addr, req.command(), &data[..n], out))
}

/// Encodes an authenticated request with a given trailer (the BMC's codec
/// re-encodes what it decoded; clients use [`encode_authenticated`]).
pub fn encode_request_with_trailer(
    addr: SmbusAddr,
    req: &Request<'_>,
    trailer: &Trailer,
    out: &mut [u8; MAX_FRAME],
) -> Result<usize, Error> {
    if !req.is_authenticated() {
        return Err(Error::OutOfRange {
            field: "authenticated command",
            value: req.command().into(),
        });
    }
    let mut data = [0u8; MAX_BLOCK];
    let n = req.encode_data(&mut data)?;
    if n + TRAILER_LEN > MAX_BLOCK {
        return Err(Error::BlockTooLong(n + TRAILER_LEN));
    }
    data[n..n + TRAILER_LEN].copy_from_slice(&trailer.to_bytes());
    Ok(put_frame(
        addr,
        req.command(),
        &data[..n + TRAILER_LEN],
        out,
    ))
}

/// Encodes a state-changing request MAC'd with `key` for `epoch` and
/// carrying `counter`. Returns its length.
pub fn encode_authenticated(
    addr: SmbusAddr,
    req: &Request<'_>,
    key: &SessionKey,
    epoch: Epoch,
    counter: u32,
    out: &mut [u8; MAX_FRAME],
) -> Result<usize, Error> {
    let mut data = [0u8; MAX_BLOCK];
    let n = req.encode_data(&mut data)?;
    let trailer = Trailer {
        counter,
        tag: auth::tag(key, addr, req.command(), &data[..n], epoch, counter),
    };
    encode_request_with_trailer(addr, req, &trailer, out)
}

fn put_frame(addr: SmbusAddr, command: u8, data: &[u8], out: &mut [u8; MAX_FRAME]) -> usize {
    let n = data.len();
    out[0] = addr.write_byte();
    out[1] = command;
    out[2] = n as u8;
    out[3..3 + n].copy_from_slice(data);
    out[3 + n] = crate::pec::pec(&out[..3 + n]);
    4 + n
}

/// A request frame as the BMC parsed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The command byte (0 when the frame is too short to have one).
    pub command: u8,
    /// The request, or why it is refused.
    pub request: Result<Request<'a>, Error>,
    /// The counter and tag of an authenticated request (not yet checked:
    /// see [`Incoming::verify`]).
    pub auth: Option<Trailer>,
    /// The command's data without the trailer (what the tag covers).
    pub payload: &'a [u8],
}

impl Incoming<'_> {
    /// True when the frame carries a trailer whose tag is right for `key`
    /// in `epoch`. Constant time in the tag.
    pub fn verify(&self, addr: SmbusAddr, key: &SessionKey, epoch: Epoch) -> bool {
        match &self.auth {
            Some(t) => auth::verify(key, addr, self.command, self.payload, epoch, t),
            None => false,
        }
    }
}

/// Parses a complete Block Write frame addressed to `addr` (the BMC's side).
///
/// A frame for another address yields [`Error::Address`]: the BMC must not
/// answer it. Every other error is answered with [`Error::code`].
///
/// A state-changing command must carry the [`crate::auth`] trailer: without
/// one it is [`Error::Unauthenticated`]. The tag is *not* checked here (the
/// codec has no key): the BMC calls [`Incoming::verify`].
pub fn decode_request(addr: SmbusAddr, frame: &[u8]) -> Incoming<'_> {
    let command = frame.get(1).copied().unwrap_or(0);
    match decode_request_inner(addr, frame) {
        Ok((request, payload, auth)) => Incoming {
            command,
            request: Ok(request),
            auth,
            payload,
        },
        Err(e) => Incoming {
            command,
            request: Err(e),
            auth: None,
            payload: &[],
        },
    }
}

type Decoded<'a> = (Request<'a>, &'a [u8], Option<Trailer>);

fn decode_request_inner(addr: SmbusAddr, frame: &[u8]) -> Result<Decoded<'_>, Error> {
    if frame.len() < 4 {
        return Err(Error::Length {
            expected: 4,
            got: frame.len(),
        });
    }
    if frame[0] != addr.write_byte() {
        return Err(Error::Address {
            expected: addr.write_byte(),
            got: frame[0],
        });
    }
    let count = usize::from(frame[2]);
    if count > MAX_BLOCK {
        return Err(Error::BlockTooLong(count));
    }
    if frame.len() != count + 4 {
        return Err(Error::Length {
            expected: count + 4,
            got: frame.len(),
        });
    }
    let computed = crate::pec::pec(&frame[..3 + count]);
    if computed != frame[3 + count] {
        return Err(Error::Pec {
            computed,
            got: frame[3 + count],
        });
    }
    let data = &frame[3..3 + count];
    if crate::message::is_authenticated(frame[1]) {
        let Some(split) = data.len().checked_sub(TRAILER_LEN) else {
            return Err(Error::Unauthenticated(frame[1]));
        };
        let (payload, trailer) = data.split_at(split);
        let mut t = [0u8; TRAILER_LEN];
        t.copy_from_slice(trailer);
        let req = Request::decode(frame[1], payload)?;
        return Ok((req, payload, Some(Trailer::from_bytes(&t))));
    }
    Ok((Request::decode(frame[1], data)?, data, None))
}

fn response_pec(addr: SmbusAddr, command: u8) -> Pec {
    Pec::new()
        .update(addr.write_byte())
        .update(command)
        .update(addr.read_byte())
}

/// Encodes the BMC's answer to `command`. Returns its length.
pub fn encode_response(
    addr: SmbusAddr,
    command: u8,
    result: Result<&Response, ErrorCode>,
    out: &mut [u8; MAX_FRAME],
) -> usize {
    let mut payload = [0u8; MAX_BLOCK];
    let (status, n) = match result {
        Ok(r) => (0u8, r.encode_payload(&mut payload)),
        Err(code) => (code.to_byte(), 0),
    };
    out[0] = addr.read_byte();
    out[1] = (n + 1) as u8;
    out[2] = status;
    out[3..3 + n].copy_from_slice(&payload[..n]);
    out[3 + n] = response_pec(addr, command)
        .update_slice(&out[1..3 + n])
        .value();
    4 + n
}

/// Parses the BMC's answer to `command` (the compute unit's side).
///
/// A non-zero status becomes [`Error::Refused`].
pub fn decode_response(addr: SmbusAddr, command: u8, frame: &[u8]) -> Result<Response, Error> {
    if frame.len() < 4 {
        return Err(Error::Length {
            expected: 4,
            got: frame.len(),
        });
    }
    if frame[0] != addr.read_byte() {
        return Err(Error::Address {
            expected: addr.read_byte(),
            got: frame[0],
        });
    }
    let count = usize::from(frame[1]);
    if count > MAX_BLOCK {
        return Err(Error::BlockTooLong(count));
    }
    if count == 0 || frame.len() != count + 3 {
        return Err(Error::Length {
            expected: count.max(1) + 3,
            got: frame.len(),
        });
    }
    let computed = response_pec(addr, command)
        .update_slice(&frame[1..2 + count])
        .value();
    if computed != frame[2 + count] {
        return Err(Error::Pec {
            computed,
            got: frame[2 + count],
        });
    }
    match frame[2] {
        0 => Response::decode(command, &frame[3..2 + count]),
        code => {
            if count != 1 {
                return Err(Error::Length {
                    expected: 4,
                    got: frame.len(),
                });
            }
            Err(Error::Refused(ErrorCode::from_byte(code)))
        }
    }
}

impl Request<'_> {
    /// Encodes this request for the BMC at `addr` (see [`encode_request`]).
    pub fn encode(&self, addr: SmbusAddr, out: &mut [u8; MAX_FRAME]) -> Result<usize, Error> {
        encode_request(addr, self, out)
    }

    /// Parses the BMC's response frame to this request (see [`decode_response`]).
    pub fn decode_response(&self, addr: SmbusAddr, frame: &[u8]) -> Result<Response, Error> {
        decode_response(addr, self.command(), frame)
    }
}

/// Which side of the link a [`StreamReader`] sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Reads request frames (the BMC): count is byte 2.
    Requests,
    /// Reads response frames (the compute unit): count is byte 1.
    Responses,
}

/// Splits a byte stream (UART, socket) into frames, with no allocation.
///
/// Frames are self-delimiting by their count byte. A count over 32 cannot be
/// a frame: the reader reports [`Error::BlockTooLong`] and starts over at the
/// next byte. A reader that sees a gap in the stream mid-frame should be
/// [`reset`](Self::reset) by its owner (the firmware and simulator do so
/// after 50 ms of silence), so one lost byte costs one frame, not the link.
#[derive(Clone, Debug)]
pub struct StreamReader {
    dir: Direction,
    buf: [u8; MAX_FRAME],
    len: usize,
}

impl StreamReader {
    /// A reader of request frames (for the BMC).
    pub const fn requests() -> Self {
        StreamReader {
            dir: Direction::Requests,
            buf: [0; MAX_FRAME],
            len: 0,
        }
    }

    /// A reader of response frames (for the compute unit).
    pub const fn responses() -> Self {
        StreamReader {
            dir: Direction::Responses,
            buf: [0; MAX_FRAME],
            len: 0,
        }
    }

    /// Drops a partial frame.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// True when part of a frame has been read.
    pub fn is_mid_frame(&self) -> bool {
        self.len != 0
    }

    /// Feeds one byte. Returns a complete frame, an error for an impossible
    /// count (with the command byte, for requests, so it can be answered),
    /// or `None` while a frame is still incomplete.
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], (u8, Error)>> {
        let count_at = match self.dir {
            Direction::Requests => 2,
            Direction::Responses => 1,
        };
        self.buf[self.len] = byte;
        self.len += 1;
        if self.len <= count_at {
            return None;
        }
        let count = usize::from(self.buf[count_at]);
        if count > MAX_BLOCK {
            let command = if count_at == 2 { self.buf[1] } else { 0 };
            self.len = 0;
            return Some(Err((command, Error::BlockTooLong(count))));
        }
        let total = count_at + 1 + count + 1;
        if self.len == total {
            self.len = 0;
            Some(Ok(&self.buf[..total]))
        } else {
            None
        }
    }
}
