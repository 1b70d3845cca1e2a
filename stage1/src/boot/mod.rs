//! The shell around [`crate::plan::plan`]: gather the facts (BMC, disk,
//! trusted time, signed metadata), carry out the plan, hand off. Also
//! `confirm` (for the booted OS) and the PID-1 loop.
//!
//! | module | what |
//! |---|---|
//! | this one | [`BootConfig`], one attempt ([`boot_once`]), the loop ([`run`]) |
//! | `time` | signed time from bootd, when the BMC's clock was never set |
//! | `refusals` | what a boot refused, told to bootd and the BMC |
//! | `start` | the hand-off: the slot verified again, the OS's confirm token, the BMC sealed, the payload started |
//! | `confirm` | [`confirm`], for the booted OS |

mod confirm;
mod refusals;
mod start;
mod time;

pub use confirm::{confirm, Confirmed};
pub use time::signed_time;

use refusals::{refusal, tell_refusals};
use start::hand_off;
use time::fetch_signed_time;

use std::path::PathBuf;
use std::time::Duration;

use racklet_bmc_proto::Slot;
use tracing::Instrument;
use url::Url;

use crate::bmc::Bmc;
use crate::error::{Error, Result};
use crate::fetch::{self, Backoff};
use crate::handoff::Record;
use crate::plan::{self, NodeFacts, Plan, Release};
use crate::slots::{SlotStore, COPY_OFFSETS, HEADER_LEN};
use crate::tuf::{self, TrustedTime, TufConfig};
use bootd_client::{tls::client_config, Client, NetConfig, TufTransport};

/// What to do once the payload is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Write the hand-off record to this file instead of executing it.
    Simulate {
        /// `handoff.json`.
        record: PathBuf,
    },
    /// Hand off for real: `kexec_file_load`, or on arm64 `kexec_load`,
    /// then `reboot(LINUX_REBOOT_CMD_KEXEC)`; under arm64 lockdown, the
    /// firmware hand-off ([`crate::efi`]). See [`handoff::Route`].
    Kexec,
}

/// Everything one boot needs (validated).
#[derive(Clone, Debug)]
pub struct BootConfig {
    /// Who this node is.
    pub node: NodeFacts,
    /// The slot disk (block device or file).
    pub disk: PathBuf,
    /// BMC link: `host:port` of the simulator's unit socket, or a device
    /// path (a UART, a virtio-serial port).
    pub bmc_addr: String,
    /// BMC SMBus address.
    pub smbus: u8,
    /// bootd's base URL (`https://host:port/`); `None`: offline only.
    pub bootd: Option<Url>,
    /// The rack CA (PEM file).
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM files) given on the command line;
    /// otherwise the ones kept in the state directory ([`crate::identity`]).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Without an identity, ask bootd for one and wait this long for the
    /// operator's approval ([`crate::identity::enroll`]); `None`: never ask.
    pub enroll_wait: Option<Duration>,
    /// The pinned root (used until a newer root is persisted).
    pub root: PathBuf,
    /// State directory (TUF store, trusted time).
    pub state_dir: PathBuf,
    /// Simulate or kexec.
    pub mode: Mode,
    /// Network limits.
    pub net: NetConfig,
    /// Download retries.
    pub backoff: Backoff,
    /// The longest an install may take, retries included. Keep it below
    /// the BMC's watchdog window minus the boot time: past it the install
    /// is abandoned and the installed image booted, rather than letting
    /// the watchdog power-cycle a node mid-download until its tries run out.
    pub install_deadline: Duration,
    /// Command line for ELF kernels.
    pub default_cmdline: String,
    /// Set the system clock to trusted time (PID 1 only).
    pub set_clock: bool,
    /// Keep the state directory on the slot disk too
    /// ([`crate::statearea`]): the default, for the state directory is RAM
    /// under PID 1 and a node that forgets the versions it trusted accepts
    /// replayed old metadata. Off (`--no-state-on-disk`) only for a state
    /// directory that survives reboots itself.
    pub state_on_disk: bool,
    /// The booted OS's one-shot confirmation (`confirm`): what stage1 put
    /// on its kernel command line or in an EFI variable before it sealed
    /// the BMC ([`crate::bmc::ConfirmToken`]).
    pub confirm_token: Option<crate::bmc::ConfirmToken>,
    /// The running device tree as files ([`crate::devicetree::BASE`]): read
    /// for spin-table CPUs before an arm64 kexec, and by `confirm` for the
    /// `boot_img_sha256` a Pi 5's EEPROM verified.
    pub devicetree: PathBuf,
}

