//! A blocking protocol client over any byte stream (TCP to the simulator,
//! the UART of the emulated firmware). stage1 does the same over SMBus.
//!
//! It plays stage1 on the authenticated link too: a state-changing request
//! goes MAC'd over a session it opens while the BMC is unsealed (reading
//! this epoch's session key, after provisioning a random unit key on a BMC
//! that has none). Once the BMC is sealed such requests fail with
//! `Sealed`, as they would for any process in the booted OS.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use racklet_bmc_proto::{
    ErrorCode, Request, Response, Session, SessionKey, SmbusAddr, StreamReader, UnitKey, MAX_FRAME,
};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Reading or writing the stream failed.
    #[error("BMC link I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the timeout.
    #[error("no answer from the BMC within {0:?}")]
    Timeout(Duration),
    /// The answer did not decode, or the BMC refused the request.
    #[error(transparent)]
    Protocol(#[from] racklet_bmc_proto::Error),
    /// A state-changing request, but the BMC reveals no session key.
    #[error("{request} needs a MAC, but no session key: {why}")]
    NoSession {
        /// The request.
        request: String,
        /// What the BMC answered.
        why: racklet_bmc_proto::Error,
    },
}

/// One BMC at `addr` behind `stream`.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
    addr: SmbusAddr,
    timeout: Duration,
    session: Option<Session>,
}

impl<S: Read + Write> Client<S> {
    /// A client; `stream` should have a short read timeout set (calls poll it).
    pub fn new(stream: S, addr: SmbusAddr) -> Self {
        Client {
            stream,
            addr,
            timeout: Duration::from_secs(5),
            session: None,
        }
    }

    /// Sends raw bytes and reads one response frame (for bad-input tests).
    pub fn raw(&mut self, bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        let mut reader = StreamReader::responses();
        let start = Instant::now();
        let mut byte = [0u8; 1];
        loop {
            if start.elapsed() > self.timeout {
                return Err(ClientError::Timeout(self.timeout));
            }
            match self.stream.read(&mut byte) {
                Ok(0) => {
                    return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(_) => {
                    if let Some(Ok(frame)) = reader.push(byte[0]) {
                        return Ok(frame.to_vec());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One request, one response; a state-changing request goes MAC'd
    /// (see the module docs).
    pub fn call(&mut self, req: Request<'_>) -> Result<Response, ClientError> {
        if !req.is_authenticated() {
            return self.call_plain(req);
        }
        let mut session = self.session().map_err(|why| match why {
            ClientError::Protocol(why) => ClientError::NoSession {
                request: format!("{req:?}"),
                why,
            },
            other => other,
        })?;
        let mut buf = [0u8; MAX_FRAME];
        let n = session.encode(self.addr, &req, &mut buf)?;
        self.session = Some(session);
        let answer = self.raw(&buf[..n])?;
        Ok(req.decode_response(self.addr, &answer)?)
    }

    /// One request without a MAC (what any process on the node can send).
    pub fn call_plain(&mut self, req: Request<'_>) -> Result<Response, ClientError> {
        let mut buf = [0u8; MAX_FRAME];
        let n = req.encode(self.addr, &mut buf)?;
        let answer = self.raw(&buf[..n])?;
        Ok(req.decode_response(self.addr, &answer)?)
    }

    /// The session of the BMC's current epoch: the one held if the epoch
    /// has not changed, else a new one (provisioning a random key first on
    /// a BMC without one).
    pub fn session(&mut self) -> Result<Session, ClientError> {
        let st = match self.call_plain(Request::GetAuthStatus)? {
            Response::AuthStatus(st) => st,
            other => return Err(unexpected(other)),
        };
        if let Some(s) = self.session.as_mut().filter(|s| s.epoch() == st.epoch) {
            s.resync(st.last_counter);
            return Ok(s.clone());
        }
        if !st.key_provisioned {
            let key = random_key()?;
            match self.call_plain(Request::ProvisionKey { key }) {
                // Another client provisioned it in between: read it.
                Ok(_)
                | Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(
                    ErrorCode::KeyPresent,
                ))) => {}
                Err(e) => return Err(e),
            }
        }
        let mut halves = [racklet_bmc_proto::KeyHalf([0; 16]); 2];
        for (half, h) in halves.iter_mut().enumerate() {
            match self.call_plain(Request::GetSessionKey { half: half as u8 })? {
                Response::SessionKeyHalf(k) => *h = k,
                other => return Err(unexpected(other)),
            }
        }
        let s = Session::new(
            SessionKey::from_halves(&halves[0], &halves[1]),
            st.epoch,
            st.last_counter,
        );
        self.session = Some(s.clone());
        Ok(s)
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Io(std::io::Error::other(format!("unexpected answer {r:?}")))
}

/// 32 bytes from the OS's CSPRNG.
fn random_key() -> Result<UnitKey, ClientError> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
    Ok(UnitKey::from_bytes(k))
}
