//! Talking to the BMC with `racklet-bmc-proto` frames over a byte stream:
//! TCP to the simulator (`bmc-sim`), a UART, or (on the board) SMBus.
//!
//! # The authenticated link (`bmc/README.md`, "The authenticated link")
//!
//! Reads are open. A state change (report an install, raise the rollback
//! minimum or a TUF floor, set the clock, confirm a boot, report a refusal) carries a counter and a MAC
//! under this epoch's session key. stage1 runs while the BMC is *unsealed*
//! (from a start of the host by the BMC until [`Bmc::seal`]): the first
//! state change opens a session — provisioning a fresh unit key from the
//! kernel's CSPRNG on a BMC that has none, then reading the epoch's session
//! key. Right before the hand-off stage1 makes a [`ConfirmToken`] (the
//! ConfirmBoot, and RaiseRollbackMin if due, MAC'd for this epoch), puts it
//! on the OS's command line (`racklet.confirm=…`) and seals. The OS cannot
//! MAC anything; `stage1 confirm` inside it sends the token's frames, which
//! work once, in this epoch only.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use racklet_bmc_proto::{
    AuthStatus, ErrorCode, ImageKind, KeyHalf, Request, ResetType, Response, SecurityVersion,
    Session, SessionKey, Slot, SmbusAddr, StreamReader, TufFloors, UnitKey, UnixTime, MAX_FRAME,
};

use crate::error::{Error, Result};
use crate::plan::BmcFacts;

mod floors;
mod link;
mod refusal;
mod token;

pub use link::Link;
pub use token::{
    cmdline_with_confirm_token, ConfirmToken, CONFIRM_CMDLINE_KEY, CONFIRM_EFI_VARIABLE,
};

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
    /// A state change needs a MAC, but stage1 holds no session key (the
    /// BMC is sealed for this boot, or has not started the host since it
    /// itself started) and no confirm token covers it.
    #[error(
        "the BMC refused to authenticate {request}: {why}; only stage1 right after a start of \
         the host by the BMC can change BMC state (the booted OS confirms with the \
         racklet.confirm= token stage1 handed it)"
    )]
    NoSession {
        /// The state change that could not be sent.
        request: String,
        /// Why no session key: the BMC's refusal.
        why: ErrorCode,
    },
    /// The BMC refused an authenticated request because of its MAC or counter.
    #[error("the BMC refused {request} as {why}")]
    Unauthenticated {
        /// The request.
        request: String,
        /// `Unauthenticated`, `Replayed`, `NoKey` …
        why: ErrorCode,
    },
    /// A `racklet.confirm=` word that does not parse.
    #[error("the confirm token on the kernel command line is malformed: {why}")]
    BadToken {
        /// What is wrong.
        why: String,
    },
    /// The key could not be drawn from the kernel's CSPRNG.
    #[error("drawing a BMC unit key: {0}")]
    Random(String),
}

/// One BMC behind a stream.
#[derive(Debug)]
pub struct Bmc<S> {
    stream: S,
    addr: SmbusAddr,
    timeout: Duration,
    /// This epoch's session (stage1 before it seals).
    session: Option<Session>,
    /// The precomputed confirmation (the booted OS).
    token: Option<ConfirmToken>,
}

/// What stage1 asks the BMC at the start of a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// For the plan.
    pub plan: BmcFacts,
    /// The BMC's clock, `None` unless the BMC says it was ever set (a
    /// factory BMC reads 1970 + its uptime: never a time to trust).
    pub time: Option<jiff::Timestamp>,
    /// The clock as read, set or not.
    pub clock: BmcClock,
    /// Whether this boot was confirmed already.
    pub confirmed: bool,
    /// The link: key provisioned, sealed, epoch, last counter.
    pub auth: AuthStatus,
    /// The newest TUF metadata versions the node trusted, as the BMC keeps
    /// them (see [`Bmc::raise_tuf_floors`]).
    pub tuf_floors: TufFloors,
}