/// How a boot attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handed off (simulation: recorded).
    HandedOff(Record),
    /// Installed (or reported) an update and asked the BMC for a new
    /// attempt: run again.
    Restarting {
        /// The slot the BMC should boot next.
        slot: Slot,
    },
}

fn read_file(p: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|source| Error::Read {
        path: p.to_owned(),
        source,
    })
}

impl BootConfig {
    /// The node's certificate and key: the command line's, or the ones
    /// kept in the state directory.
    pub fn identity(&self) -> Option<(PathBuf, PathBuf)> {
        self.identity
            .clone()
            .or_else(|| crate::identity::stored(&self.state_dir))
    }

    /// The node's identity as bootd-client takes it (both files read), for
    /// its per-node calls: reports and refusals.
    fn client_identity(&self) -> Result<Option<bootd_client::Identity>> {
        let Some((cert, key)) = self.identity() else {
            return Ok(None);
        };
        Ok(Some(bootd_client::Identity {
            node: self.node.name.to_string(),
            cert_pem: String::from_utf8_lossy(&read_file(&cert)?).into_owned(),
            key_pem: String::from_utf8_lossy(&read_file(&key)?).into_owned(),
        }))
    }

    /// The transport for bootd (pinned CA, client cert when enrolled).
    pub fn transport(&self) -> Result<TufTransport> {
        let tls = match &self.ca {
            Some(ca) => {
                let ca = read_file(ca)?;
                let id = match &self.identity() {
                    Some((c, k)) => Some((read_file(c)?, read_file(k)?)),
                    None => None,
                };
                Some(client_config(
                    &ca,
                    id.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
                )?)
            }
            None => None,
        };
        Ok(TufTransport::new(Client::new(tls, self.net.clone())))
    }

    fn tuf(&self) -> Result<TufConfig> {
        let base = self
            .bootd
            .clone()
            .unwrap_or_else(|| Url::parse("https://offline.invalid/").expect("valid URL"));
        let mut t = TufConfig::at(&base, &self.state_dir)?;
        if self.state_on_disk {
            // Restored from the disk: anyone holding the disk could have
            // written it. The pinned root (in the signed stage1 image) is
            // the only anchor.
            t.pinned_anchor = Some(self.root.clone());
        }
        Ok(t)
    }
}

