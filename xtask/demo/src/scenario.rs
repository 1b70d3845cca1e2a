//! One run of the demo: the working directory, the tools, the rack's
//! services and nodes ([`Demo`]); the seven steps in the order a class sees
//! them ([`Demo::steps`], one module per step below); and what every step
//! uses to check the nodes ([`Demo::expect`]).

mod attacks;
mod enroll;
mod pi;
mod sign;
mod summary;
mod updates;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::node::{Node, NodeState};
use crate::rack::{self, BmcControl, Ports, Service};
use crate::ui::Ui;
use crate::work::{Tools, Workdir};
use crate::Options;

const CHANNEL: &str = "demo";
const STEPS: u32 = 7;
/// How long any one expectation may take before the demo calls it a
/// failure: a minute, plus three watchdog rounds (step 4 needs them).
fn patience(watchdog: Duration) -> Duration {
    Duration::from_secs(60) + 3 * (watchdog + Duration::from_secs(2))
}

/// A run: its options, working directory and tools, the rack's services
/// (started by the steps) and its nodes.
struct Demo {
    o: Options,
    w: Workdir,
    tools: Arc<Tools>,
    ui: Ui,
    ports: Ports,
    bmc: BmcControl,
    rt: tokio::runtime::Runtime,
    keys: Keys,
    nodes: Vec<Node>,
    stop: Arc<AtomicBool>,
    bootd: Option<Service>,
    sim: Option<Service>,
}

/// The keys the release manager signs with.
struct Keys {
    root: Vec<PathBuf>,
    targets: PathBuf,
    snapshot: PathBuf,
    timestamp: PathBuf,
    example: bool,
}