/// The BMC's clock reading and whether it was ever set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BmcClock {
    /// What it reads (Unix seconds).
    pub reading: UnixTime,
    /// It was set at least once (persisted in the BMC's flash).
    pub set: bool,
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
            session: None,
            token: None,
        })
    }

    /// Uses `token` for the confirmation it covers when there is no session
    /// (the booted OS: [`crate::boot::BootConfig::confirm_token`]).
    pub fn with_confirm_token(mut self, token: ConfirmToken) -> Self {
        self.token = Some(token);
        self
    }

    /// One request, one response (decoded and PEC-checked by the proto
    /// crate). A state change goes MAC'd ([`Bmc::call_authenticated`]).
    pub fn call(&mut self, req: Request<'_>) -> Result<Response> {
        if req.is_authenticated() {
            return self.call_authenticated(req);
        }
        let mut buf = [0u8; MAX_FRAME];
        let n = req
            .encode(self.addr, &mut buf)
            .map_err(|source| BmcError::Encode {
                request: format!("{req:?}"),
                source,
            })?;
        self.exchange(&req, &buf[..n])
    }

    /// A state change: MAC'd with this epoch's session key (opening the
    /// session first, see [`Bmc::open_session`]), else the confirm token's
    /// frame for exactly this request, else [`BmcError::NoSession`].
    pub fn call_authenticated(&mut self, req: Request<'_>) -> Result<Response> {
        let session_error = match self.open_session() {
            Ok(()) => None,
            Err(Error::Bmc(BmcError::NoSession { why, .. })) => Some(why),
            Err(e) => return Err(e),
        };
        let mut buf = [0u8; MAX_FRAME];
        let frame: Vec<u8> = match (self.session.as_mut(), session_error) {
            (Some(s), _) => {
                let n = s
                    .encode(self.addr, &req, &mut buf)
                    .map_err(|source| BmcError::Encode {
                        request: format!("{req:?}"),
                        source,
                    })?;
                buf[..n].to_vec()
            }
            (None, why) => match self
                .token
                .as_ref()
                .and_then(|t| t.frame_for(self.addr, &req))
            {
                Some(f) => f.to_vec(),
                None => {
                    return Err(BmcError::NoSession {
                        request: format!("{req:?}"),
                        why: why.unwrap_or(ErrorCode::Sealed),
                    }
                    .into())
                }
            },
        };
        self.exchange(&req, &frame).map_err(|e| match e {
            Error::Bmc(BmcError::Decode {
                request,
                source: racklet_bmc_proto::Error::Refused(why),
            }) if matches!(
                why,
                ErrorCode::Unauthenticated | ErrorCode::Replayed | ErrorCode::NoKey
            ) =>
            {
                BmcError::Unauthenticated { request, why }.into()
            }
            e => e,
        })
    }

    /// The link's state.
    pub fn auth_status(&mut self) -> Result<AuthStatus> {
        match self.call(Request::GetAuthStatus)? {
            Response::AuthStatus(a) => Ok(a),
            r => Err(Self::unexpected("GetAuthStatus", r)),
        }
    }

    /// Opens this epoch's session if none is held: provisions a fresh unit
    /// key (kernel CSPRNG) on a BMC that has none, then reads the session
    /// key. Fails with [`BmcError::NoSession`] when the BMC is sealed.
    pub fn open_session(&mut self) -> Result<()> {
        let st = self.auth_status()?;
        if let Some(s) = self.session.as_mut().filter(|s| s.epoch() == st.epoch) {
            // Another client of this epoch (an earlier `Bmc` of the same
            // boot) may have used counters since.
            s.resync(st.last_counter);
            return Ok(());
        }
        self.session = None;
        let refused = |why| BmcError::NoSession {
            request: "opening a session".into(),
            why,
        };
        if !st.session || st.sealed {
            return Err(refused(ErrorCode::Sealed).into());
        }
        if !st.key_provisioned {
            let mut k = [0u8; 32];
            crate::sys::random_bytes(&mut k).map_err(|e| BmcError::Random(e.to_string()))?;
            match self.call(Request::ProvisionKey {
                key: UnitKey::from_bytes(k),
            }) {
                // Someone provisioned it first (a simulator's operator): read it.
                Ok(_)
                | Err(Error::Bmc(BmcError::Decode {
                    source: racklet_bmc_proto::Error::Refused(ErrorCode::KeyPresent),
                    ..
                })) => {}
                Err(Error::Bmc(BmcError::Decode {
                    source: racklet_bmc_proto::Error::Refused(why),
                    ..
                })) => return Err(refused(why).into()),
                Err(e) => return Err(e),
            }
            k.fill(0);
            tracing::info!(epoch = st.epoch.0, "provisioned a new unit key in the BMC");
        }
        let mut halves = [KeyHalf([0; 16]); 2];
        for (half, h) in halves.iter_mut().enumerate() {
            match self.call(Request::GetSessionKey { half: half as u8 }) {
                Ok(Response::SessionKeyHalf(k)) => *h = k,
                Ok(r) => return Err(Self::unexpected("GetSessionKey", r)),
                Err(Error::Bmc(BmcError::Decode {
                    source: racklet_bmc_proto::Error::Refused(why),
                    ..
                })) => return Err(refused(why).into()),
                Err(e) => return Err(e),
            }
        }
        self.session = Some(Session::new(
            SessionKey::from_halves(&halves[0], &halves[1]),
            st.epoch,
            st.last_counter,
        ));
        Ok(())
    }

    /// The booted OS's confirmation for this epoch: ConfirmBoot of `slot`
    /// and, with `raise_to`, RaiseRollbackMin to it — MAC'd now, with the
    /// next counters. Make it last, right before [`Bmc::seal`]: a state
    /// change stage1 sends after it uses a higher counter and so voids it.
    pub fn confirm_token(
        &mut self,
        slot: Slot,
        raise_to: Option<SecurityVersion>,
    ) -> Result<ConfirmToken> {
        self.open_session()?;
        let mut reqs = vec![Request::ConfirmBoot { slot }];
        if let Some(version) = raise_to {
            reqs.push(Request::RaiseRollbackMin {
                kind: ImageKind::BootImage,
                version,
            });
        }
        let mut frames = Vec::new();
        for req in reqs {
            let mut buf = [0u8; MAX_FRAME];
            let s = self.session.as_mut().ok_or_else(|| BmcError::NoSession {
                request: format!("{req:?}"),
                why: ErrorCode::Sealed,
            })?;
            let n = s
                .encode(self.addr, &req, &mut buf)
                .map_err(|source| BmcError::Encode {
                    request: format!("{req:?}"),
                    source,
                })?;
            frames.push(buf[..n].to_vec());
        }
        Ok(ConfirmToken::from_frames(frames))
    }

    /// Seals the BMC: it reveals no key until it next powers on or resets
    /// the host. stage1 seals right before the hand-off; this client forgets
    /// its session key too.
    pub fn seal(&mut self) -> Result<()> {
        self.session = None;
        self.call(Request::Seal).map(drop)
    }

    /// Sends one encoded frame of `req` and decodes the answer.
    fn exchange(&mut self, req: &Request<'_>, frame: &[u8]) -> Result<Response> {
        let request = || format!("{req:?}");
        let io = |source| BmcError::Link {
            request: request(),
            source,
        };
        self.stream.write_all(frame).map_err(io)?;
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

    /// Boot plan, rollback minimum, time, the link's status and the TUF floors.
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
        let clock = match self.call(Request::GetTime)? {
            Response::Time(c) => BmcClock {
                reading: c.time,
                set: c.set,
            },
            r => return Err(Self::unexpected("GetTime", r)),
        };
        let time = if clock.set {
            i64::try_from(clock.reading.0)
                .ok()
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
        } else {
            None
        };
        let auth = self.auth_status()?;
        let tuf_floors = self.tuf_floors()?;
        Ok(Facts {
            plan: BmcFacts {
                slot: plan.slot,
                tries_left: plan.tries_left,
                forced_b: plan.forced_by_button,
                fallback: plan.fallback,
                rollback_min: min,
            },
            time,
            clock,
            confirmed: plan.confirmed,
            auth,
            tuf_floors,
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
