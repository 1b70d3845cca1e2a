//! The Racklet BMC firmware for a Cortex-M4, as run under
//! `qemu-system-arm -M mps2-an386 -cpu cortex-m4`.
//!
//! This is the shell around `racklet-bmc-core`: it owns the hardware (all
//! `unsafe` of the BMC lives in this crate) and feeds the core events and
//! time; the core decides.
//!
//! * UART0 (0x4000_4000): the BMC protocol, byte-stream framing of
//!   `racklet-bmc-proto` (SMBus frames with PEC), address 0x20.
//! * UART1 (0x4000_5000): a console. Because QEMU's MPS2 has no button or
//!   rail to wire up, the console stands in for them: `S` short press, `L`
//!   long press (3.5 s), `K` very long press (10.5 s: clears the unit key),
//!   `P` pull the unit's power (power-good drops), `R` restore it, `?`
//!   status (with the link's key, seal, epoch, clock-set flag, the last refused update and the TUF version floors). The firmware prints state changes there.
//! * The rail is modelled: power-good rises 5 ms after the rail is enabled
//!   unless pulled. The FPGAIO LEDs (0x4002_8000) show rail (LED0) and
//!   reset released (LED1).
//! * State flash (8 KiB, two 4 KiB sectors) and firmware banks (2 × 16 KiB)
//!   are NOR-accurate RAM flash mirrored to host files by semihosting, see
//!   [`hostflash`].
#![no_std]
#![no_main]

mod hostflash;
mod uart;

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use ed25519_dalek::VerifyingKey;
use panic_semihosting as _;
use racklet_bmc_core::fwupdate::danger::INSECURE_EXAMPLE_PUBLIC_KEY;
use racklet_bmc_core::{Bmc, Config, Event, Instant, Millis, Outputs};
use racklet_bmc_proto::{encode_response, SmbusAddr, StreamReader, MAX_FRAME};

use hostflash::HostFlash;
use uart::Uart;

/// The BMC's SMBus address (unit-1 of `hardware/rack.yaml`).
const ADDRESS: u8 = 0x20;

/// Parses a decimal at compile time (for `RACKLET_BMC_WATCHDOG_MS`).
const fn parse_ms(s: Option<&str>, default: u64) -> u64 {
    let Some(s) = s else { return default };
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0u64;
    while i < b.len() {
        assert!(
            b[i].is_ascii_digit(),
            "RACKLET_BMC_WATCHDOG_MS must be decimal"
        );
        v = v * 10 + (b[i] - b'0') as u64;
        i += 1;
    }
    v
}

/// The confirmation window: 120 s as in `hardware/rack.yaml`, unless the
/// build sets `RACKLET_BMC_WATCHDOG_MS` (the QEMU test uses a short one).
const WATCHDOG_MS: u64 = parse_ms(option_env!("RACKLET_BMC_WATCHDOG_MS"), 120_000);

/// Milliseconds since start, counted by SysTick.
static TICKS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// The unit's rail and button, modelled.
struct Board {
    rail_since: Option<Instant>,
    pulled: bool,
    button_until: Option<Instant>,
}

impl Board {
    fn power_good(&self, now: Instant) -> bool {
        !self.pulled && self.rail_since.is_some_and(|t| now - t >= Millis(5))
    }
    fn button(&self, now: Instant) -> bool {
        self.button_until.is_some_and(|t| now < t)
    }
    fn apply(&mut self, out: Outputs, now: Instant) {
        match (out.rail_on, self.rail_since) {
            (true, None) => self.rail_since = Some(now),
            (false, _) => self.rail_since = None,
            _ => {}
        }
        let leds = out.rail_on as u32 | ((!out.reset_asserted) as u32) << 1;
        // SAFETY: FPGAIO LED register of the MPS2 (0x4002_8000), write-only
        // LEDs, used by nothing else.
        unsafe { core::ptr::write_volatile(0x4002_8000 as *mut u32, leds) };
    }
}

