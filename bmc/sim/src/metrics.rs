//! OpenMetrics for the whole rack on `GET /metrics` (prometheus-client).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `racklet_bmc_power_volts` | unit | rail voltage |
//! | `racklet_bmc_power_amps` | unit | rail current |
//! | `racklet_bmc_energy_joules_total` | unit | energy since the BMC started |
//! | `racklet_bmc_powered` | unit | 1 when the unit runs (rail on, reset released) |
//! | `racklet_bmc_fault` | unit | fault code (0 none, see the README) |
//! | `racklet_bmc_boot_slot` | unit | slot booting now: 0 A, 1 B, -1 none |
//! | `racklet_bmc_boot_confirmed` | unit | 1 once the running boot confirmed |
//! | `racklet_bmc_boots_total` | unit | boot attempts since the flash was formatted |
//! | `racklet_bmc_slot_tries` | unit, slot | tries left |
//! | `racklet_bmc_slot_priority` | unit, slot | priority (15 = active) |
//! | `racklet_bmc_slot_successful` | unit, slot | 1 when the slot confirmed a boot |
//! | `racklet_bmc_rollback_min` | unit, kind | anti-rollback minimum |
//! | `racklet_bmc_update_refusals_total` | unit | updates stage1 reported refused (ReportRefusal) since the flash was formatted |
//! | `racklet_bmc_update_refusal_last_epoch` | unit, reason | the epoch (boot count) of the last refusal; only the last reason has a series |
//! | `racklet_bmc_update_refusal_boots_ago` | unit | boots since the last refusal (0: this boot), -1 none |
//! | `racklet_bmc_tuf_floor` | unit, role | the newest version of a TUF role the node trusted (its floor), 0 none |
//!
//! The BMC keeps the total and the last refusal, not a count per reason
//! (bootd's `bootd_node_refusals_total` has those for the refusals it hears of).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use racklet_bmc_proto::{ImageKind, Slot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::Shared;

