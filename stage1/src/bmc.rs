//! Talking to the BMC with `racklet-bmc-proto` frames over a byte stream:
//! TCP to the simulator (`bmc-sim`), a UART, or (on the board) SMBus.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use racklet_bmc_proto::{
    ImageKind, Request, ResetType, Response, SecurityVersion, Slot, SmbusAddr, StreamReader,
    UnixTime, MAX_FRAME,
};

use crate::error::{Error, Result};
use crate::plan::BmcFacts;

/// Why talking to the BMC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmcError {
    /// The link device could not be opened.
    #[error("cannot open the BMC link {path}: {source}")]
    Open {
        /// The device (after resolving a virtio port name).
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The simulator's socket could not be reached.
    #[error("cannot connect to the BMC simulator at {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The configured SMBus address is not a usable 7-bit address.
    #[error("BMC address {addr:#04x}: {source}")]
    Address {
        /// The address asked for.
        addr: u8,
        /// The protocol crate's reason.
        source: racklet_bmc_proto::Error,
    },
    /// A request could not be encoded.
    #[error("encoding the BMC request {request}: {source}")]
    Encode {
        /// The request.
        request: String,
        /// The protocol crate's reason.
        source: racklet_bmc_proto::Error,
    },
    /// Reading or writing the link failed.
    #[error("BMC link, during {request}: {source}")]
    Link {
        /// The request in flight.
        request: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No answer came in time.
    #[error("no answer from the BMC to {request} within {after:?}")]
    Timeout {
        /// The request.
        request: String,
        /// How long stage1 waited.
        after: Duration,
    },
    /// The link closed before the answer.
    #[error("the BMC link closed before the answer to {request}")]
    Closed {
        /// The request.
        request: String,
    },
    /// The answer did not decode (bad PEC, wrong length, wrong command…).
    #[error("the BMC's answer to {request}: {source}")]
    Decode {
        /// The request.
        request: String,
        /// The protocol crate's reason.
        source: racklet_bmc_proto::Error,
    },
    /// A well-formed answer of the wrong kind.
    #[error("unexpected BMC answer {answer} to {request}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// What came back.
        answer: String,
    },
}

/// One BMC behind a stream.
#[derive(Debug)]
pub struct Bmc<S> {
    stream: S,
    addr: SmbusAddr,
    timeout: Duration,
}

/// What stage1 asks the BMC at the start of a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// For the plan.
    pub plan: BmcFacts,
    /// The BMC's clock (None when it reads 0: never set).
    pub time: Option<jiff::Timestamp>,
    /// Whether this boot was confirmed already.
    pub confirmed: bool,
}

/// The byte stream to a BMC: the simulator's TCP socket, or a character
/// device (a UART; under QEMU a virtio-serial port wired to the simulator).
#[derive(Debug)]
pub enum Link {
    /// `host:port`.
    Tcp(TcpStream),
    /// A device path, opened non-blocking.
    Device(std::fs::File),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf),
            Link::Device(f) => match f.read(buf) {
                // A device has no read timeout: poll it gently instead.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                    Err(e)
                }
                r => r,
            },
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.write(buf),
            Link::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Tcp(s) => s.flush(),
            Link::Device(f) => f.flush(),
        }
    }
}

impl Bmc<Link> {
    /// Opens the link named by `addr`: a path (starting with `/`) is a
    /// character device, anything else `host:port` of the simulator.
    pub fn open(addr: &str, smbus: u8) -> Result<Self> {
        if addr.starts_with('/') {
            use std::os::unix::fs::OpenOptionsExt;
            let path = virtio_port(addr).unwrap_or_else(|| addr.into());
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)
                .map_err(|source| BmcError::Open {
                    path: path.clone(),
                    source,
                })?;
            // Drop whatever a previous run left unread (a late answer).
            let mut junk = [0u8; 256];
            while matches!((&f).read(&mut junk), Ok(n) if n > 0) {}
            return Bmc::new(Link::Device(f), smbus);
        }
        let b = Bmc::connect(addr, smbus)?;
        Bmc::new(Link::Tcp(b.stream), smbus)
    }
}

/// `/dev/virtio-ports/NAME` is a udev symlink; an initramfs has no udev.
/// Finds the port named NAME in sysfs instead (`/dev/vportNpM`), when the
/// link itself is missing.
fn virtio_port(addr: &str) -> Option<std::path::PathBuf> {
    let name = addr.strip_prefix("/dev/virtio-ports/")?;
    if std::path::Path::new(addr).exists() {
        return None;
    }
    std::fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == name))
        .map(|e| std::path::Path::new("/dev").join(e.file_name()))
}