/// Sets up, plays every step, and stops the rack (after Ctrl-C with
/// `--keep-running`).
pub(crate) fn play(o: Options, w: Workdir, rack: &racklet_hardware::Rack) -> Result<()> {
    let ports = Ports::new(o.port_offset)?;
    let tools = Arc::new(Tools::new(
        &o.bin,
        w.path(),
        vec![
            (
                "IMGSIGN_STATE_DIR".into(),
                w.join("imgsign-state").display().to_string(),
            ),
            (
                "BMC_SIM_CONTROL".into(),
                format!("127.0.0.1:{}", ports.bmc_control),
            ),
        ],
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rack::stop_all_on_signal(&rt)?;
    let mut d = Demo {
        keys: Keys::example(&o.workspace),
        o,
        tools,
        ui: Ui::default(),
        bmc: BmcControl::new(ports.bmc_control),
        ports,
        rt,
        nodes: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        bootd: None,
        sim: None,
        w,
    };
    println!(
        "Racklet demo: a simulated rack booted through the real chain\n\
         working directory: {}\n\
         every command it runs is appended to {}",
        d.w.path().display(),
        d.w.join("commands.log").display()
    );
    let r = d.steps(rack);
    d.w.set_state(if r.is_ok() { "complete" } else { "failed" })?;
    if d.o.keep_running {
        if let Err(e) = &r {
            // A teacher debugging a failed run wants the rack up most.
            eprintln!("\nnot as expected: {e:#}\n(the rack stays up for a look)");
        }
        d.explore_until_ctrl_c()?;
    }
    d.stop_all();
    r
}

impl Keys {
    fn example(ws: &Path) -> Keys {
        let k = |n: &str| ws.join("keys-example").join(format!("INSECURE-{n}.pem"));
        Keys {
            root: vec![k("root-1"), k("root-2"), k("root-3")],
            targets: k("targets"),
            snapshot: k("snapshot"),
            timestamp: k("timestamp"),
            example: true,
        }
    }

    fn release_args(&self) -> Vec<String> {
        [&self.targets, &self.snapshot, &self.timestamp]
            .iter()
            .flat_map(|k| ["--key".to_owned(), k.display().to_string()])
            .collect()
    }
}

/// Short hex for people.
fn short(hex: &str) -> String {
    format!("{}…", &hex[..hex.len().min(16)])
}

impl Demo {
    /// The seven steps, in the order a class sees them.
    fn steps(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
        self.step1_sign_and_serve()?;
        self.step2_enroll_and_boot(rack)?;
        self.step3_update()?;
        self.step4_update_that_hangs()?;
        self.step5_button()?;
        self.step6_attacks()?;
        self.step7_summary()
    }

    // ---- what the steps share -----------------------------------------

    /// Restarts the nodes `names` through their BMCs and says `why`.
    fn reboot(&self, names: &[&str], why: &str) -> Result<()> {
        for n in names {
            self.bmc.send(&format!("reset {n} force-restart"))?;
        }
        self.ui.op(why);
        Ok(())
    }

    fn all_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.spec.name.clone()).collect()
    }

    /// Restarts every node; returns how many hand-offs each had before.
    fn reboot_all(&self, why: &str) -> Result<Vec<usize>> {
        let before = self
            .nodes
            .iter()
            .map(|n| n.state().handoffs.len())
            .collect();
        let names = self.all_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.reboot(&names, why)?;
        Ok(before)
    }

    /// How many notes each node has made so far.
    fn notes_len(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.state().notes.len()).collect()
    }

    /// Every node noted (since `before`) a refusal containing `what` and `why`.
    fn expect_note(&self, before: &[usize], what: &str, why: &str) -> Result<()> {
        for (i, n) in self.nodes.iter().enumerate() {
            let s = n.state();
            let fresh = &s.notes[before[i].min(s.notes.len())..];
            if !fresh.iter().any(|l| l.contains(what) && l.contains(why)) {
                bail!(
                    "{} never said why it refused ({what} … {why}); it said: {:?}",
                    n.spec.name,
                    fresh
                );
            }
        }
        Ok(())
    }

    /// `--keep-running`: the rack stays up until Ctrl-C.
    fn explore_until_ctrl_c(&mut self) -> Result<()> {
        println!(
            "\nThe rack keeps running (bootd on :{}, bmc-sim control on :{}); nodes boot \
             whenever their BMC starts them. Ctrl-C stops it.",
            self.ports.bootd, self.ports.bmc_control
        );
        self.rt.block_on(tokio::signal::ctrl_c())?;
        println!(
            "stopping the rack ({} stays for exploring)",
            self.w.path().display()
        );
        Ok(())
    }

    fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.spec.name == name)
            .with_context(|| format!("the rack has no {name}"))
    }

    /// Waits until `ok(index, state)` holds for every node; a node that
    /// fails, or a timeout, ends the demo naming what each node did.
    fn expect(&mut self, what: &str, ok: impl Fn(usize, &NodeState) -> bool) -> Result<()> {
        let start = Instant::now();
        let failures: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| n.state().failures.len())
            .collect();
        loop {
            if let Some(s) = &mut self.sim {
                s.check()?;
            }
            if let Some(b) = &mut self.bootd {
                b.check()?;
            }
            let states: Vec<NodeState> = self.nodes.iter().map(Node::state).collect();
            for (i, s) in states.iter().enumerate() {
                if s.failures.len() > failures[i] {
                    bail!(
                        "{}: stage1 failed ({}) while waiting for: {what}; see nodes/{}/stage1.log",
                        self.nodes[i].spec.name,
                        s.failures.last().map_or("", String::as_str),
                        self.nodes[i].spec.name
                    );
                }
            }
            if states.iter().enumerate().all(|(i, s)| ok(i, s)) {
                self.ui.op(&format!("as expected: {what}"));
                return Ok(());
            }
            let limit = patience(self.o.watchdog);
            if start.elapsed() > limit {
                let mut msg = format!("not as expected after {limit:?}: {what}\n");
                for (i, s) in states.iter().enumerate() {
                    msg.push_str(&format!(
                        "  {}: {} (last hand-off {:?}, confirmed {})\n",
                        self.nodes[i].spec.name,
                        if ok(i, s) { "ok" } else { "NOT" },
                        s.last(),
                        s.confirmed
                    ));
                }
                bail!("{msg}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the node threads, then the BMC simulator and bootd.
    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for n in &mut self.nodes {
            n.join();
        }
        if let Some(mut s) = self.sim.take() {
            s.stop();
        }
        if let Some(mut b) = self.bootd.take() {
            b.stop();
        }
    }
}

fn confirmed_on(s: &NodeState, version: &str) -> bool {
    s.confirmed && s.last().is_some_and(|h| h.version == version)
}
