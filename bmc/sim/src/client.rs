//! A blocking protocol client over any byte stream (TCP to the simulator,
//! the UART of the emulated firmware). stage1 does the same over SMBus.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use racklet_bmc_proto::{Request, Response, SmbusAddr, StreamReader, MAX_FRAME};

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
}

/// One BMC at `addr` behind `stream`.
#[derive(Debug)]
pub struct Client<S> {
    stream: S,
    addr: SmbusAddr,
    timeout: Duration,
}

impl<S: Read + Write> Client<S> {
    /// A client; `stream` should have a short read timeout set (calls poll it).
    pub fn new(stream: S, addr: SmbusAddr) -> Self {
        Client {
            stream,
            addr,
            timeout: Duration::from_secs(5),
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

    /// One request, one response.
    pub fn call(&mut self, req: Request<'_>) -> Result<Response, ClientError> {
        let mut buf = [0u8; MAX_FRAME];
        let n = req.encode(self.addr, &mut buf)?;
        let answer = self.raw(&buf[..n])?;
        Ok(req.decode_response(self.addr, &answer)?)
    }
}