type Labels = Vec<(String, String)>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The metrics text of the rack now.
pub fn render(shared: &Shared) -> String {
    let mut reg = Registry::default();
    let volts = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let amps = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let energy = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let powered = Family::<Labels, Gauge>::default();
    let fault = Family::<Labels, Gauge>::default();
    let slot = Family::<Labels, Gauge>::default();
    let confirmed = Family::<Labels, Gauge>::default();
    let boots = Family::<Labels, Counter>::default();
    let tries = Family::<Labels, Gauge>::default();
    let prio = Family::<Labels, Gauge>::default();
    let ok = Family::<Labels, Gauge>::default();
    let min = Family::<Labels, Gauge>::default();
    let keyed = Family::<Labels, Gauge>::default();
    let sealed = Family::<Labels, Gauge>::default();
    let clock_set = Family::<Labels, Gauge>::default();
    let refusals = Family::<Labels, Counter>::default();
    let refusal_epoch = Family::<Labels, Gauge>::default();
    let refusal_ago = Family::<Labels, Gauge>::default();
    let tuf_floor = Family::<Labels, Gauge>::default();
    for i in 0..shared.units.len() {
        let u = shared.unit(i);
        let unit = u.bmc.unit();
        let p = unit.persistent();
        let m = unit.metrics();
        let name = u.name.as_str();
        let ul = l(&[("unit", name)]);
        volts
            .get_or_create(&ul)
            .set(f64::from(m.millivolts) / 1000.0);
        amps.get_or_create(&ul).set(f64::from(m.milliamps) / 1000.0);
        energy
            .get_or_create(&ul)
            .inc_by(m.energy_mj as f64 / 1000.0);
        powered
            .get_or_create(&ul)
            .set(i64::from(u.outputs.rail_on && !u.outputs.reset_asserted));
        fault
            .get_or_create(&ul)
            .set(i64::from(unit.power_status().fault.to_byte()));
        let plan = unit.boot_plan();
        slot.get_or_create(&ul)
            .set(plan.map_or(-1, |b| i64::from(b.slot.to_byte())));
        confirmed
            .get_or_create(&ul)
            .set(i64::from(plan.is_some_and(|b| b.confirmed)));
        boots.get_or_create(&ul).inc_by(u64::from(p.boot_count));
        let auth = unit.auth_status();
        keyed
            .get_or_create(&ul)
            .set(i64::from(auth.key_provisioned));
        sealed.get_or_create(&ul).set(i64::from(auth.sealed));
        clock_set.get_or_create(&ul).set(i64::from(p.clock_set));
        refusals
            .get_or_create(&ul)
            .inc_by(u64::from(p.refusals.count));
        refusal_ago
            .get_or_create(&ul)
            .set(p.refusals.boots_ago(p.boot_count).map_or(-1, i64::from));
        if let Some(last) = p.refusals.last {
            refusal_epoch
                .get_or_create(&l(&[("unit", name), ("reason", last.reason.as_str())]))
                .set(i64::from(last.epoch.0));
        }
        for s in Slot::ALL {
            let sl = l(&[
                ("unit", name),
                ("slot", if s == Slot::A { "A" } else { "B" }),
            ]);
            let info = p.slot(s);
            tries.get_or_create(&sl).set(i64::from(info.tries));
            prio.get_or_create(&sl).set(i64::from(info.priority));
            ok.get_or_create(&sl).set(i64::from(info.successful));
        }
        for role in racklet_bmc_proto::TufRole::ALL {
            tuf_floor
                .get_or_create(&l(&[("unit", name), ("role", role.as_str())]))
                .set(i64::from(p.tuf_floors.get(role)));
        }
        for k in ImageKind::ALL {
            let kind = match k {
                ImageKind::BootImage => "boot_image",
                ImageKind::Stage1 => "stage1",
            };
            min.get_or_create(&l(&[("unit", name), ("kind", kind)]))
                .set(i64::from(p.rollback_min[k.index()].0));
        }
    }
    reg.register("racklet_bmc_power_volts", "Rail voltage", volts);
    reg.register("racklet_bmc_power_amps", "Rail current", amps);
    reg.register(
        "racklet_bmc_energy_joules",
        "Energy since the BMC started",
        energy,
    );
    reg.register(
        "racklet_bmc_powered",
        "Unit running (rail on, reset released)",
        powered,
    );
    reg.register("racklet_bmc_fault", "Power fault code, 0 = none", fault);
    reg.register(
        "racklet_bmc_boot_slot",
        "Slot booting now: 0 A, 1 B, -1 none",
        slot,
    );
    reg.register(
        "racklet_bmc_boot_confirmed",
        "The running boot confirmed",
        confirmed,
    );
    reg.register(
        "racklet_bmc_boots",
        "Boot attempts since the flash was formatted",
        boots,
    );
    reg.register("racklet_bmc_slot_tries", "Boot tries left", tries);
    reg.register(
        "racklet_bmc_slot_priority",
        "Slot priority, 15 = active",
        prio,
    );
    reg.register("racklet_bmc_slot_successful", "Slot confirmed a boot", ok);
    reg.register(
        "racklet_bmc_rollback_min",
        "Anti-rollback minimum security version",
        min,
    );
    reg.register(
        "racklet_bmc_tuf_floor",
        "Newest trusted version of a TUF role (the node's floor), 0 none",
        tuf_floor,
    );
    reg.register(
        "racklet_bmc_key_provisioned",
        "A unit key is stored (the link can authenticate)",
        keyed,
    );
    reg.register(
        "racklet_bmc_sealed",
        "Sealed: no key is revealed until the BMC next starts the host",
        sealed,
    );
    reg.register(
        "racklet_bmc_clock_set",
        "The BMC's clock was ever set",
        clock_set,
    );
    reg.register(
        "racklet_bmc_update_refusals",
        "Updates stage1 reported refused since the flash was formatted",
        refusals,
    );
    reg.register(
        "racklet_bmc_update_refusal_last_epoch",
        "Epoch (boot count) of the last refused update, labelled with its reason",
        refusal_epoch,
    );
    reg.register(
        "racklet_bmc_update_refusal_boots_ago",
        "Boots since the last refused update (0: this boot), -1 none",
        refusal_ago,
    );
    let mut out = String::new();
    encode(&mut out, &reg).expect("encoding to a String cannot fail");
    out
}

pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(http(shared.clone(), stream));
    }
}

/// A minimal HTTP/1.1 responder: `GET /metrics`, everything else 404.
async fn http(shared: Arc<Shared>, mut stream: TcpStream) {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > 16 * 1024 {
            return;
        }
    }
    let first = req.split(|&b| b == b'\r').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split(' ');
    let (method, path) = (parts.next(), parts.next());
    let (status, ctype, body) = match (method, path) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(&shared),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}
