//! The control interface: a line protocol on TCP, what `bmc-sim press`,
//! `bmc-sim power`, `bmc-sim reset` and `bmc-sim status` speak.
//!
//! | request line | effect |
//! |---|---|
//! | `status` | one `unit-N key=value …` line per unit |
//! | `press <unit> short\|long` | holds the button 200 ms / 3.5 s |
//! | `power <unit> pull\|restore` | power-good forced low / back to normal |
//! | `reset <unit> on\|force-off\|graceful-shutdown\|force-restart\|power-cycle` | a Redfish reset from the operator |
//! | `time <unit> <unix>` | the operator sets the clock (never backwards) |
//! | `clock-lost <unit>` | the clock's battery ran out, or the BMC was replaced: 1970, never set |
//!
//! Every reply ends with a line `ok` or `error: <why>`.

use std::fmt::Write as _;
use std::sync::Arc;

use racklet_bmc_proto::{ImageKind, ResetType, Slot};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::Shared;
use crate::unit::{KEY_CLEAR_PRESS, LONG_PRESS, SHORT_PRESS};

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(shared.clone(), stream));
    }
}

async fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match execute(&shared, line.trim()) {
            Ok(body) => format!("{body}ok\n"),
            Err(e) => format!("error: {e}\n"),
        };
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Parses a reset type as the CLI spells it.
pub fn parse_reset(s: &str) -> Option<ResetType> {
    Some(match s {
        "on" => ResetType::On,
        "force-off" => ResetType::ForceOff,
        "graceful-shutdown" => ResetType::GracefulShutdown,
        "force-restart" => ResetType::ForceRestart,
        "power-cycle" => ResetType::PowerCycle,
        _ => return None,
    })
}

fn execute(shared: &Shared, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let now = shared.clock.now();
    let unit = |name: &str| {
        shared
            .find(name)
            .ok_or_else(|| format!("no unit `{name}` in this rack"))
    };
    match words.as_slice() {
        ["status"] => {
            let mut out = String::new();
            for i in 0..shared.units.len() {
                out.push_str(&status_line(shared, i));
                out.push('\n');
            }
            Ok(out)
        }
        ["press", name, kind] => {
            let hold = match *kind {
                "short" => SHORT_PRESS,
                "long" => LONG_PRESS,
                "very-long" => KEY_CLEAR_PRESS,
                other => return Err(format!("press `{other}`: want short, long or very-long")),
            };
            let i = unit(name)?;
            shared.unit(i).press(now, hold);
            tracing::info!(unit = %name, press = %kind, "button pressed");
            Ok(String::new())
        }
        ["power", name, action] => {
            let pulled = match *action {
                "pull" => true,
                "restore" => false,
                other => return Err(format!("power `{other}`: want pull or restore")),
            };
            let i = unit(name)?;
            let mut u = shared.unit(i);
            u.pulled = pulled;
            u.step(now);
            tracing::info!(unit = %name, pulled, "power");
            Ok(String::new())
        }
        ["time", name, unix] => {
            let t = unix
                .parse::<u64>()
                .map_err(|e| format!("time `{unix}`: {e}"))?;
            let i = unit(name)?;
            shared
                .unit(i)
                .set_time(racklet_bmc_proto::UnixTime(t), now)
                .map_err(|code| format!("{name} refused the time: {code}"))?;
            tracing::info!(unit = %name, unix = t, "clock set by the operator");
            Ok(String::new())
        }
        ["clock-lost", name] => {
            let i = unit(name)?;
            shared
                .unit(i)
                .lose_clock(now)
                .map_err(|code| format!("{name}: {code}"))?;
            tracing::warn!(unit = %name, "clock lost: it counts from 1970 and says it was never set");
            Ok(String::new())
        }
        ["reset", name, kind] => {
            let kind = parse_reset(kind).ok_or_else(|| format!("reset type `{kind}` unknown"))?;
            let i = unit(name)?;
            shared.unit(i).reset(kind, now);
            Ok(String::new())
        }
        _ => Err(format!("unknown command `{line}`")),
    }
}