fn open_disk(path: &std::path::Path) -> Result<SlotStore<std::fs::File>> {
    let f = disk_file(path)?;
    match SlotStore::open(f.try_clone().map_err(crate::error::disk("dup"))?) {
        Ok(s) => Ok(s),
        Err(e @ Error::NoValidHeader { .. }) => {
            // Only a blank disk (both header blocks all zero) is formatted;
            // a corrupted one is refused with both reasons.
            let mut blank = true;
            for off in COPY_OFFSETS {
                let mut b = vec![0u8; HEADER_LEN];
                if std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, off).is_ok() {
                    blank &= b.iter().all(|&x| x == 0);
                }
            }
            if blank {
                tracing::info!(disk = %path.display(), "blank disk: formatting the slot layout");
                SlotStore::format(f)
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

fn disk_file(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })
}

/// One boot attempt, start to hand-off.
pub async fn boot_once(cfg: &BootConfig) -> Result<Outcome> {
    // 1. The BMC's facts.
    let mut bmc = Bmc::open(&cfg.bmc_addr, cfg.smbus)?;
    let facts = bmc.facts()?;
    tracing::info!(slot = ?facts.plan.slot, tries_left = facts.plan.tries_left,
        forced_b = facts.plan.forced_b, fallback = facts.plan.fallback,
        rollback_min = %facts.plan.rollback_min, "BMC facts");
    // A sealed BMC: the host restarted without it (a soft reboot, or a
    // kexec by root in the OS). Nothing can be MAC'd in this epoch: ask the
    // BMC to start the host itself (a new, unsealed epoch), and wait for it.
    if facts.auth.sealed {
        tracing::warn!(epoch = ?facts.auth.epoch, "the BMC is sealed (the host restarted without it): asking it for a new boot");
        return restart_sealed(&mut bmc, facts.plan.slot, facts.auth.epoch).await;
    }
    // 2. The slot header.
    let mut store = open_disk(&cfg.disk)?;
    if let Some(why) = store.health().refused.iter().flatten().next() {
        tracing::warn!(%why, "one slot header copy refused; using the other");
    }
    // 3. Trusted time (and the rest of the trusted state, from the disk
    //    when the state directory does not survive a reboot).
    if cfg.state_on_disk {
        let n = crate::statearea::restore(&disk_file(&cfg.disk)?, &cfg.state_dir)?;
        if n > 0 {
            tracing::info!(files = n, "trusted state restored from the disk");
        }
    }
    // The node's identity: kept, or asked for now.
    if let (None, Some(base), Some(ca), Some(wait)) =
        (cfg.identity(), &cfg.bootd, &cfg.ca, cfg.enroll_wait)
    {
        let name = cfg.node.name.to_string();
        let asked =
            crate::identity::enroll(base, &read_file(ca)?, &name, &cfg.state_dir, &cfg.net, wait)
                .await;
        if let Err(e) = asked {
            tracing::warn!(error = %e, "not enrolled: bootd serves this node nothing but enrollment and time until the operator approves it");
        }
    }
    // What this boot refused, told to bootd and the BMC before the plan
    // is carried out (a refused update is never silent).
    let mut refused: Vec<bootd_api::RefusalReport> = Vec::new();
    let floor = tuf::time_floor(&cfg.state_dir)?;
    let mut tcfg = cfg.tuf()?;
    // What this node trusted before, even if its state directory forgot.
    tcfg.floors = facts.tuf_floors;
    let transport = cfg.transport()?;
    // A clock never set (a factory BMC counts from 1970) is no time at
    // all: ask bootd for time signed by the online timestamp key.
    let signed = match (facts.time, &cfg.bootd) {
        (None, Some(base)) => match fetch_signed_time(&tcfg, &transport, base, &cfg.root).await {
            Ok(t) => {
                tracing::info!(time = %t, "the BMC's clock was never set; using bootd's signed time");
                Some(t)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the BMC's clock was never set and there is no signed time");
                None
            }
        },
        _ => None,
    };
    let time = match TrustedTime::resolve(facts.time, signed, floor) {
        Ok(t) => {
            if cfg.set_clock {
                // Trusted time has whole seconds: setting it when the clock
                // is already within a second would step the clock back, and
                // tough refuses a clock earlier than the time it last saw.
                let drift = (t.now.as_second() - jiff::Timestamp::now().as_second()).abs();
                if drift > 1 {
                    crate::sys::set_clock(t.now)?;
                }
            }
            if t.raised_to_floor {
                tracing::warn!(bmc = ?facts.time, now = %t.now, "BMC clock behind the persisted trusted time; using the latter");
            }
            if t.raised_to_floor || t.source == tuf::TimeSource::Signed {
                // Only time backed by signed data ever reaches the BMC.
                if let Err(e) = bmc.set_time(t.now) {
                    tracing::warn!(error = %e, "cannot set the BMC's clock");
                }
            }
            if t.source == tuf::TimeSource::Signed {
                tuf::persist_time(&cfg.state_dir, t.now)?;
            }
            Some(t)
        }
        Err(e) => {
            tracing::warn!(error = %e, "updates refused");
            if cfg.bootd.is_some() {
                refused.push(refusal(&e));
            }
            None
        }
    };
    // 4. Signed metadata: fresh from bootd, else the stored copy.
    let mut consistent = true;
    let release: Option<Release> = match (&cfg.bootd, &time) {
        (Some(_), Some(t)) => match tuf::refresh(&tcfg, &transport, Some(&cfg.root), t).await {
            Ok(r) => {
                for (name, why) in &r.skipped {
                    tracing::warn!(target = %name, %why, "target skipped");
                }
                consistent = r.repo.root().signed.consistent_snapshot;
                // Before the seal: the OS can never raise a floor.
                match bmc.raise_tuf_floors(facts.tuf_floors, r.versions) {
                    Ok(kept) if kept != facts.tuf_floors => {
                        tracing::info!(floors = ?kept.0, "TUF version floors raised in the BMC (root, timestamp, snapshot, targets)");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot raise the TUF version floors in the BMC")
                    }
                }
                Some(r.release)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metadata refresh failed; re-verifying the stored metadata (offline boot)");
                refused.push(refusal(&e));
                stored(&tcfg).await
            }
        },
        _ => stored(&tcfg).await,
    };
    if cfg.state_on_disk {
        match crate::statearea::save(&disk_file(&cfg.disk)?, &cfg.state_dir) {
            Ok(generation) => tracing::debug!(generation, "trusted state saved to the disk"),
            // The boot goes on; the next one starts from the previous state.
            Err(e) => tracing::warn!(error = %e, "trusted state NOT saved to the disk"),
        }
    }
    // 5. The plan.
    let d = plan::plan(
        release.as_ref(),
        store.state(),
        &facts.plan,
        &cfg.node,
        time.map(|t| t.now),
    );
    for (name, why) in &d.refused {
        tracing::info!(target = %name, %why, "target refused");
        // An assignment elsewhere is normal; an older release offered
        // as the newest is what a replay looks like.
        if let plan::TargetRefusal::OlderThanInstalled { .. } = why {
            refused.push(bootd_api::RefusalReport {
                reason: bootd_api::RefusalReason::OlderThanInstalled,
                detail: format!("{name}: {why}"),
            });
        }
    }
    tell_refusals(cfg, &mut bmc, &refused).await;
    if let Some(n) = &d.no_update {
        tracing::info!(why = %n, "no update");
    }
    tracing::info!(plan = ?d.plan, "boot plan");
    // 6. Carry it out.
    match d.plan {
        Plan::Install {
            target,
            into,
            otherwise,
        } => {
            // The plan writes the slot the BMC does not boot. After a boot
            // the disk never chose (a forced-B or fallback boot that then
            // confirmed), the disk may still call that slot active; make it
            // agree with the BMC first — one header commit, to a slot that
            // is valid — or refuse, never overwriting the disk's only
            // active image while the BMC boots something else.
            if store.state().active == Some(into) {
                let booting = into.other();
                let mut next = store.state().clone();
                next.flip(booting).map_err(|e| match e {
                    Error::Transition(source) => Error::ActiveDisagrees {
                        disk: into,
                        bmc: booting,
                        source,
                    },
                    other => other,
                })?;
                store.commit(&next)?;
                tracing::warn!(active = ?booting, "disk's active slot set to the one the BMC boots (after a boot the disk did not choose)");
            }
            let url = tuf::target_url(&tcfg.targets_url, &target, consistent)?;
            let install = fetch::install_target(
                &mut store,
                into,
                &target,
                &url,
                transport.client(),
                &cfg.backoff,
            );
            let result = match tokio::time::timeout(cfg.install_deadline, install).await {
                Ok(r) => r,
                Err(_) => Err(Error::InstallDeadline {
                    name: target.name.to_string(),
                    deadline: cfg.install_deadline,
                }),
            };
            match result {
                Ok(done) => {
                    tracing::info!(slot = ?into, image = ?done.image, resumed = done.resumed, "installed");
                    bmc.report_installed(into, target.info.security_version)?;
                    bmc.restart()?;
                    Ok(Outcome::Restarting { slot: into })
                }
                // The slot written is left invalid; the BMC's slot was never
                // touched and checked out before the install began.
                Err(e) => match otherwise {
                    Some(image) => {
                        tell_refusals(cfg, &mut bmc, &[refusal(&e)]).await;
                        tracing::warn!(target = %target.name, error = %e, slot = ?facts.plan.slot, image = ?image,
                            "update not installed; booting the installed image");
                        hand_off(
                            cfg,
                            &mut store,
                            facts.plan.slot,
                            &mut bmc,
                            facts.plan.rollback_min,
                        )
                        .map(Outcome::HandedOff)
                    }
                    None => Err(e),
                },
            }
        }
        Plan::Report { slot, image } => {
            bmc.report_installed(slot, image.security_version)?;
            bmc.restart()?;
            Ok(Outcome::Restarting { slot })
        }
        Plan::BootActive { slot, .. } => {
            hand_off(cfg, &mut store, slot, &mut bmc, facts.plan.rollback_min)
                .map(Outcome::HandedOff)
        }
        Plan::Fallback {
            slot, mark_failed, ..
        } => {
            if let Some(f) = mark_failed {
                let mut next = store.state().clone();
                next.mark_failed(f)?;
                store.commit(&next)?;
            }
            hand_off(cfg, &mut store, slot, &mut bmc, facts.plan.rollback_min)
                .map(Outcome::HandedOff)
        }
        Plan::Refuse { reason } => Err(Error::Refused(reason)),
    }
}

/// Asks a sealed BMC for a new boot and waits (up to 60 s) until it has
/// started the host again: a new epoch, unsealed.
async fn restart_sealed(
    bmc: &mut Bmc<crate::bmc::Link>,
    slot: Slot,
    sealed: racklet_bmc_proto::Epoch,
) -> Result<Outcome> {
    bmc.restart()?;
    let start = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(st) = bmc.auth_status() {
            if !st.sealed && st.epoch != sealed {
                return Ok(Outcome::Restarting { slot });
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(crate::bmc::BmcError::Timeout {
                request: "a new boot from the sealed BMC".into(),
                after: start.elapsed(),
            }
            .into());
        }
    }
}

async fn stored(tcfg: &TufConfig) -> Option<Release> {
    match tuf::load_stored(tcfg).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "no usable stored metadata");
            None
        }
    }
}

