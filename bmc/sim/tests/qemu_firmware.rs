//! The real firmware image under `qemu-system-arm -M mps2-an386`, driven
//! over its UART: boot attempts, a missing confirmation, fallback, the
//! button forcing slot B, a counter raise, bad input, and the counter
//! surviving a restart of the emulator.
//!
//! Needs `qemu-system-arm` and the `thumbv7em-none-eabihf` target. Without
//! them it prints "skipped: …" — unless `RACKLET_REQUIRE_ALL=1`, then it fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use racklet_bmc_proto::{
    pec::pec, ErrorCode, ImageKind, PowerState, RefusalReason, Refusals, Request, ResetType,
    Response, SecurityVersion, Slot, SmbusAddr, TufFloors, TufRole,
};
use racklet_bmc_sim::client::{Client, ClientError};

const WATCHDOG_MS: &str = "1500";

fn require_all() -> bool {
    std::env::var("RACKLET_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the firmware with a short watchdog; returns the ELF.
fn build_firmware() -> PathBuf {
    let target_dir = std::env::var_os("RACKLET_FW_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("racklet-bmc-fw-test-target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(repo_root().join("bmc/fw"))
        .args(["build", "--release", "--locked"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RACKLET_BMC_WATCHDOG_MS", WATCHDOG_MS)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo for the firmware");
    assert!(
        status.success(),
        "firmware build failed (is the thumbv7em-none-eabihf target installed?)"
    );
    target_dir.join("thumbv7em-none-eabihf/release/racklet-bmc-fw")
}

struct Emulator {
    child: Child,
    link: Client<TcpStream>,
    console: TcpStream,
    log: Vec<u8>,
}

impl Emulator {
    /// Boots the firmware in `dir` (where its flash files live).
    fn start(elf: &Path, dir: &Path) -> Emulator {
        let link_l = TcpListener::bind("127.0.0.1:0").unwrap();
        let console_l = TcpListener::bind("127.0.0.1:0").unwrap();
        let child = Command::new("qemu-system-arm")
            .current_dir(dir)
            .args([
                "-M",
                "mps2-an386",
                "-cpu",
                "cortex-m4",
                "-display",
                "none",
                "-monitor",
                "none",
            ])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-serial")
            .arg(format!("tcp:{}", link_l.local_addr().unwrap()))
            .arg("-serial")
            .arg(format!("tcp:{}", console_l.local_addr().unwrap()))
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null())
            .spawn()
            .expect("start qemu-system-arm");
        let (link, _) = link_l.accept().unwrap();
        let (console, _) = console_l.accept().unwrap();
        link.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        console
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let link = Client::new(link, SmbusAddr::new(0x20).unwrap());
        Emulator {
            child,
            link,
            console,
            log: Vec::new(),
        }
    }

    fn call(&mut self, req: Request<'_>) -> Result<Response, ClientError> {
        self.drain_console();
        self.link.call(req)
    }

    fn ok(&mut self, req: Request<'_>) -> Response {
        self.call(req)
            .unwrap_or_else(|e| panic!("{req:?}: {e}\nconsole:\n{}", self.log()))
    }

    fn refused(&mut self, req: Request<'_>) -> ErrorCode {
        match self.call(req) {
            Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(c))) => c,
            other => panic!("{req:?} should be refused: {other:?}"),
        }
    }

    fn refusals(&mut self) -> Refusals {
        match self.ok(Request::GetRefusal) {
            Response::Refusals(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn plan(&mut self) -> Option<racklet_bmc_proto::BootPlan> {
        match self.call(Request::GetBootPlan) {
            Ok(Response::BootPlan(p)) => Some(p),
            Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(ErrorCode::BadState))) => {
                None
            }
            other => panic!("GetBootPlan: {other:?}"),
        }
    }

    /// Polls until the unit is on with a plan matching `want`.
    fn wait_plan(
        &mut self,
        what: &str,
        want: impl Fn(&racklet_bmc_proto::BootPlan) -> bool,
    ) -> racklet_bmc_proto::BootPlan {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let on = matches!(self.ok(Request::GetPowerStatus), Response::PowerStatus(s) if s.state == PowerState::On);
            if let Some(p) = self.plan() {
                if on && want(&p) {
                    return p;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}\nconsole:\n{}", self.log());
    }

    fn console_send(&mut self, c: u8) {
        self.console.write_all(&[c]).unwrap();
    }

    fn drain_console(&mut self) {
        let mut buf = [0u8; 512];
        while let Ok(n) = self.console.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.log.extend_from_slice(&buf[..n]);
        }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.log).into_owned()
    }

    /// Pulls the plug on the emulated board (no shutdown of any kind).
    fn kill(mut self) -> String {
        self.drain_console();
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.log()
    }
}

#[test]
fn firmware_under_qemu_full_scenario() {
    for tool in ["qemu-system-arm"] {
        if !have(tool) {
            assert!(
                !require_all(),
                "RACKLET_REQUIRE_ALL=1 but {tool} is missing"
            );
            println!("skipped: needs {tool}");
            return;
        }
    }
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("thumbv7em-none-eabihf"))
        // Without rustup (a distribution toolchain), let the build decide.
        .unwrap_or(true);
    if !installed {
        assert!(
            !require_all(),
            "RACKLET_REQUIRE_ALL=1 but the thumbv7em-none-eabihf target is missing \
             (rustup target add thumbv7em-none-eabihf)"
        );
        println!("skipped: needs the thumbv7em-none-eabihf target");
        return;
    }
    let elf = build_firmware();
    let dir = tempfile::tempdir().unwrap();

    let mut emu = Emulator::start(&elf, dir.path());
    // First power-on from a factory-fresh flash: slot A, one try used.
    let p = emu.wait_plan("first boot", |_| true);
    assert_eq!((p.slot, p.tries_left, p.boot_count), (Slot::A, 2, 1));
    // The firmware's link authenticates: a ConfirmBoot without a MAC is
    // refused before any key exists and after the client (playing stage1)
    // provisions one and confirms MAC'd.
    emu.drain_console();
    let forged = |emu: &mut Emulator| emu.link.call_plain(Request::ConfirmBoot { slot: Slot::A });
    assert!(matches!(
        forged(&mut emu),
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(
            ErrorCode::Unauthenticated
        )))
    ));
    emu.ok(Request::ConfirmBoot { slot: Slot::A });
    assert!(matches!(
        forged(&mut emu),
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(
            ErrorCode::Unauthenticated
        )))
    ));
    match emu.ok(Request::GetAuthStatus) {
        Response::AuthStatus(a) => assert!(a.key_provisioned && !a.sealed && a.last_counter >= 1),
        other => panic!("{other:?}"),
    }

    // stage1 refused an update in this boot and says so, MAC'd; the same
    // report without a MAC (root in the OS) is refused and changes nothing.
    let refuse = Request::ReportRefusal {
        reason: RefusalReason::NoTrustedTime,
    };
    assert!(matches!(
        emu.link.call_plain(refuse),
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(
            ErrorCode::Unauthenticated
        )))
    ));
    assert_eq!(emu.refusals(), Refusals::default());
    emu.ok(refuse);
    let refusals = emu.refusals();
    assert_eq!(
        (refusals.count, refusals.last.map(|l| (l.reason, l.epoch.0))),
        (1, Some((RefusalReason::NoTrustedTime, 1)))
    );
    // And raises the TUF floors it trusted; root in the OS cannot.
    let floor = Request::RaiseTufFloor {
        role: TufRole::Timestamp,
        version: 41,
    };
    assert!(matches!(
        emu.link.call_plain(floor),
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(
            ErrorCode::Unauthenticated
        )))
    ));
    let floors = TufFloors([0, 41, 0, 0]);
    assert_eq!(emu.ok(floor), Response::TufFloors(floors));

    // stage1 installs a new image in B and reboots into it.
    emu.ok(Request::ReportInstalled {
        slot: Slot::B,
        kind: ImageKind::BootImage,
        version: SecurityVersion(2),
    });
    emu.ok(Request::Reset {
        kind: ResetType::PowerCycle,
    });
    // B never confirms: the watchdog power-cycles it until its tries run out.
    for tries in [2, 1, 0] {
        let p = emu.wait_plan("boot of B", |p| p.slot == Slot::B && p.tries_left == tries);
        assert!(!p.confirmed && !p.fallback);
    }
    // Then the BMC falls back to A.
    let p = emu.wait_plan("fallback to A", |p| p.slot == Slot::A);
    assert!(p.fallback, "{p:?}");
    emu.ok(Request::ConfirmBoot { slot: Slot::A });

    // A long press forces slot B (and power-cycles into it).
    emu.console_send(b'L');
    let p = emu.wait_plan("forced B", |p| p.slot == Slot::B);
    assert!(p.forced_by_button);
    // Raising the counter before B confirmed is refused.
    let raise = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(2),
    };
    assert_eq!(emu.refused(raise), ErrorCode::NotConfirmed);
    emu.ok(Request::ConfirmBoot { slot: Slot::B });
    assert_eq!(emu.ok(raise), Response::RollbackMin(SecurityVersion(2)));

    // Bad input: refused with a code, and the firmware keeps running.
    let mut bad = vec![0x40, 0x02, 0x01, 0x01];
    bad.push(pec(&bad) ^ 0x55);
    let answer = emu.link.raw(&bad).unwrap();
    assert_eq!(answer[2], ErrorCode::BadPec.to_byte());
    let lower = Request::RaiseRollbackMin {
        kind: ImageKind::BootImage,
        version: SecurityVersion(1),
    };
    assert_eq!(emu.refused(lower), ErrorCode::CounterLower);
    let mut unknown = vec![0x40, 0x66, 0x00];
    unknown.push(pec(&unknown));
    assert_eq!(
        emu.link.raw(&unknown).unwrap()[2],
        ErrorCode::UnknownCommand.to_byte()
    );
    assert_eq!(
        emu.ok(Request::GetRollbackMin {
            kind: ImageKind::BootImage
        }),
        Response::RollbackMin(SecurityVersion(2))
    );

    // A signed BMC firmware update over the UART: accepted into bank 1;
    // an older or badly signed one is refused and the firmware keeps running.
    let payload: Vec<u8> = (0..300u32).map(|i| (i * 13) as u8).collect();
    assert_eq!(
        upload(&mut emu, 2, &fw_image(2, &payload)),
        Ok(Response::FwInfo(racklet_bmc_proto::FwInfo {
            version: 2,
            bank: 1
        }))
    );
    assert_eq!(
        upload(&mut emu, 2, &fw_image(2, &payload)),
        Err(ErrorCode::OlderFirmware)
    );
    let mut forged = fw_image(3, &payload);
    forged[200] ^= 0x01;
    assert_eq!(upload(&mut emu, 3, &forged), Err(ErrorCode::BadSignature));
    assert!(matches!(emu.ok(Request::GetTime), Response::Time(_)));

    let log = emu.kill();
    assert!(
        log.contains("flash persistent"),
        "semihosting flash not in use:\n{log}"
    );

    // Restart the emulator on the same flash files.
    let mut emu = Emulator::start(&elf, dir.path());
    assert_eq!(
        emu.ok(Request::GetRollbackMin {
            kind: ImageKind::BootImage
        }),
        Response::RollbackMin(SecurityVersion(2)),
        "counter lost across an emulator restart"
    );
    assert_eq!(emu.refused(lower), ErrorCode::CounterLower);
    // B confirmed last, so B is the active slot after the restart too.
    let p = emu.wait_plan("boot after restart", |_| true);
    assert_eq!(p.slot, Slot::B);
    assert!(p.boot_count > 6, "boot count persisted: {p:?}");
    assert_eq!(
        emu.ok(Request::GetFwInfo),
        Response::FwInfo(racklet_bmc_proto::FwInfo {
            version: 2,
            bank: 1
        })
    );
    // The refusal of the first boot is still there, many boots later.
    assert_eq!(emu.refusals(), refusals, "refusal lost across a restart");
    assert!(refusals.boots_ago(p.boot_count) > Some(5));
    assert_eq!(emu.ok(Request::GetTufFloors), Response::TufFloors(floors));
    emu.kill();
}

