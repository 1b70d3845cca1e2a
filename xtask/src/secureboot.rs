//! UEFI Secure Boot for images and test firmware: signing PE files
//! (`sbsign`, Debian `sbsigntool`), making a platform's keys (`openssl`) and
//! enrolling them into an OVMF or AAVMF variable store (`virt-fw-vars`,
//! PyPI `virt-firmware`).
//!
//! Two things get signed with the platform's `db` key, for two checkers:
//! - the finished UKI, which the firmware checks before running it;
//! - the kernel inside it, which a kernel running under Secure Boot's
//!   lockdown checks before `kexec_file_load` accepts it (against the
//!   platform keyring, which holds `db`): stage1 hands off to the OS's
//!   kernel that way.
//!
//! There is no maintained Rust Authenticode signer; `sbsign` is what
//! distributions sign their kernels and boot loaders with.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{have, sh};

/// A `db` signing key and its certificate (PEM), as `sbsign` takes them.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// How many Authenticode signatures the PE file at `p` carries.
fn signatures(p: &Path) -> Result<usize> {
    let o = Command::new("sbverify")
        .arg("--list")
        .arg(p)
        .output()
        .context("running sbverify (Debian sbsigntool)")?;
    let text = String::from_utf8_lossy(&o.stdout);
    Ok(text.lines().filter(|l| l.starts_with("signature ")).count())
}

/// Removes every signature `p` carries (`sbattach --remove` takes one).
fn strip(p: &Path) -> Result<()> {
    for _ in 0..16 {
        if signatures(p)? == 0 {
            return Ok(());
        }
        sh(Command::new("sbattach").arg("--remove").arg(p))?;
    }
    bail!("{} still carries signatures after 16 removals", p.display())
}

/// Signs the PE file `input` into `output` with `key`, replacing any
/// signature it had: the kernel verifies a kexec'd image against its first
/// signature only, so a distribution's own must not come first.
pub fn sign(input: &Path, output: &Path, key: &SigningKey) -> Result<()> {
    if !have("sbsign") {
        bail!("sbsign is missing (Debian sbsigntool): `cargo xtask setup` installs it");
    }
    let tmp = output.with_extension("sb-tmp");
    std::fs::copy(input, &tmp)
        .with_context(|| format!("copying {} to sign it", input.display()))?;
    let signed = output.with_extension("sb-signed");
    let r = strip(&tmp).and_then(|()| {
        sh(Command::new("sbsign")
            .arg("--key")
            .arg(&key.key)
            .arg("--cert")
            .arg(&key.cert)
            .arg("--output")
            .arg(&signed)
            .arg(&tmp))
    });
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&signed);
        return Err(e);
    }
    if signatures(&signed)? != 1 {
        let _ = std::fs::remove_file(&signed);
        bail!("{}: signing left more than one signature", input.display());
    }
    std::fs::File::open(&signed)?.sync_all()?;
    std::fs::rename(&signed, output)?;
    Ok(())
}

/// A platform's Secure Boot keys: PK (owns the platform), KEK (may change
/// `db`), `db` (signs what may run). RSA-2048, what every firmware takes.
#[derive(Debug, Clone)]
pub struct PlatformKeys {
    pub pk: SigningKey,
    pub kek: SigningKey,
    pub db: SigningKey,
}

/// Owner GUID recorded with each enrolled certificate (any GUID will do).
const OWNER: &str = "5a2ac4b8-6f6e-4d1e-9a07-7261636b6c74";

/// Makes a self-signed RSA-2048 certificate and key named `name` in `dir`
/// (kept if both exist).
fn self_signed(dir: &Path, name: &str, cn: &str) -> Result<SigningKey> {
    let k = SigningKey {
        key: dir.join(format!("{name}.key")),
        cert: dir.join(format!("{name}.pem")),
    };
    if k.key.exists() && k.cert.exists() {
        return Ok(k);
    }
    sh(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256"])
        .args(["-days", "3650", "-subj", &format!("/CN={cn}")])
        .arg("-keyout")
        .arg(&k.key)
        .arg("-out")
        .arg(&k.cert)
        .stderr(std::process::Stdio::null()))?;
    Ok(k)
}

/// The platform keys in `dir`, made on first use.
pub fn platform_keys(dir: &Path, owner: &str) -> Result<PlatformKeys> {
    std::fs::create_dir_all(dir)?;
    Ok(PlatformKeys {
        pk: self_signed(dir, "PK", &format!("{owner} platform key"))?,
        kek: self_signed(dir, "KEK", &format!("{owner} key exchange key"))?,
        db: self_signed(dir, "db", &format!("{owner} boot signing key"))?,
    })
}