/// Boots until a hand-off: installs restart the attempt; failures retry
/// with backoff, and after `retries` ask the BMC for a new attempt (which
/// falls back to the other slot once this one runs out of tries).
/// In simulation it returns the hand-off; as PID 1 it never returns.
pub async fn run(cfg: &BootConfig, retries: u32, pause: Duration) -> Result<Record> {
    let mut failures = 0u32;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // Every line of an attempt names the node (as bootd's log does), its
        // architecture and the attempt: a rack's logs interleave.
        let span =
            tracing::info_span!("boot", node = %cfg.node.name, arch = %cfg.node.arch, attempt);
        match boot_once(cfg).instrument(span.clone()).await {
            Ok(Outcome::HandedOff(r)) => return Ok(r),
            Ok(Outcome::Restarting { slot }) => {
                span.in_scope(|| tracing::info!(?slot, "new boot attempt"));
                failures = 0;
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                failures += 1;
                span.in_scope(|| tracing::error!(error = %e, failures, "boot failed"));
                if failures > retries {
                    if let Ok(mut b) = Bmc::open(&cfg.bmc_addr, cfg.smbus) {
                        let _ = b.restart();
                    }
                    if cfg.mode != Mode::Kexec {
                        return Err(e);
                    }
                    failures = 0;
                }
                tokio::time::sleep(cfg.backoff.delay(failures)).await;
            }
        }
    }
}