/// An image signed with the INSECURE example key the firmware trusts.
fn fw_image(version: u32, payload: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    use racklet_bmc_core::fwupdate::{danger::INSECURE_EXAMPLE_SEED, signed_prefix};
    let key = ed25519_dalek::SigningKey::from_bytes(&INSECURE_EXAMPLE_SEED);
    let prefix = signed_prefix(version, payload.len() as u32);
    let msg: Vec<u8> = prefix.iter().chain(payload).copied().collect();
    let sig = key.sign(&msg).to_bytes();
    prefix
        .iter()
        .chain(sig.iter())
        .chain(payload)
        .copied()
        .collect()
}

fn upload(emu: &mut Emulator, version: u32, img: &[u8]) -> Result<Response, ErrorCode> {
    let refused = |r: Result<Response, ClientError>| match r {
        Ok(r) => Ok(r),
        Err(ClientError::Protocol(racklet_bmc_proto::Error::Refused(c))) => Err(c),
        Err(e) => panic!("firmware upload: {e}"),
    };
    refused(emu.call(Request::FwBegin {
        version,
        total_len: img.len() as u32,
    }))?;
    for (i, c) in img.chunks(racklet_bmc_proto::FW_CHUNK_MAX).enumerate() {
        refused(emu.call(Request::FwChunk {
            offset: (i * racklet_bmc_proto::FW_CHUNK_MAX) as u32,
            data: c,
        }))?;
    }
    refused(emu.call(Request::FwFinish))
}
