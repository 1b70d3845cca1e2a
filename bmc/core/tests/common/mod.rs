//! A BMC on NOR-accurate RAM flash with a simulated rail, driven through
//! real protocol frames.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use racklet_bmc_core::memflash::{MemFlash, SECTOR};
use racklet_bmc_core::{Bmc, Config, Event, Instant, Millis, Outputs};
use racklet_bmc_proto::{
    decode_response, encode_request, AuthStatus, Error, ErrorCode, Request, Response, Session,
    SessionKey, SmbusAddr, UnitKey, MAX_FRAME,
};

pub type StateFlash = MemFlash<{ 2 * SECTOR }>;
pub type Banks = MemFlash<{ 8 * SECTOR }>;

pub const ADDR: u8 = 0x20;

/// The unit key the rig provisions on a factory BMC, as stage1 would.
pub fn unit_key() -> UnitKey {
    UnitKey::from_bytes([0x42; 32])
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&racklet_bmc_core::fwupdate::danger::INSECURE_EXAMPLE_SEED)
}

#[test]
fn the_example_public_key_is_the_seeds() {
    assert_eq!(
        signing_key().verifying_key().to_bytes(),
        racklet_bmc_core::fwupdate::danger::INSECURE_EXAMPLE_PUBLIC_KEY
    );
}

pub fn test_config() -> Config {
    Config {
        power_good_timeout: Millis(100),
        reset_hold: Millis(20),
        stagger_delay: Millis(250),
        auto_power_on: true,
        graceful_timeout: Millis(1000),
        power_off_time: Millis(500),
        watchdog: Millis(5000),
        max_tries: 3,
        debounce: Millis(20),
        long_press: Millis(3000),
        key_clear_press: Millis(10_000),
    }
}