fn slot_name(s: Slot) -> &'static str {
    match s {
        Slot::A => "A",
        Slot::B => "B",
    }
}

/// One unit's status as `key=value` words (stable: tests and scripts parse it).
pub fn status_line(shared: &Shared, i: usize) -> String {
    let u = shared.unit(i);
    let unit = u.bmc.unit();
    let p = unit.persistent();
    let power = unit.power_status();
    let mut s = format!(
        "{} addr=0x{:02x} socket={} power={:?} fault={:?} rail={} reset={} pulled={}",
        u.name,
        u.bmc.addr().get(),
        shared.sockets[i],
        power.state,
        power.fault,
        if u.outputs.rail_on { "on" } else { "off" },
        if u.outputs.reset_asserted {
            "held"
        } else {
            "released"
        },
        u.pulled,
    );
    match unit.boot_plan() {
        Some(b) => write!(
            s,
            " slot={} tries_left={} forced={} fallback={} confirmed={}",
            slot_name(b.slot),
            b.tries_left,
            b.forced_by_button,
            b.fallback,
            b.confirmed
        ),
        None => write!(s, " slot=none"),
    }
    .expect("write to String");
    write!(s, " boot_count={} force_b={}", p.boot_count, p.force_b).expect("write to String");
    let auth = unit.auth_status();
    write!(
        s,
        " key={} sealed={} epoch={} last_counter={} clock_set={}",
        if auth.key_provisioned {
            "provisioned"
        } else {
            "none"
        },
        auth.sealed,
        auth.epoch.0,
        auth.last_counter,
        p.clock_set,
    )
    .expect("write to String");
    // The last refused update and how many boots ago (0: this boot); a
    // later good boot keeps it.
    let r = p.refusals;
    match r.last {
        Some(last) => write!(
            s,
            " refused={}@epoch{} refused_boots_ago={} refusals={}",
            last.reason,
            last.epoch.0,
            r.boots_ago(p.boot_count).unwrap_or(0),
            r.count
        ),
        None => write!(s, " refused=none refusals=0"),
    }
    .expect("write to String");
    let [root, timestamp, snapshot, targets] = p.tuf_floors.0;
    write!(
        s,
        " floors=root:{root},timestamp:{timestamp},snapshot:{snapshot},targets:{targets}"
    )
    .expect("write to String");
    for slot in Slot::ALL {
        let info = p.slot(slot);
        let n = slot_name(slot);
        write!(
            s,
            " {n}.priority={} {n}.tries={} {n}.successful={} {n}.version={}",
            info.priority,
            info.tries,
            info.successful,
            info.versions[ImageKind::BootImage.index()].0
        )
        .expect("write to String");
    }
    let m = unit.metrics();
    write!(
        s,
        " min.boot_image={} min.stage1={} mv={} ma={} energy_mj={} rail_on_at_ms={} fw_version={}",
        p.rollback_min[0].0,
        p.rollback_min[1].0,
        m.millivolts,
        m.milliamps,
        m.energy_mj,
        u.rail_on_at.map_or(-1, |t| t.0 as i64),
        p.fw_version,
    )
    .expect("write to String");
    s
}

/// Splits a status line into its name and `key=value` pairs.
pub fn parse_status_line(line: &str) -> (String, std::collections::BTreeMap<String, String>) {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default().to_owned();
    let kv = words
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (name, kv)
}

/// Sends one request line to a running simulator's control socket (what
/// `bmc-sim status|press|power|reset` do) and returns the reply lines before
/// `ok`. An `error: …` reply is an error of kind `Other` carrying the reason.
pub fn request(addr: std::net::SocketAddr, line: &str) -> std::io::Result<Vec<String>> {
    use std::io::{BufRead, Write};
    let timeout = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut out = Vec::new();
    for l in std::io::BufReader::new(s).lines() {
        let l = l?;
        if l == "ok" {
            return Ok(out);
        }
        if let Some(e) = l.strip_prefix("error: ") {
            return Err(std::io::Error::other(e.to_owned()));
        }
        out.push(l);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the simulator closed the connection before `ok`",
    ))
}