#[entry]
fn main() -> ! {
    let mut cp = cortex_m::Peripherals::take().unwrap();
    // MPS2 SYSCLK is 25 MHz: a tick per millisecond.
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(25_000 - 1);
    cp.SYST.clear_current();
    cp.SYST.enable_counter();
    cp.SYST.enable_interrupt();

    // SAFETY: UART0 and UART1 of the MPS2 AN386; each is owned by one `Uart`.
    let (mut link, mut console) = unsafe { (Uart::new(uart::UART0), Uart::new(uart::UART1)) };

    let state_flash = HostFlash::<8192>::open(b"racklet-bmc-flash.bin\0");
    let banks = HostFlash::<32768>::open(b"racklet-bmc-banks.bin\0");
    let persistent = state_flash.persistent();

    let cfg = Config {
        watchdog: Millis(WATCHDOG_MS),
        ..Config::default()
    };
    let key = VerifyingKey::from_bytes(&INSECURE_EXAMPLE_PUBLIC_KEY).unwrap();
    let addr = SmbusAddr::new(ADDRESS).unwrap();
    let mut clock = Clock { last: 0, ms: 0 };
    let mut now = clock.now();
    let mut bmc = match Bmc::new(addr, cfg, state_flash, banks, key, now) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(console, "bmc: cannot start: {e}");
            panic!("bmc start");
        }
    };
    let _ = writeln!(
        console,
        "racklet-bmc-fw: addr 0x{ADDRESS:02x}, watchdog {WATCHDOG_MS} ms, flash {} (seq {})",
        if persistent { "persistent" } else { "RAM only" },
        bmc.store().sequence()
    );

    let mut board = Board {
        rail_since: None,
        pulled: false,
        button_until: None,
    };
    let mut reader = StreamReader::requests();
    let mut last_rx = now;
    let mut last_ms = Instant(u64::MAX);
    let mut last_sample = now;
    let mut out = [0u8; MAX_FRAME];
    let mut shown = bmc.unit().outputs();
    loop {
        now = clock.now();
        // The protocol link.
        while let Some(byte) = link.read() {
            last_rx = now;
            match reader.push(byte) {
                None => {}
                Some(Ok(frame)) => {
                    if let Some(n) = bmc.handle_frame(frame, now, &mut out) {
                        link.write_all(&out[..n]);
                    }
                }
                Some(Err((command, e))) => {
                    let n = encode_response(addr, command, Err(e.code()), &mut out);
                    link.write_all(&out[..n]);
                }
            }
        }
        if reader.is_mid_frame() && now - last_rx > Millis(50) {
            reader.reset();
        }
        // The console.
        if let Some(c) = console.read() {
            match c {
                b'S' => board.button_until = Some(now + Millis(200)),
                b'L' => board.button_until = Some(now + Millis(3500)),
                b'K' => board.button_until = Some(now + Millis(10_500)),
                b'P' => board.pulled = true,
                b'R' => board.pulled = false,
                _ => {}
            }
            let u = bmc.unit();
            let _ = writeln!(
                console,
                "status: {:?} plan {:?} button {:?} auth {:?} clock_set {} refusals {:?} floors {:?}",
                u.power_status(),
                u.boot_plan(),
                u.button_state(),
                u.auth_status(),
                u.persistent().clock_set,
                u.persistent().refusals,
                u.persistent().tuf_floors.0
            );
        }
        if now == last_ms {
            continue;
        }
        last_ms = now;
        // Inputs, once per millisecond.
        bmc.on_event(Event::PowerGood(board.power_good(now)), now);
        let outs = bmc.on_event(Event::Button(board.button(now)), now);
        if now - last_sample >= Millis(100) {
            last_sample = now;
            let running = outs.rail_on && !outs.reset_asserted;
            let (mv, ma) = if outs.rail_on {
                (5100, if running { 1200 } else { 150 })
            } else {
                (0, 0)
            };
            bmc.on_event(
                Event::PowerSample {
                    millivolts: mv,
                    milliamps: ma,
                },
                now,
            );
        }
        let outs = bmc.unit().outputs();
        board.apply(outs, now);
        if outs != shown {
            shown = outs;
            let u = bmc.unit();
            let _ = writeln!(
                console,
                "t={} rail={} reset={} {:?} {:?}",
                now.0,
                outs.rail_on as u8,
                outs.reset_asserted as u8,
                u.power_status().state,
                u.boot_plan().map(|p| (p.slot, p.tries_left))
            );
        }
    }
}

/// Extends the 32-bit tick counter to 64 bits.
struct Clock {
    last: u32,
    ms: u64,
}

impl Clock {
    fn now(&mut self) -> Instant {
        let t = TICKS.load(Ordering::Relaxed);
        self.ms += u64::from(t.wrapping_sub(self.last));
        self.last = t;
        Instant(self.ms)
    }
}