pub struct Rig {
    pub bmc: Bmc<StateFlash, Banks>,
    pub now: Instant,
    /// The rail answers power-good this long after it is enabled (None: never).
    pub pg_delay: Option<Millis>,
    rail_since: Option<Instant>,
    pub out: Outputs,
    /// Every output change, with its time.
    pub trace: Vec<(Instant, Outputs)>,
    /// stage1's side of the link (see [`Rig::session`]).
    pub session: Option<Session>,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::with(test_config(), StateFlash::new(), Banks::new())
    }

    pub fn with(cfg: Config, flash: StateFlash, banks: Banks) -> Rig {
        let now = Instant(0);
        let addr = SmbusAddr::new(ADDR).unwrap();
        let bmc = Bmc::new(addr, cfg, flash, banks, signing_key().verifying_key(), now).unwrap();
        let out = bmc.unit().outputs();
        let mut rig = Rig {
            bmc,
            now,
            pg_delay: Some(Millis(5)),
            rail_since: None,
            out,
            trace: vec![(now, out)],
            session: None,
        };
        rig.event(Event::Tick);
        rig
    }

    /// The BMC loses power and restarts on the same flash (RAM state gone).
    pub fn restart(self) -> Rig {
        let cfg = *self.bmc.unit().config();
        let (flash, banks) = self.into_flashes();
        Rig::with(cfg, flash, banks)
    }

    pub fn into_flashes(self) -> (StateFlash, Banks) {
        self.bmc.into_flashes()
    }

    pub fn event(&mut self, e: Event) {
        let out = self.bmc.on_event(e, self.now);
        self.apply(out);
    }

    fn apply(&mut self, out: Outputs) {
        if out != self.out {
            self.trace.push((self.now, out));
        }
        if out.rail_on && !self.out.rail_on {
            self.rail_since = Some(self.now);
        }
        if !out.rail_on {
            self.rail_since = None;
        }
        self.out = out;
    }

    /// Advances time in 5 ms steps, feeding power-good as the rail model says.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.0 + ms;
        while self.now.0 < end {
            self.now = Instant(self.now.0 + 5);
            let pg = match (self.rail_since, self.pg_delay) {
                (Some(since), Some(d)) => self.now - since >= d,
                _ => false,
            };
            self.event(Event::PowerGood(pg));
        }
    }

    /// Holds the button for `ms`, then releases it and lets debounce settle.
    pub fn press(&mut self, ms: u64) {
        self.event(Event::Button(true));
        self.advance(ms);
        self.event(Event::Button(false));
        self.advance(50);
    }

    /// Sends `req` as a frame and decodes the answer frame; a state-changing
    /// request goes MAC'd, as stage1 sends it ([`Rig::session`]).
    pub fn call(&mut self, req: Request<'_>) -> Result<Response, Error> {
        if req.is_authenticated() {
            let mut s = self.session()?;
            let mut f = [0u8; MAX_FRAME];
            let n = s.encode(addr(), &req, &mut f).unwrap();
            self.session = Some(s);
            return self.exchange(&f[..n], req.command());
        }
        self.call_plain(req)
    }

    /// Sends `req` without a MAC (what any process on the node can do).
    pub fn call_plain(&mut self, req: Request<'_>) -> Result<Response, Error> {
        let mut f = [0u8; MAX_FRAME];
        let n = encode_request(addr(), &req, &mut f).unwrap();
        self.exchange(&f[..n], req.command())
    }

    pub fn auth_status(&mut self) -> AuthStatus {
        match self.ok(Request::GetAuthStatus) {
            Response::AuthStatus(a) => a,
            other => panic!("{other:?}"),
        }
    }

    /// stage1's session for the current epoch: kept while the epoch lasts;
    /// else opened as stage1 opens it — provision [`unit_key`] on a BMC
    /// without a key, read this epoch's session key.
    pub fn session(&mut self) -> Result<Session, Error> {
        let st = self.auth_status();
        if let Some(s) = &self.session {
            if s.epoch() == st.epoch {
                return Ok(s.clone());
            }
        }
        if !st.key_provisioned {
            self.call(Request::ProvisionKey { key: unit_key() })?;
        }
        let key = self.read_session_key()?;
        let s = Session::new(key, st.epoch, st.last_counter);
        self.session = Some(s.clone());
        Ok(s)
    }

    pub fn read_session_key(&mut self) -> Result<SessionKey, Error> {
        let mut halves = vec![];
        for half in 0..2 {
            match self.call(Request::GetSessionKey { half })? {
                Response::SessionKeyHalf(h) => halves.push(h),
                other => panic!("{other:?}"),
            }
        }
        Ok(SessionKey::from_halves(&halves[0], &halves[1]))
    }

    fn exchange(&mut self, frame: &[u8], command: u8) -> Result<Response, Error> {
        let f = frame;
        let n = f.len();
        let mut out = [0u8; MAX_FRAME];
        let m = self
            .bmc
            .handle_frame(&f[..n], self.now, &mut out)
            .expect("answered");
        let outputs = self.bmc.unit().outputs();
        self.apply(outputs);
        decode_response(addr(), command, &out[..m])
    }

    pub fn ok(&mut self, req: Request<'_>) -> Response {
        self.call(req)
            .unwrap_or_else(|e| panic!("{req:?} refused: {e}"))
    }

    pub fn refused(&mut self, req: Request<'_>) -> ErrorCode {
        match self.call(req) {
            Err(Error::Refused(code)) => code,
            other => panic!("{req:?} should be refused, got {other:?}"),
        }
    }

    /// Sends raw frame bytes; returns the raw answer.
    pub fn raw(&mut self, frame: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; MAX_FRAME];
        self.bmc
            .handle_frame(frame, self.now, &mut out)
            .map(|m| out[..m].to_vec())
    }

    pub fn plan(&mut self) -> racklet_bmc_proto::BootPlan {
        match self.ok(Request::GetBootPlan) {
            Response::BootPlan(p) => p,
            other => panic!("{other:?}"),
        }
    }

    pub fn power(&mut self) -> racklet_bmc_proto::PowerStatus {
        match self.ok(Request::GetPowerStatus) {
            Response::PowerStatus(p) => p,
            other => panic!("{other:?}"),
        }
    }

    pub fn slot(&mut self, slot: racklet_bmc_proto::Slot) -> racklet_bmc_proto::SlotInfo {
        match self.ok(Request::GetSlotInfo { slot }) {
            Response::SlotInfo(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// Flash program/erase operations so far.
    pub fn flash_ops(&self) -> usize {
        self.bmc.store().flash().ops
    }

    /// Runs until the unit is on (reset released).
    pub fn until_on(&mut self) {
        for _ in 0..2000 {
            if self.out.rail_on && !self.out.reset_asserted {
                return;
            }
            self.advance(5);
        }
        panic!("unit never came on: {:?}", self.bmc.unit().power_status());
    }
}

pub fn addr() -> SmbusAddr {
    SmbusAddr::new(ADDR).unwrap()
}

/// A unit on, its key provisioned by "stage1", in epoch 1.
pub fn provisioned() -> Rig {
    let mut r = Rig::new();
    r.until_on();
    r.session().unwrap();
    assert!(r.auth_status().key_provisioned);
    r
}

/// The client's error for a request the BMC refused with `code`.
pub fn refused(code: ErrorCode) -> Error {
    Error::Refused(code)
}

/// Cuts power at every flash operation that `req` (MAC'd by "stage1" on a
/// provisioned unit) takes. Each time the request is refused `Storage`
/// and changes nothing in RAM; the state remounted after the cut is the
/// old or the new one as `part` sees it, never a third; and the unit goes
/// on: the next stage1 sends `req` again and it lands.
pub fn cut_at_every_op_of<T: PartialEq + core::fmt::Debug>(
    req: Request<'_>,
    part: impl Fn(&racklet_bmc_core::state::Persistent) -> T,
) {
    let cfg = test_config();
    // The ops a power-on and provisioning take on a factory flash (repeated
    // exactly by a rig on the same flash), then those of the request.
    let mut counting = provisioned();
    let old = part(counting.bmc.unit().persistent());
    let setup_ops = counting.flash_ops();
    counting.ok(req);
    let new = part(counting.bmc.unit().persistent());
    let ops = counting.flash_ops() - setup_ops;
    assert!(ops >= 2, "record and mark: {ops}");
    for k in 0..ops {
        let mut f = StateFlash::new();
        f.cut_power_at(setup_ops + k);
        let mut r = Rig::with(cfg, f, Banks::new());
        r.until_on();
        r.session().unwrap();
        assert_eq!(
            r.call(req),
            Err(refused(ErrorCode::Storage)),
            "cut at op {k}"
        );
        assert_eq!(
            part(r.bmc.unit().persistent()),
            old,
            "cut at op {k}: RAM changed"
        );
        let (mut f, banks) = r.into_flashes();
        f.restore_power();
        let mut r = Rig::with(cfg, f, banks);
        let got = part(r.bmc.unit().persistent());
        assert!(
            got == old || got == new,
            "cut at op {k}: a third state {got:?}"
        );
        r.until_on();
        r.ok(req);
    }
}
