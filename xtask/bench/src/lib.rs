//! What the benchmark harnesses share: a repository signed with fresh keys,
//! a bootd started as a process on loopback, and small process helpers.
//!
//! - `bootd-bench`: bootd against nginx on the same files and certificate;
//! - `stage1-bench`: `stage1 slots install` against `curl | tee | sha256sum`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Fails unless `tool` is on PATH.
pub fn need(tool: &str) -> Result<()> {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("needs {tool} on PATH");
    }
    Ok(())
}

/// A binary built beside the running harness (`target/release/NAME`).
pub fn sibling(name: &str, package: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} is missing: cargo build --release -p {package}",
            p.display()
        );
    }
    Ok(p)
}

/// Writes `mib` MiB of incompressible bytes (xorshift, seeded).
pub fn write_image(path: &Path, mib: u64, seed: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&block)?;
    }
    f.flush()?;
    Ok(())
}

/// The median (of a non-empty list).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A repository signed with imgsign and fresh keys (root, targets,
/// snapshot, timestamp: one key each), every image on the `bench`
/// channel for all nodes.
#[derive(Debug)]
pub struct SignedRepo {
    /// The repository directory.
    pub dir: PathBuf,
    /// A copy of `1.root.json`: the root a client pins.
    pub root: PathBuf,
    /// Each image's name and SHA-256 (hex), in the order given.
    pub images: Vec<(String, String)>,
}

impl SignedRepo {
    /// Signs `images` (name, file) into `work/repo`.
    pub fn create(work: &Path, images: &[(&str, &Path)]) -> Result<SignedRepo> {
        let k = imgsign::keys::SigningKeyPair::generate;
        let (root, targets, snapshot, timestamp) = (k(), k(), k(), k());
        let spec = imgsign::init::RootSpec::one_key_each(
            root.public(),
            targets.public(),
            snapshot.public(),
            timestamp.public(),
        );
        let dir = work.join("repo");
        let expiries = imgsign::repo::Expiries::default();
        imgsign::init::init(
            &dir,
            &spec,
            &[&root, &targets, &snapshot, &timestamp],
            jiff::Timestamp::now(),
            &expiries,
        )?;
        let info: racklet_release::ReleaseInfo = serde_json::from_value(serde_json::json!({
            "kind": "os", "version": "1.0.0", "security_version": 1, "arch": "x86_64",
            "channel": "bench", "assign": {"all": true},
        }))?;
        let specs = images
            .iter()
            .map(|(name, path)| {
                Ok(imgsign::sign::ImageSpec {
                    path: path.to_path_buf(),
                    name: racklet_release::ImageName::new(name)?,
                    info: info.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let report = imgsign::sign::sign_release(
            &dir,
            &specs,
            imgsign::sign::Placement::Link,
            &[&targets, &snapshot, &timestamp],
            jiff::Timestamp::now(),
            &expiries,
            &mut |_| {},
        )?;
        let root_copy = work.join("root.json");
        std::fs::copy(dir.join("metadata/1.root.json"), &root_copy)?;
        Ok(SignedRepo {
            dir,
            root: root_copy,
            images: report
                .images
                .iter()
                .map(|(n, d)| (n.to_string(), d.hex()))
                .collect(),
        })
    }

    /// `/targets/<sha256>.<name>`: the consistent-snapshot path of an image.
    pub fn target_path(&self, name: &str) -> Result<String> {
        let (_, hex) = self
            .images
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("{name} not in the release"))?;
        Ok(format!("/targets/{hex}.{name}"))
    }
}

/// A server process, stopped (TERM, then KILL) when dropped.
#[derive(Debug)]
pub struct Server {
    /// Its name in the results.
    pub name: &'static str,
    /// Its HTTPS port on loopback.
    pub port: u16,
    /// The process.
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// bootd, configured in `work` to serve `repo` on a free loopback port
/// with a fresh rack PKI (`bootd pki init`), started as a process.
#[derive(Debug)]
pub struct Bootd {
    /// The process.
    pub server: Server,
    /// The rack CA certificate (PEM) clients pin.
    pub ca: PathBuf,
    /// The server certificate and key (for a peer server on the same
    /// certificate).
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
}

impl Bootd {
    /// Configures and starts `bootd serve` (`extra_yaml` is appended to its
    /// configuration; `args` to `serve`), waiting until it serves `ready`.
    pub fn start(
        bin: &Path,
        work: &Path,
        repo: &SignedRepo,
        extra_yaml: &str,
        args: &[String],
        ready: &str,
    ) -> Result<Bootd> {
        std::fs::write(
            work.join("rack.yaml"),
            include_str!("../../../hardware/rack.yaml"),
        )?;
        let port = free_port()?;
        let config = work.join("bootd.yaml");
        std::fs::write(
            &config,
            format!(
                "rack_file: rack.yaml\nstate_dir: state\nlisten:\n  https: [\"127.0.0.1:{port}\"]\n\
                 tls:\n  ca_cert: pki/ca.pem\n  ca_key: pki/ca.key\n  server_cert: pki/server.pem\n  server_key: pki/server.key\n  server_names: [localhost]\n\
                 repository:\n  trusted_root: {}\n  local: {}\n{extra_yaml}",
                repo.root.display(),
                repo.dir.display(),
            ),
        )?;
        let out = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["pki", "init"])
            .output()?;
        if !out.status.success() {
            bail!("bootd pki init: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pki = work.join("pki");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .args(args)
            .env("BOOTD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let b = Bootd {
            server: Server {
                name: "bootd",
                port,
                child,
            },
            ca: pki.join("ca.pem"),
            server_cert: pki.join("server.pem"),
            server_key: pki.join("server.key"),
        };
        wait_ready(&b.ca, port, ready)?;
        Ok(b)
    }
}

/// `curl` over TLS 1.3 to `https://localhost:PORT/PATH` trusting `ca`,
/// body discarded; `extra` are more curl arguments (e.g. `-w`). Deadlines
/// as every client of the tree has them: connect + TLS handshake 10 s,
/// idle (under 1 B/s for 30 s), total 300 s.
pub fn curl(ca: &Path, port: u16, path: &str, extra: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--connect-timeout",
            "10",
            "--speed-limit",
            "1",
            "--speed-time",
            "30",
            "--max-time",
            "300",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(ca)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "--tlsv1.3",
        ])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .output()?;
    if !out.status.success() {
        bail!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits (up to a minute) until the server on `port` serves `path`.
pub fn wait_ready(ca: &Path, port: u16, path: &str) -> Result<()> {
    let start = Instant::now();
    while curl(ca, port, path, &["-r", "0-0"]).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("server on port {port} never served {path}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
