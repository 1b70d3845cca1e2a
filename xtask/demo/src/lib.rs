//! The demo rack: the whole Racklet chain on one laptop, scripted.
//!
//! It runs the project's real binaries as a rack would — `imgsign` (the
//! release manager's laptop), `bootd serve` (the rack's boot server),
//! `bmc-sim run` (five BMCs), and per node `stage1 boot` / `stage1 confirm`
//! on a file-backed disk — over real sockets and real TLS, and checks at
//! every step that each node did what the chain promises. Any surprise ends
//! the run with an error naming the node and what it did instead.
//!
//! `cargo xtask demo` builds everything and starts [`run`]; see
//! `docs/src/demo.md` for the walk-through a class follows.

pub mod attacker;
pub mod https;
pub mod node;
pub mod rack;
pub mod ui;
pub mod work;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::attacker::Compromised;
use crate::node::{Node, NodeSpec, NodeState, Runner};
use crate::rack::{BmcControl, Ports, Service};
use crate::ui::Ui;
use crate::work::{Tools, Workdir};

/// The images the demo publishes, built by `cargo xtask demo` from
/// `images/recipes/` (reproducible, so every class gets the same bytes).
#[derive(Clone, Debug)]
pub struct Images {
    /// demo-os 1.0.0, security version 1: the first install.
    pub v1: PathBuf,
    /// demo-os 2.0.0, security version 1: a feature update.
    pub v2: PathBuf,
    /// demo-os 3.0.0, security version 2: a security fix that hangs.
    pub v3: PathBuf,
    /// demo-os 4.0.0, security version 2: the fixed security fix.
    pub v4: PathBuf,
}

/// How to run the demo.
#[derive(Clone, Debug)]
pub struct Options {
    /// The workspace (for `hardware/rack.yaml`, `keys-example/`).
    pub workspace: PathBuf,
    /// Where the binaries are (`target/debug`).
    pub bin: PathBuf,
    /// The working directory.
    pub workdir: PathBuf,
    /// The images.
    pub images: Images,
    /// Wipe an earlier run's working directory first (class reset).
    pub reset: bool,
    /// Generate new signing keys instead of the published example keys.
    pub fresh_keys: bool,
    /// Keep the rack running after the scenario, until Ctrl-C.
    pub keep_running: bool,
    /// The BMCs' confirmation window.
    pub watchdog: Duration,
    /// Added to every port.
    pub port_offset: u16,
}

const CHANNEL: &str = "demo";
const STEPS: u32 = 7;
/// How long any one expectation may take before the demo calls it a
/// failure: a minute, plus three watchdog rounds (step 4 needs them).
fn patience(watchdog: Duration) -> Duration {
    Duration::from_secs(60) + 3 * (watchdog + Duration::from_secs(2))
}

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

struct Keys {
    root: Vec<PathBuf>,
    targets: PathBuf,
    snapshot: PathBuf,
    timestamp: PathBuf,
    example: bool,
}

/// Runs the scenario; `Ok` only if every node did what was expected.
pub fn run(o: Options) -> Result<()> {
    let rack = racklet_hardware::Rack::load(&o.workspace.join("hardware/rack.yaml"))
        .context("loading hardware/rack.yaml")?;
    let ports = Ports::new(o.port_offset)?;
    ports.check_free(rack.nodes.len())?;
    let w = Workdir::prepare(&o.workdir, o.reset)?;
    scenario(o, w, &rack)
}

