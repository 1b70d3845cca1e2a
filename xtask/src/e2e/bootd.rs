//! bootd in the e2e: its three configurations (proxyDHCP on, off, and
//! full-DHCP mode), its PKI, starting it in the rack's namespace, and the
//! release it serves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::lab::{Lab, SERVER};
use super::platform::Platform;
use super::{bin, output};
use crate::util::sh;

/// What bootd does with DHCP: nothing, proxyDHCP, or also hand out
/// addresses (full-DHCP mode, a rack on a switch of its own).
#[derive(Clone, Copy, PartialEq)]
enum Dhcp {
    Off,
    Proxy,
    Full,
}

/// bootd's configuration files and its rack CA, in the work directory.
pub(super) struct Bootd {
    /// proxyDHCP on (`bootd.yaml`): phases 1 to 3 and 5.
    pub proxy: PathBuf,
    /// Phase 4's bootd: the same, without its proxyDHCP (a rogue wins).
    pub no_proxy: PathBuf,
    /// Phases 6 and 7: the LAN's DHCP server is gone; bootd hands out the
    /// addresses too.
    pub full_dhcp: PathBuf,
    /// The rack CA (`pki/ca.pem`) every node pins.
    pub ca: PathBuf,
}

impl Bootd {
    /// Writes the three configurations into `work` and makes the rack PKI
    /// (`bootd pki init`). The firmware of each of `platforms` fetches its
    /// own stage1 from the plain-HTTP first-stage listener, or with
    /// `https_first_stage` over HTTPS.
    pub fn configure(
        work: &Path,
        rack_yaml: &Path,
        platforms: &[&Platform],
        https_first_stage: bool,
        pi_pubkey: Option<&Path>,
    ) -> Result<Bootd> {
        let write = |name: &str, dhcp: Dhcp| -> Result<PathBuf> {
            let p = work.join(name);
            let text = config(rack_yaml, platforms, https_first_stage, dhcp, pi_pubkey);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let bootd = Bootd {
            proxy: write("bootd.yaml", Dhcp::Proxy)?,
            no_proxy: write("bootd-no-proxy.yaml", Dhcp::Off)?,
            full_dhcp: write("bootd-full-dhcp.yaml", Dhcp::Full)?,
            ca: work.join("pki/ca.pem"),
        };
        sh(Command::new(bin("bootd"))
            .arg("--config")
            .arg(&bootd.proxy)
            .args(["pki", "init"]))?;
        Ok(bootd)
    }

    /// The HTTPS experiment: the rack CA as the EFI signature list OVMF
    /// reads as its HTTPS trust store; returns the QEMU arguments that
    /// hand it to the firmware.
    pub fn ca_for_firmware(&self, work: &Path) -> Result<Vec<String>> {
        let der = work.join("pki/ca.der");
        sh(Command::new(bin("bootd"))
            .arg("--config")
            .arg(&self.proxy)
            .args(["pki", "ca-hash", "--der-out"])
            .arg(&der))?;
        let esl = work.join("pki/ca.esl");
        std::fs::write(&esl, signature_list(&std::fs::read(&der)?))?;
        Ok(vec![
            "-fw_cfg".to_owned(),
            format!("name=etc/edk2/https/cacerts,file={}", esl.display()),
        ])
    }

    /// Starts bootd with `config` (process `bootd`, its log `log` in the
    /// work directory) and waits until it serves the repository; returns
    /// the timestamp version.
    pub fn start(&self, lab: &mut Lab, config: &Path, log: &str) -> Result<u64> {
        let mut cmd = lab.cmd(bin("bootd"));
        cmd.arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "info");
        let log = config.with_file_name(log);
        lab.spawn("bootd", cmd, &log)?;
        for _ in 0..100 {
            lab.check_alive()?;
            if let Ok(v) = self.timestamp_version(lab) {
                return Ok(v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("bootd never served the repository (log: {})", log.display())
    }

    /// The version of the timestamp bootd serves now (from `/healthz`:
    /// the metadata itself is for enrolled nodes only).
    fn timestamp_version(&self, lab: &Lab) -> Result<u64> {
        let body = output(
            lab.cmd("curl")
                .args([
                    "-sSf",
                    "--connect-timeout",
                    "3",
                    "--max-time",
                    "5",
                    "--cacert",
                ])
                .arg(&self.ca)
                .arg(format!("https://{SERVER}:8443/healthz")),
        )?;
        body.trim()
            .strip_prefix("ok timestamp=")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/healthz said {body:?}"))
    }

    /// Waits until bootd serves a timestamp newer than `old`.
    pub fn wait_served(&self, lab: &Lab, old: u64) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(v) = self.timestamp_version(lab) {
                if v > old {
                    return Ok(v);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!("bootd did not take the new release into service within 60 s")
    }
}

/// The URL the firmware of `platform` boots (bootd's proxyDHCP offers it).
fn first_stage_url(platform: &Platform, https: bool) -> String {
    let file = platform.first_stage_file();
    if https {
        format!("https://{SERVER}:8443/net_install/{file}")
    } else {
        format!("http://{SERVER}:8080/net_install/{file}")
    }
}

/// bootd's configuration: the rack, the repository it verifies and serves,
/// each of `platforms`' first stage on its plain-HTTP listener (and the
/// URL its firmware gets), the Pis' `boot.img` + `boot.sig` (checked
/// against `pi_pubkey`; the Pi 5's over HTTPS on 443, the only port its
/// EEPROM's HTTPS is documented on), and `dhcp`.
fn config(
    rack_yaml: &Path,
    platforms: &[&Platform],
    https: bool,
    dhcp: Dhcp,
    pi_pubkey: Option<&Path>,
) -> String {
    let files: String = platforms
        .iter()
        .map(|p| format!("      {}: {}\n", p.first_stage_file(), p.stage1_target()))
        .collect();
    let urls: String = platforms
        .iter()
        .map(|p| format!("    {}: {}\n", p.arch, first_stage_url(p, https)))
        .collect();
    let (pi_https, pis) = match pi_pubkey {
        Some(k) => (
            format!(", \"{SERVER}:443\""),
            super::pi::first_stage_entries(k),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "rack_file: {rack}\nstate_dir: state\nlisten:\n  https: [\"{SERVER}:8443\"{pi_https}]\n  \
         plain_http: [\"{SERVER}:8080\"]\ntls:\n  ca_cert: pki/ca.pem\n  ca_key: pki/ca.key\n  \
         server_cert: pki/server.pem\n  server_key: pki/server.key\n  server_names: [\"{SERVER}\"]\n\
         repository:\n  trusted_root: root.json\n  local: repo\n  poll_interval_ms: 500\n\
         first_stage:\n  - path: net_install\n    files:\n{files}    transport: http\n{pis}{proxy}",
        rack = rack_yaml.display(),
        proxy = match dhcp {
            Dhcp::Off => String::new(),
            Dhcp::Proxy | Dhcp::Full => format!(
                "proxy_dhcp:\n  interface: br0\n  server_ip: {SERVER}\n  boot_urls:\n{urls}{}",
                if dhcp == Dhcp::Full {
                    "  full_dhcp:\n    first: 10.197.0.150\n    last: 10.197.0.159\n    \
                     prefix_len: 24\n    router: 10.197.0.1\n    lease_s: 600\n"
                } else {
                    ""
                },
            ),
        }
    )
}

/// The file bootd serves for `target` (the newest copy under its state).
pub(super) fn served_copy(state: &Path, target: &str) -> Result<PathBuf> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut stack = vec![state.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(&format!(".{target}")))
            {
                found.push((e.metadata()?.modified()?, p));
            }
        }
    }
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .with_context(|| format!("bootd serves no copy of {target}"))
}

/// An EFI signature list (UEFI 2.x, 32.4.1) holding one X.509 certificate:
/// what OVMF reads from `etc/edk2/https/cacerts` as its HTTPS trust store.
fn signature_list(der: &[u8]) -> Vec<u8> {
    // EFI_CERT_X509_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072, mixed-endian.
    const X509: [u8; 16] = [
        0xa1, 0x59, 0xc0, 0xa5, 0xe4, 0x94, 0xa7, 0x4a, 0x87, 0xb5, 0xab, 0x15, 0x5c, 0x2b, 0xf0,
        0x72,
    ];
    let sig_size = 16 + der.len() as u32; // owner GUID + certificate
    let mut v = Vec::with_capacity(28 + sig_size as usize);
    v.extend_from_slice(&X509);
    v.extend_from_slice(&(28 + sig_size).to_le_bytes()); // SignatureListSize
    v.extend_from_slice(&0u32.to_le_bytes()); // SignatureHeaderSize
    v.extend_from_slice(&sig_size.to_le_bytes()); // SignatureSize
    v.extend_from_slice(b"racklet-rack-ca\0"); // SignatureOwner (any GUID)
    v.extend_from_slice(der);
    v
}

/// The rack's operator, as a thread: bootd requires client certificates,
/// so every node asks to join (stage1's enrollment) and prints its key's
/// fingerprint on its console. The operator approves a pending request
/// only when that fingerprint is on the console of the node the request
/// names — what a person does by comparing the two.
pub(super) struct Operator {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    /// Starts watching the requests of the bootd configured by `config`
    /// (its state directory is shared by all three configurations); node
    /// `N`'s console is `work/N.console.log`.
    pub fn start(config: &Path, work: &Path) -> Operator {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (config, work, flag) = (config.to_owned(), work.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = approve_seen(&config, &work) {
                    eprintln!("e2e: operator: {e:#}");
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Operator {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `bootd --config CONFIG nodes ARGS…` (the operator's view of the node
/// store: no server needed), its stdout.
pub(super) fn nodes(config: &Path, args: &[&str]) -> Result<String> {
    output(
        Command::new(bin("bootd"))
            .arg("--config")
            .arg(config)
            .arg("nodes")
            .args(args),
    )
}

/// One look at the pending requests (`bootd nodes pending`): approves each
/// whose key fingerprint its node's console shows.
fn approve_seen(config: &Path, work: &Path) -> Result<()> {
    let bootd = |args: &[&str]| nodes(config, args);
    for line in bootd(&["pending"])?.lines() {
        let mut id = None;
        let (mut node, mut fp) = (None, None);
        for (i, word) in line.split_whitespace().enumerate() {
            match (i, word.split_once('=')) {
                (0, None) => id = Some(word),
                (_, Some(("node", v))) => node = Some(v),
                (_, Some(("key-sha256", v))) => fp = Some(v),
                _ => {}
            }
        }
        let (Some(id), Some(node), Some(fp)) = (id, node, fp) else {
            continue;
        };
        let console =
            std::fs::read_to_string(work.join(format!("{node}.console.log"))).unwrap_or_default();
        if console.contains(&format!("key_sha256={fp}")) {
            bootd(&["approve", id])?;
            eprintln!("e2e: operator approves {node}: the key {fp} is the one its console shows");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::platform::{AARCH64, X86_64};

    /// The first stage's names come from the platform, as they were
    /// written out for x86_64 before there was one.
    #[test]
    fn x86_64_first_stage_names() {
        let url = "http://10.197.0.1:8080/net_install/stage1-x86_64.efi";
        let rack = Path::new("/rack.yaml");
        let proxy = config(rack, &[&X86_64], false, Dhcp::Proxy, None);
        assert!(proxy.contains("\n      stage1-x86_64.efi: stage1-x86_64-1.0.0.uki\n"));
        assert!(proxy.contains(&format!("\n    x86_64: {url}\n")));
        assert!(!config(rack, &[&X86_64], false, Dhcp::Off, None).contains("proxy_dhcp"));
        assert!(config(rack, &[&X86_64], false, Dhcp::Full, None).contains("  full_dhcp:\n"));
        assert_eq!(X86_64.first_stage_file(), "stage1-x86_64.efi");
    }

    /// A mixed rack: one bootd serves each architecture its own stage1,
    /// and its proxyDHCP offers each its own URL (bootd picks by the
    /// client's option 93: 0x10 x86_64, 0x13 arm64).
    #[test]
    fn a_mixed_rack_serves_each_arch_its_own_first_stage() {
        let rack = Path::new("/rack.yaml");
        let c = config(rack, &[&X86_64, &AARCH64], false, Dhcp::Proxy, None);
        assert!(c.contains(
            "    files:\n      stage1-x86_64.efi: stage1-x86_64-1.0.0.uki\n      \
             stage1-aarch64.efi: stage1-aarch64-1.0.0.uki\n    transport: http\n"
        ));
        assert!(c.contains(
            "  boot_urls:\n    x86_64: http://10.197.0.1:8080/net_install/stage1-x86_64.efi\n    \
             aarch64: http://10.197.0.1:8080/net_install/stage1-aarch64.efi\n"
        ));
    }
}
