//! Step 2: every node asks to join and the operator approves it by its
//! fingerprint; the BMCs power the units on; every node boots v1.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{confirmed_on, patience, short, Demo, CHANNEL, STEPS};
use crate::node::{Node, NodeSpec, Runner};
use crate::rack::{self, KillOnDrop, Service};

/// The enrolling clients (node name, process) and each node's key fingerprint.
type Enrolling = (Vec<(String, KillOnDrop)>, BTreeMap<String, String>);

impl Demo {
    pub(super) fn step2_enroll_and_boot(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
        self.ui.step(
            2,
            STEPS,
            "Five nodes join the rack, power on, and boot through stage1",
            "Each node makes its own key and asks bootd for a certificate; the operator\n\
             approves after comparing the fingerprint. Then the BMCs power the units on,\n\
             and stage1 verifies, installs and hands off on every node.",
        );
        let (asking, fingerprints) = self.ask_to_join(rack)?;
        self.approve(fingerprints)?;
        self.wait_enrolled(asking)?;
        self.power_on(rack)?;
        self.start_nodes(rack)?;
        self.expect("every node boots v1 and confirms it", |_, s| {
            confirmed_on(s, "1.0.0")
        })
    }

    /// Every node asks at once (`bootd client enroll`) and shows its key's
    /// fingerprint. Returns the waiting clients and the fingerprints by node.
    fn ask_to_join(&mut self, rack: &racklet_hardware::Rack) -> Result<Enrolling> {
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
        let mut fingerprints = BTreeMap::new();
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
        Ok((asking, fingerprints))
    }

    /// The operator approves each pending request whose key is the one its
    /// node showed, until every node in `fingerprints` is approved.
    fn approve(&mut self, mut fingerprints: BTreeMap<String, String>) -> Result<()> {
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
        Ok(())
    }

    /// Waits for every enrolling client to finish with its certificate.
    fn wait_enrolled(&mut self, asking: Vec<(String, KillOnDrop)>) -> Result<()> {
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
        Ok(())
    }

    /// Starts the BMC simulator (the units power on) and sets every BMC's clock.
    fn power_on(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
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
            c.args(["set-time", n.name.as_str(), &now.to_string()]);
            self.tools.run(c)?;
        }
        self.ui
            .op("sets each BMC's clock (a Pi has no RTC; stage1 takes trusted time from its BMC)");
        Ok(())
    }

    /// One thread per node, watching its BMC and booting stage1 on its disk.
    fn start_nodes(&mut self, rack: &racklet_hardware::Rack) -> Result<()> {
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
        Ok(())
    }
}