fn scenario(o: Options, w: Workdir, rack: &racklet_hardware::Rack) -> Result<()> {
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
    fn steps(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
        self.step1_sign_and_serve()?;
        self.step2_enroll_and_boot(rack)?;
        self.step3_update()?;
        self.step4_update_that_hangs()?;
        self.step5_button()?;
        self.step6_attacks()?;
        self.step7_summary()
    }

    // ---- step 1 ------------------------------------------------------

    fn step1_sign_and_serve(&mut self) -> Result<()> {
        self.ui.step(
            1,
            STEPS,
            "The release manager signs v1; the rack's boot server starts",
            "imgsign makes a TUF repository: root keys (2 of 3 must sign) vouch for the\n\
             targets key (releases), the snapshot key and the timestamp key (freshness).\n\
             bootd serves only what verifies from the root it pins.",
        );
        if self.w.wiped {
            self.ui.op(
                "class reset: the earlier rack is gone; new rack CA, server and node keys, \
                 blank disks, BMC counters at zero",
            );
        }
        if self.o.fresh_keys {
            self.generate_keys()?;
        } else {
            self.ui.op(
                "signing keys: keys-example/INSECURE-* (published, so imgsign allows them \
                 only on the `demo` channel; --fresh-keys makes new ones)",
            );
        }
        let mut init = self.tools.cmd("imgsign");
        init.args(["init", "--repo", "repo"]);
        for k in &self.keys.root {
            init.arg("--root-key").arg(k);
        }
        init.args(["--root-threshold", "2"])
            .arg("--targets-key")
            .arg(&self.keys.targets)
            .arg("--snapshot-key")
            .arg(&self.keys.snapshot)
            .arg("--timestamp-key")
            .arg(&self.keys.timestamp);
        self.tools.run(init)?;
        std::fs::copy(
            self.w.join("repo/metadata/1.root.json"),
            self.w.join("root.json"),
        )?;
        self.ui.op(
            "imgsign init: repository with root v1 (2-of-3 root keys); root.json is the pin \
             every node and bootd start from",
        );
        let v1 = self.o.images.v1.clone();
        self.release(&v1, "1.0.0", 1, &["--all-nodes"])?;
        // The attacker of step 6 keeps this copy: metadata that is signed
        // and not yet expired, but old.
        attacker::copy_tree(&self.w.join("repo"), &self.w.join("attacks/old-repo"))?;

        std::fs::create_dir_all(self.w.join("bootd"))?;
        std::fs::copy(
            self.o.workspace.join("hardware/rack.yaml"),
            self.w.join("bootd/rack.yaml"),
        )?;
        work::write_atomic(
            &self.w.join("bootd/bootd.yaml"),
            bootd_config(self.ports.bootd).as_bytes(),
        )?;
        let mut pki = self.tools.cmd("bootd");
        pki.args(["--config", "bootd/bootd.yaml", "pki", "init"]);
        let out = self.tools.run(pki)?;
        let said = String::from_utf8_lossy(&out.stdout);
        let server_fp = said
            .split("(sha256 ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or("?");
        self.ui.op(&format!(
            "bootd pki init: a fresh rack CA (bootd/pki/ca.pem, every node pins it) and a \
             server certificate for localhost (sha256 {})",
            short(server_fp)
        ));
        self.start_bootd()?;
        self.wait_release(2)?;
        self.ui.op(&format!(
            "bootd serve: verified the repository from root.json and serves it on \
             https://localhost:{}/ (log: logs/bootd.log)",
            self.ports.bootd
        ));
        Ok(())
    }

    fn generate_keys(&mut self) -> Result<()> {
        let dir = self.w.join("keys");
        std::fs::create_dir_all(&dir)?;
        let gen = |name: &str| -> Result<PathBuf> {
            let p = dir.join(format!("{name}.pem"));
            let mut c = self.tools.cmd("imgsign");
            c.args(["key", "generate"]).arg(&p);
            self.tools.run(c)?;
            Ok(p)
        };
        self.keys = Keys {
            root: vec![gen("root-1")?, gen("root-2")?, gen("root-3")?],
            targets: gen("targets")?,
            snapshot: gen("snapshot")?,
            timestamp: gen("timestamp")?,
            example: false,
        };
        self.ui.op(
            "signing keys: six new Ed25519 keys in keys/ (mode 0600; imgsign never prints them)",
        );
        Ok(())
    }

    /// `imgsign sign release` of one image, then the timestamp version it made.
    fn release(&self, image: &Path, version: &str, sv: u64, assign: &[&str]) -> Result<u64> {
        let mut c = self.tools.cmd("imgsign");
        c.args(["sign", "release", "--repo", "repo"])
            .args(self.keys.release_args())
            .args(["--kind", "os", "--version", version])
            .args(["--security-version", &sv.to_string()])
            .args(["--arch", "x86_64", "--channel", CHANNEL])
            .args(assign)
            .arg(image);
        self.tools.run(c)?;
        let ts = std::fs::read(self.w.join("repo/metadata/timestamp.json"))?;
        let v = https::version(&ts)?;
        let name = image.file_name().unwrap_or_default().to_string_lossy();
        self.ui.op(&format!(
            "imgsign sign release: {name} (version {version}, security version {sv}) for {} \
             — targets, snapshot and timestamp v{v} signed and published",
            assign.join(" ").trim_start_matches("--").replace("--", "")
        ));
        Ok(v)
    }

    fn start_bootd(&mut self) -> Result<()> {
        std::fs::create_dir_all(self.w.join("logs"))?;
        let mut c = self.tools.cmd("bootd");
        c.args(["--config", "bootd/bootd.yaml", "serve"]);
        let mut svc = Service::start("bootd", &self.tools, c, &self.w.join("logs/bootd.log"))?;
        rack::wait_listening(
            ([127, 0, 0, 1], self.ports.bootd).into(),
            &mut svc,
            Duration::from_secs(20),
        )?;
        self.bootd = Some(svc);
        Ok(())
    }

    /// Waits until bootd serves timestamp version `v` (it re-verifies every
    /// publish before taking it into service).
    fn wait_release(&mut self, v: u64) -> Result<()> {
        let start = Instant::now();
        let ca = self.w.join("bootd/pki/ca.pem");
        loop {
            if let Some(b) = &mut self.bootd {
                b.check()?;
            }
            // /healthz says which timestamp version bootd verified and
            // serves (metadata itself needs a node's client certificate).
            let got = self
                .rt
                .block_on(https::get(self.ports.bootd, "/healthz", &ca))
                .and_then(|b| https::healthz_timestamp(&b));
            if let Ok(got) = got {
                if got >= v {
                    return Ok(());
                }
            }
            if start.elapsed() > patience(self.o.watchdog) {
                bail!(
                    "bootd did not serve timestamp v{v} in time (last: {got:?}); \
                     see logs/bootd.log"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // ---- step 2 ------------------------------------------------------

    fn step2_enroll_and_boot(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
        self.ui.step(
            2,
            STEPS,
            "Five nodes join the rack, power on, and boot through stage1",
            "Each node makes its own key and asks bootd for a certificate; the operator\n\
             approves after comparing the fingerprint. Then the BMCs power the units on,\n\
             and stage1 verifies, installs and hands off on every node.",
        );
        // Enrollment: every node asks at once; the operator approves each
        // request whose fingerprint matches what the node shows.
        let mut asking = Vec::new();
        for n in &rack.nodes {
            let dir = self.w.join("nodes").join(n.name.as_str());
            std::fs::create_dir_all(&dir)?;
            let mut c = self.tools.cmd("bootd");
            c.args(["client", "enroll", "--server"])
                .arg(format!("https://localhost:{}/", self.ports.bootd))
                .args(["--ca", "bootd/pki/ca.pem", "--node", n.name.as_str()])
                .arg("--out")
                .arg(dir.join("identity"))
                .args(["--timeout-s", "60"]);
            self.tools.note(&c);
            let child = c
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("starting bootd client enroll")?;
            asking.push((n.name.to_string(), rack::KillOnDrop(child)));
        }
        let mut fingerprints = std::collections::BTreeMap::new();
        for (name, child) in &mut asking {
            let out = child.0.stdout.as_mut().expect("piped");
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
            let fp = line
                .split("key-sha256=")
                .nth(1)
                .map(|s| s.trim().to_owned())
                .with_context(|| format!("{name}: enroll said {line:?}"))?;
            self.ui.node(
                name,
                &format!("asks to join: its key's sha256 is {}", short(&fp)),
            );
            fingerprints.insert(name.clone(), fp);
        }
        let start = Instant::now();
        while !fingerprints.is_empty() {
            let mut c = self.tools.cmd("bootd");
            c.args(["--config", "bootd/bootd.yaml", "nodes", "pending"]);
            let out = self.tools.run(c)?;
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let mut words = l.split_whitespace();
                let (Some(id), Some(node)) = (words.next(), l.split("node=").nth(1)) else {
                    continue;
                };
                let node = node.split_whitespace().next().unwrap_or("");
                let fp = l.split("key-sha256=").nth(1).unwrap_or("").trim();
                let Some(want) = fingerprints.get(node) else {
                    continue;
                };
                if want != fp {
                    bail!("{node}: pending request {id} has key {fp}, the node showed {want}");
                }
                let mut a = self.tools.cmd("bootd");
                a.args(["--config", "bootd/bootd.yaml", "nodes", "approve", id]);
                let said = self.tools.run(a)?;
                let cert = String::from_utf8_lossy(&said.stdout);
                let cert = cert
                    .split("cert-sha256=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .unwrap_or("?");
                self.ui.op(&format!(
                    "approves {node}: the fingerprint matches; client certificate {} signed \
                     by the rack CA",
                    short(cert)
                ));
                fingerprints.remove(node);
            }
            if start.elapsed() > patience(self.o.watchdog) {
                bail!("enrollment requests never arrived for {fingerprints:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (name, mut child) in asking {
            let status = child.0.wait()?;
            if !status.success() {
                let mut err = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("{name}: enrollment failed: {err}");
            }
            self.ui.node(
                &name,
                "enrolled: key and certificate in its identity/ (used for mTLS to bootd)",
            );
        }

        // Power on.
        let mut c = self.tools.cmd("bmc-sim");
        c.arg("run")
            .arg("--rack")
            .arg("bootd/rack.yaml")
            .args(["--state-dir", "bmc"])
            .arg("--control")
            .arg(format!("127.0.0.1:{}", self.ports.bmc_control))
            .arg("--units")
            .arg(format!("127.0.0.1:{}", self.ports.bmc_units))
            .arg("--metrics")
            .arg(format!("127.0.0.1:{}", self.ports.bmc_metrics))
            .arg("--watchdog-s")
            .arg(self.o.watchdog.as_secs().to_string());
        let mut sim = Service::start("bmc-sim", &self.tools, c, &self.w.join("logs/bmc-sim.log"))?;
        rack::wait_listening(
            ([127, 0, 0, 1], self.ports.bmc_control).into(),
            &mut sim,
            Duration::from_secs(20),
        )?;
        self.sim = Some(sim);
        self.ui.op(&format!(
            "bmc-sim: {} BMCs power their units on, {} ms apart (as a backplane limits \
             inrush); each boot must confirm within {} s or the BMC power-cycles it",
            rack.nodes.len(),
            rack.power.stagger.as_millis(),
            self.o.watchdog.as_secs()
        ));
        // A Pi has no clock: the BMC keeps the rack's time, and stage1 checks
        // metadata expiry against it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        for n in &rack.nodes {
            let mut c = self.tools.cmd("bmc-sim");
            c.args(["call", n.name.as_str(), "set-time", &now.to_string()]);
            self.tools.run(c)?;
        }
        self.ui
            .op("sets each BMC's clock (a Pi has no RTC; stage1 takes trusted time from its BMC)");
        let runner = Runner {
            tools: self.tools.clone(),
            bmc: self.bmc,
            bootd: format!("https://localhost:{}/", self.ports.bootd),
            channel: CHANNEL.into(),
            ui: self.ui.clone(),
            stop: self.stop.clone(),
            watchdog: self.o.watchdog,
        };
        for (i, n) in rack.nodes.iter().enumerate() {
            let dir = self.w.join("nodes").join(n.name.as_str());
            let disk = std::fs::File::create(dir.join("disk.img"))?;
            disk.set_len(16 << 20)?;
            let spec = NodeSpec {
                name: n.name.to_string(),
                groups: n.groups.iter().map(|g| g.to_string()).collect(),
                arch: n.arch.to_string(),
                smbus: n.smbus_address,
                bmc: format!("127.0.0.1:{}", self.ports.bmc_units + i as u16),
                dir,
                install_deadline_s: self.o.watchdog.as_secs().saturating_sub(2).max(1),
            };
            self.nodes.push(Node::start(spec, runner.clone()));
        }
        self.expect("every node boots v1 and confirms it", |_, s| {
            confirmed_on(s, "1.0.0")
        })
    }

    // ---- steps 3 to 5 ------------------------------------------------

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

    fn step3_update(&mut self) -> Result<()> {
        self.ui.step(
            3,
            STEPS,
            "v2 is published; every node installs it into its inactive slot",
            "The running slot is never written: the new image goes into the other slot,\n\
             is verified, and only then becomes the BMC's choice for the next boot.",
        );
        let v2 = self.o.images.v2.clone();
        let ts = self.release(&v2, "2.0.0", 1, &["--all-nodes"])?;
        self.wait_release(ts)?;
        self.ui.op(
            "bootd verified the new release and serves it (v2 is a feature release: same \
             security version, so the rollback minimum stays 1; v4 raises it in step 6)",
        );
        let before =
            self.reboot_all("reboots every node (`bmc-sim reset unit-N force-restart`)")?;
        self.expect(
            "every node installs v2 into slot A, boots and confirms it",
            |i, s| {
                s.handoffs.len() > before[i]
                    && confirmed_on(s, "2.0.0")
                    && s.last().is_some_and(|h| h.slot == 'A')
            },
        )
    }

    fn step4_update_that_hangs(&mut self) -> Result<()> {
        self.ui.step(
            4,
            STEPS,
            "v3, a security fix, goes to the canary node only — and never confirms",
            "The BMC counts boot attempts. An image that does not confirm within the watchdog\n\
             window is power-cycled; when its tries run out the BMC falls back to the other\n\
             slot. The rollback minimum only rises on a confirmed boot, so the way back stays open.",
        );
        let v3 = self.o.images.v3.clone();
        let ts = self.release(&v3, "3.0.0", 2, &["--group", "canary"])?;
        self.wait_release(ts)?;
        let before = self.reboot_all("reboots every node")?;
        let canary = self.node_index("unit-5")?;
        self.expect(
            "unit-5 tries v3, the BMC falls back to v2; the others ignore v3",
            |i, s| {
                let fresh = &s.handoffs[before[i].min(s.handoffs.len())..];
                if i == canary {
                    fresh.iter().any(|h| h.version == "3.0.0")
                        && confirmed_on(s, "2.0.0")
                        && s.rollback_min == Some(1)
                } else {
                    !fresh.is_empty() && confirmed_on(s, "2.0.0")
                }
            },
        )?;
        let tried = self.nodes[canary].state().handoffs[before[canary]..]
            .iter()
            .filter(|h| h.version == "3.0.0")
            .count();
        let mut show = self.tools.cmd("stage1");
        show.args(["slots", "show", "nodes/unit-5/disk.img"]);
        let out = self.tools.run(show)?;
        let shown = String::from_utf8_lossy(&out.stdout);
        if !shown
            .lines()
            .any(|l| l.starts_with("slot B: Failed") && l.contains("3.0.0"))
        {
            bail!("unit-5's disk does not record v3's slot as failed:\n{shown}");
        }
        self.ui.op(&format!(
            "unit-5 booted v3 {tried} times without a confirmation; the BMC fell back to v2 \
             and stage1 recorded slot B (v3) as failed (`stage1 slots show`); the rollback \
             minimum is still 1"
        ));
        // v3 is still the newest release for unit-5: it must not try again.
        let notes = self.notes_len();
        let before = self.nodes[canary].state().handoffs.len();
        self.reboot(
            &["unit-5"],
            "reboots unit-5 while v3 is still its newest release",
        )?;
        self.expect("unit-5 does not install v3 again and boots v2", |i, s| {
            i != canary || (s.handoffs.len() > before && confirmed_on(s, "2.0.0"))
        })?;
        let said = &self.nodes[canary].state().notes[notes[canary]..];
        if !said.iter().any(|l| l.contains("not installed again")) {
            bail!("unit-5 did not say why it skipped v3: {said:?}");
        }
        Ok(())
    }

    fn step5_button(&mut self) -> Result<()> {
        self.ui.step(
            5,
            STEPS,
            "The operator holds unit-2's button: slot B, whatever the counters say",
            "The button is the local way back to the other image when the software cannot\n\
             be trusted to decide. stage1 still verifies slot B before it runs.",
        );
        let i = self.node_index("unit-2")?;
        let before = self.nodes[i].state().handoffs.len();
        self.bmc.send("press unit-2 long")?;
        self.ui.op(
            "holds unit-2's button for 3.5 s (`bmc-sim press unit-2 --long`): the BMC \
             power-cycles it into slot B",
        );
        self.expect("unit-2 boots slot B (v1) and confirms it", |j, s| {
            j != i
                || (s.handoffs.len() > before
                    && confirmed_on(s, "1.0.0")
                    && s.last().is_some_and(|h| h.slot == 'B'))
        })?;
        let st = self.bmc.unit("unit-2")?;
        if st.get("slot") != "B" {
            bail!(
                "unit-2's BMC boots slot {} after the button",
                st.get("slot")
            );
        }
        self.ui.op(
            "had v2 raised the security version, stage1 would refuse v1 here: the button \
             cannot undo a security fix",
        );
        Ok(())
    }

    // ---- step 6 ------------------------------------------------------

    fn step6_attacks(&mut self) -> Result<()> {
        self.ui.step(
            6,
            STEPS,
            "An attacker takes over the boot server",
            "v4 (the fixed security fix) is signed. Then someone breaks into the bootd host:\n\
             they hold its address and TLS key, so TLS alone cannot help. Only the\n\
             signatures can, and the attacker has no signing key.",
        );
        let v4 = self.o.images.v4.clone();
        let ts = self.release(&v4, "4.0.0", 2, &["--all-nodes"])?;
        self.wait_release(ts)?;
        if let Some(mut b) = self.bootd.take() {
            b.stop();
        }
        self.ui
            .op("the attacker stops bootd and serves files of their own on its address");

        // (a) A tampered image: the signed metadata, other bytes.
        let evil = self.w.join("attacks/tampered-repo");
        attacker::copy_tree(&self.w.join("repo"), &evil)?;
        let target = tamper(&evil.join("targets"), "4.0.0.uki")?;
        self.attack(
            &evil,
            &format!(
                "attack 1, a tampered image: {target} now carries a changed kernel command \
                 line (same size); the metadata is the real, signed one. Without TUF every \
                 node would boot it"
            ),
            "every node refuses the tampered v4 and boots what it has",
            ("not installed", "sha256"),
        )?;
        self.ui.op(
            "the attack cost each node its second image (the half-written slot stays \
             invalid), never its running one",
        );
        // (b) A rolled-back repository: old, validly signed metadata.
        self.attack(
            &self.w.join("attacks/old-repo"),
            "attack 2, a rollback: the attacker serves the repository as it was at v1 \
             — every file validly signed and unexpired, just old. Without TUF's version \
             checks nodes would never learn of v4's fix (a freeze)",
            "every node refuses the old metadata and boots what it has",
            ("refused bootd's metadata", "previously fetched"),
        )?;

        self.start_bootd()?;
        self.wait_release(ts)?;
        self.ui
            .op("the operator rebuilds the bootd host; bootd verifies the repository again");
        let before = self.reboot_all("reboots every node")?;
        self.expect("every node installs v4 and confirms it", |i, s| {
            s.handoffs.len() > before[i] && confirmed_on(s, "4.0.0") && s.rollback_min == Some(2)
        })
    }

    /// Serves `dir` as the compromised boot server, reboots every node, and
    /// expects each to boot what it had (not v4) and to say why it refused
    /// (a line containing both words of `said`).
    fn attack(&mut self, dir: &Path, what: &str, expect: &str, said: (&str, &str)) -> Result<()> {
        let srv = self.compromised(dir)?;
        let notes = self.notes_len();
        self.ui.op(what);
        let before = self.reboot_all("reboots every node")?;
        let r = self.expect(expect, |i, s| {
            s.handoffs.len() > before[i]
                && s.confirmed
                && s.last().is_some_and(|h| h.version != "4.0.0")
        });
        self.rt.block_on(srv.shutdown());
        r?;
        self.expect_note(&notes, said.0, said.1)
    }

    fn compromised(&self, dir: &Path) -> Result<Compromised> {
        let _g = self.rt.enter();
        self.rt.block_on(Compromised::start(
            ([127, 0, 0, 1], self.ports.bootd).into(),
            dir.to_owned(),
            &self.w.join("bootd/pki/server.pem"),
            &self.w.join("bootd/pki/server.key"),
        ))
    }

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

    // ---- step 7 ------------------------------------------------------

    fn step7_summary(&mut self) -> Result<()> {
        self.ui.step(
            7,
            STEPS,
            "The rack now",
            "From the BMCs (slot, counters) and from what each node's stage1 handed off.",
        );
        let status = self.bmc.status()?;
        println!(
            "\n  {:<8} {:>4}  {:<8} {:>8}  {:<9} {:>8} {:>6}",
            "NODE", "SLOT", "VERSION", "SECURITY", "CONFIRMED", "MIN", "BOOTS"
        );
        for n in &self.nodes {
            let s = n.state();
            let b = status.get(&n.spec.name).cloned().unwrap_or_default();
            let h = s.last();
            // What the BMC says must be what the node booted.
            let agrees = h.is_some_and(|h| {
                b.get("slot") == h.slot.to_string()
                    && h.version == "4.0.0"
                    && h.security_version == 2
            }) && b.get("confirmed") == "true"
                && b.get("min.boot_image") == "2";
            if !agrees {
                bail!(
                    "{}: the BMC says slot {} confirmed {} minimum {}, the node last booted {h:?}",
                    n.spec.name,
                    b.get("slot"),
                    b.get("confirmed"),
                    b.get("min.boot_image")
                );
            }
            println!(
                "  {:<8} {:>4}  {:<8} {:>8}  {:<9} {:>8} {:>6}",
                n.spec.name,
                b.get("slot"),
                h.map_or("-", |h| h.version.as_str()),
                h.map_or("-".into(), |h| h.security_version.to_string()),
                b.get("confirmed"),
                b.get("min.boot_image"),
                b.get("boot_count"),
            );
        }
        println!(
            "\nAll as expected, in {:.1} s. Explore what happened:\n\
             \x20 cd {dir}\n\
             \x20 less commands.log                      # every command, to replay by hand\n\
             \x20 less nodes/unit-5/stage1.log           # stage1's own log for one node\n\
             \x20 {bin}/stage1 slots show nodes/unit-5/disk.img\n\
             \x20 {bin}/imgsign status --repo repo\n\
             {running}\n\
             \x20 {bin}/bootd --config bootd/bootd.yaml nodes list\n\
             \x20 curl --cacert bootd/pki/ca.pem https://localhost:{port}/metrics\n\
             \x20 {bin}/bmc-sim status --control 127.0.0.1:{ctl}\n\
             \x20 curl http://127.0.0.1:{met}/metrics     # the BMCs' power metrics\n\
             \x20 {bin}/bmc-sim press unit-2 --long --control 127.0.0.1:{ctl}\n\
             \x20   # unit-2's slot B holds v1 (security version 1, below the minimum 2):\n\
             \x20   # stage1 refuses it and the node comes back on A — the button cannot\n\
             \x20   # undo a security fix",
            self.ui.elapsed(),
            dir = self.w.path().display(),
            bin = self.tools.bin().display(),
            port = self.ports.bootd,
            ctl = self.ports.bmc_control,
            met = self.ports.bmc_metrics,
            running = if self.o.keep_running {
                "The rack is still running; try:"
            } else {
                "With the rack running (`cargo xtask demo --reset --keep-running`):"
            },
        );
        if self.keys.example {
            println!(
                "\nThe signing keys were the published example keys: fine for a demo, \
                 never for a real rack."
            );
        }
        Ok(())
    }

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

    // ---- helpers -----------------------------------------------------

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

/// Changes the kernel command line inside the image whose name ends in
/// `suffix` (same length, so only the digest gives it away). Returns its name.
fn tamper(targets: &Path, suffix: &str) -> Result<String> {
    for e in std::fs::read_dir(targets)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(suffix) {
            continue;
        }
        let mut bytes = std::fs::read(e.path())?;
        let needle = b"console=ttyS0";
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .context("no command line to tamper with")?;
        bytes[at..at + needle.len()].copy_from_slice(b"init=/evil.sh");
        std::fs::write(e.path(), bytes)?;
        return Ok(name);
    }
    bail!("no target ending in {suffix} in {}", targets.display())
}

fn bootd_config(port: u16) -> String {
    format!(
        "# bootd for the demo rack (written by `cargo xtask demo`; see bootd/README.md).\n\
         rack_file: rack.yaml\n\
         state_dir: state\n\
         listen:\n\
         \x20 https: [\"127.0.0.1:{port}\"]\n\
         tls:\n\
         \x20 ca_cert: pki/ca.pem\n\
         \x20 ca_key: pki/ca.key\n\
         \x20 server_cert: pki/server.pem\n\
         \x20 server_key: pki/server.key\n\
         \x20 server_names: [localhost, 127.0.0.1]\n\
         repository:\n\
         \x20 trusted_root: ../root.json\n\
         \x20 local: ../repo\n\
         \x20 poll_interval_ms: 100\n\
         \x20 # Metadata and images for enrolled nodes only (mTLS).\n\
         \x20 require_client_cert: true\n\
         reload_interval_ms: 500\n"
    )
}