impl Bmc<TcpStream> {
    /// Connects to a simulator socket (`host:port`).
    pub fn connect(addr: &str, smbus: u8) -> Result<Self> {
        let connect = |source| BmcError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let s = TcpStream::connect(addr).map_err(connect)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(connect)?;
        let _ = s.set_nodelay(true);
        Bmc::new(s, smbus)
    }
}

impl<S: Read + Write> Bmc<S> {
    /// A client for the BMC at `smbus` behind `stream` (which should have a
    /// short read timeout).
    pub fn new(stream: S, smbus: u8) -> Result<Self> {
        Ok(Bmc {
            stream,
            addr: SmbusAddr::new(smbus).map_err(|source| BmcError::Address {
                addr: smbus,
                source,
            })?,
            timeout: Duration::from_secs(5),
        })
    }

    /// One request, one response (decoded and PEC-checked by the proto crate).
    pub fn call(&mut self, req: Request<'_>) -> Result<Response> {
        let mut buf = [0u8; MAX_FRAME];
        let request = || format!("{req:?}");
        let n = req
            .encode(self.addr, &mut buf)
            .map_err(|source| BmcError::Encode {
                request: request(),
                source,
            })?;
        let io = |source| BmcError::Link {
            request: request(),
            source,
        };
        self.stream.write_all(&buf[..n]).map_err(io)?;
        self.stream.flush().map_err(io)?;
        let mut reader = StreamReader::responses();
        let start = Instant::now();
        let mut byte = [0u8; 1];
        loop {
            if start.elapsed() > self.timeout {
                return Err(BmcError::Timeout {
                    request: request(),
                    after: self.timeout,
                }
                .into());
            }
            match self.stream.read(&mut byte) {
                Ok(0) => return Err(BmcError::Closed { request: request() }.into()),
                Ok(_) => {
                    if let Some(Ok(frame)) = reader.push(byte[0]) {
                        return req.decode_response(self.addr, frame).map_err(|source| {
                            BmcError::Decode {
                                request: request(),
                                source,
                            }
                            .into()
                        });
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(io(e).into()),
            }
        }
    }

    fn unexpected(request: &'static str, r: Response) -> Error {
        BmcError::Unexpected {
            request,
            answer: format!("{r:?}"),
        }
        .into()
    }

    /// Boot plan, rollback minimum and time.
    pub fn facts(&mut self) -> Result<Facts> {
        let plan = match self.call(Request::GetBootPlan)? {
            Response::BootPlan(p) => p,
            r => return Err(Self::unexpected("GetBootPlan", r)),
        };
        let min = match self.call(Request::GetRollbackMin {
            kind: ImageKind::BootImage,
        })? {
            Response::RollbackMin(v) => v,
            r => return Err(Self::unexpected("GetRollbackMin", r)),
        };
        let time = match self.call(Request::GetTime)? {
            Response::Time(c) if !c.set => None,
            Response::Time(c) => jiff::Timestamp::from_second(c.time.0 as i64).ok(),
            r => return Err(Self::unexpected("GetTime", r)),
        };
        Ok(Facts {
            plan: BmcFacts {
                slot: plan.slot,
                tries_left: plan.tries_left,
                forced_b: plan.forced_by_button,
                fallback: plan.fallback,
                rollback_min: min,
            },
            time,
            confirmed: plan.confirmed,
        })
    }

    /// Tells the BMC a new boot image is in `slot` (it becomes next to boot).
    pub fn report_installed(&mut self, slot: Slot, sv: SecurityVersion) -> Result<()> {
        self.call(Request::ReportInstalled {
            slot,
            kind: ImageKind::BootImage,
            version: sv,
        })
        .map(drop)
    }

    /// The booted OS came up from `slot`.
    pub fn confirm(&mut self, slot: Slot) -> Result<()> {
        self.call(Request::ConfirmBoot { slot }).map(drop)
    }

    /// Raises the rollback minimum (after a confirmed boot); returns it.
    pub fn raise_min(&mut self, sv: SecurityVersion) -> Result<SecurityVersion> {
        match self.call(Request::RaiseRollbackMin {
            kind: ImageKind::BootImage,
            version: sv,
        })? {
            Response::RollbackMin(v) => Ok(v),
            r => Err(Self::unexpected("RaiseRollbackMin", r)),
        }
    }

    /// Sets the BMC clock forward (refused by the BMC if backwards).
    pub fn set_time(&mut self, t: jiff::Timestamp) -> Result<()> {
        self.call(Request::SetTime {
            time: UnixTime(t.as_second().max(0) as u64),
        })
        .map(drop)
    }

    /// Asks for a new boot attempt (reset pulse; the BMC picks the slot).
    pub fn restart(&mut self) -> Result<()> {
        self.call(Request::Reset {
            kind: ResetType::ForceRestart,
        })
        .map(drop)
    }
}