/// Writes `out`: the firmware's variable store `template` without the
/// variables `delete` (a vendor's keys, when the only formatted template
/// carries them: Debian's AAVMF ships an all-zero `AAVMF_VARS.fd`, which
/// the firmware formats at its first boot, and `AAVMF_VARS.ms.fd`, with
/// Microsoft's), with `keys` enrolled (PK, KEK, db: no vendor's
/// certificates) and Secure Boot on.
pub fn enroll(template: &Path, out: &Path, keys: &PlatformKeys, delete: &[&str]) -> Result<()> {
    if !have("virt-fw-vars") {
        bail!("virt-fw-vars is missing (PyPI virt-firmware): `cargo xtask setup` installs it");
    }
    let mut cmd = Command::new("virt-fw-vars");
    cmd.arg("--input").arg(template).arg("--output").arg(out);
    for v in delete {
        cmd.args(["--delete", v]);
    }
    sh(cmd
        .arg("--set-pk")
        .arg(OWNER)
        .arg(&keys.pk.cert)
        .arg("--add-kek")
        .arg(OWNER)
        .arg(&keys.kek.cert)
        .arg("--add-db")
        .arg(OWNER)
        .arg(&keys.db.cert)
        .arg("--secure-boot")
        .stdout(std::process::Stdio::null()))
}

/// Copies the PE file `input` to `output` without its signature (if any).
pub fn unsign(input: &Path, output: &Path) -> Result<()> {
    std::fs::copy(input, output)
        .with_context(|| format!("copying {} to {}", input.display(), output.display()))?;
    strip(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real PE file to sign: systemd's EFI stub (Debian systemd-boot-efi).
    const PE: &str = racklet_images::SYSTEMD_STUB_X64;

    fn tools() -> bool {
        let ok = ["sbsign", "sbverify", "sbattach", "openssl"]
            .iter()
            .all(|t| have(t))
            && Path::new(PE).exists();
        if !ok {
            assert!(
                std::env::var("RACKLET_REQUIRE_ALL").as_deref() != Ok("1"),
                "sbsigntool, openssl or systemd-boot-efi is missing (RACKLET_REQUIRE_ALL=1)"
            );
            println!("skipped: needs sbsigntool, openssl and systemd-boot-efi");
        }
        ok
    }

    fn verifies(p: &Path, k: &SigningKey) -> bool {
        Command::new("sbverify")
            .arg("--cert")
            .arg(&k.cert)
            .arg(p)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[test]
    fn signing_replaces_the_signature_it_finds() {
        if !tools() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rack = platform_keys(&dir.path().join("rack"), "rack").unwrap();
        let other = platform_keys(&dir.path().join("other"), "other").unwrap();
        let stub = Path::new(PE);
        assert!(!verifies(stub, &rack.db), "the stub arrives unsigned");

        let ours = dir.path().join("ours.efi");
        sign(stub, &ours, &rack.db).unwrap();
        assert!(verifies(&ours, &rack.db));
        assert!(!verifies(&ours, &other.db), "a key that did not sign it");
        assert!(!verifies(&ours, &rack.kek), "nor the platform's other keys");

        // Re-signing (a distribution's kernel arrives signed) leaves exactly
        // one signature, the new one: the kernel's kexec check reads only
        // the first.
        let theirs = dir.path().join("theirs.efi");
        sign(&ours, &theirs, &other.db).unwrap();
        assert_eq!(signatures(&theirs).unwrap(), 1);
        assert!(verifies(&theirs, &other.db));
        assert!(!verifies(&theirs, &rack.db));

        // A file with two signatures (sbsign appends to a signed file, as
        // a distribution might): both go, ours is the only one.
        let twice = dir.path().join("twice.efi");
        sh(Command::new("sbsign")
            .arg("--key")
            .arg(&other.db.key)
            .arg("--cert")
            .arg(&other.db.cert)
            .arg("--output")
            .arg(&twice)
            .arg(&theirs))
        .unwrap();
        assert_eq!(signatures(&twice).unwrap(), 2);
        sign(&twice, &twice, &rack.db).unwrap();
        assert_eq!(signatures(&twice).unwrap(), 1);
        assert!(verifies(&twice, &rack.db));
        std::fs::remove_file(&twice).unwrap();

        // In place, as build-image signs the finished UKI.
        sign(&theirs, &theirs, &rack.db).unwrap();
        assert_eq!(signatures(&theirs).unwrap(), 1);
        assert!(verifies(&theirs, &rack.db));

        let bare = dir.path().join("bare.efi");
        unsign(&theirs, &bare).unwrap();
        assert_eq!(signatures(&bare).unwrap(), 0);
        assert!(!verifies(&bare, &rack.db));
        // No temporary files left beside the outputs.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["bare.efi", "other", "ours.efi", "rack", "theirs.efi"]
        );
    }

    #[test]
    fn signing_a_missing_file_names_it() {
        if !tools() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rack = platform_keys(dir.path(), "rack").unwrap();
        let missing = dir.path().join("no-such.efi");
        let e = sign(&missing, &dir.path().join("out.efi"), &rack.db).unwrap_err();
        assert!(format!("{e:#}").contains("no-such.efi"), "{e:#}");
        assert!(!dir.path().join("out.efi").exists());
    }
}
