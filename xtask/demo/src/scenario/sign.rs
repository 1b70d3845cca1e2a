//! Step 1: the release manager signs v1 into a new TUF repository and the
//! rack's boot server starts; and signing a release and (re)starting bootd,
//! which later steps do again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{patience, short, Demo, Keys, CHANNEL, STEPS};
use crate::rack::{self, Service};
use crate::{attacker, https, work};

impl Demo {
    pub(super) fn step1_sign_and_serve(&mut self) -> Result<()> {
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
        let mut served = self.release(&v1, "1.0.0", 1, &["--all-nodes"])?;
        // The attacker of step 6 keeps this copy: metadata that is signed
        // and not yet expired, but old.
        attacker::copy_tree(&self.w.join("repo"), &self.w.join("attacks/old-repo"))?;
        if let Some(v) = self.pi_release()? {
            served = v;
        }

        std::fs::create_dir_all(self.w.join("bootd"))?;
        std::fs::copy(
            self.o.workspace.join("hardware/rack.yaml"),
            self.w.join("bootd/rack.yaml"),
        )?;
        work::write_atomic(
            &self.w.join("bootd/bootd.yaml"),
            bootd_config(self.ports.bootd, self.o.pi.is_some()).as_bytes(),
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
        self.wait_release(served)?;
        self.ui.op(&format!(
            "bootd serve: verified the repository from root.json and serves it on \
             https://localhost:{}/ (log: logs/bootd.log)",
            self.ports.bootd
        ));
        self.pi_fetch()?;
        Ok(())
    }

    /// `--fresh-keys`: six new signing keys instead of keys-example/.
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
    pub(super) fn release(
        &self,
        image: &Path,
        version: &str,
        sv: u64,
        assign: &[&str],
    ) -> Result<u64> {
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

    /// Starts `bootd serve` (its log: logs/bootd.log) and waits until it listens.
    pub(super) fn start_bootd(&mut self) -> Result<()> {
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
    pub(super) fn wait_release(&mut self, v: u64) -> Result<()> {
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
}

/// bootd's configuration for the demo rack: HTTPS on 127.0.0.1:`port`,
/// metadata and images for enrolled nodes only.
fn bootd_config(port: u16, pi: bool) -> String {
    let pi = if pi {
        super::pi::first_stage_config()
    } else {
        String::new()
    };
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
         reload_interval_ms: 500\n{pi}"
    )
}
