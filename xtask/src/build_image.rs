//! `cargo xtask build-image RECIPE`: a recipe from `images/` → a
//! reproducible Unified Kernel Image, optionally signed into a repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use racklet_hardware::Arch;
use racklet_images::{Recipe, Source};

use crate::secureboot::{self, SigningKey};
use crate::util::{cargo, root, sh};

#[derive(Debug, Clone, clap::Args)]
pub struct BuildImageArgs {
    /// The recipe (e.g. images/recipes/demo-os.yaml).
    pub recipe: PathBuf,
    /// Output directory (the image is `<name>-<arch>-<version>.uki` in it).
    #[arg(long, default_value = "target/images")]
    pub out: PathBuf,
    /// Use this kernel instead of the recipe's (e.g. a vmlinuz unpacked
    /// from a Debian linux-image package).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Add a file to the initramfs: SRC:DST[:MODE] (e.g. the pinned root).
    #[arg(long = "add-file", value_name = "SRC:DST[:MODE]")]
    pub add_files: Vec<String>,
    /// systemd EFI stub: `auto` (Debian's systemd-boot-efi; an error if it
    /// is not installed), `none` (a plain PE container: stage1 starts it,
    /// no firmware boots it), `if-installed` (Debian's if installed, else
    /// none: for images only stage1 starts, as in the demo) or a path.
    #[arg(long, default_value = "auto")]
    pub stub: String,
    /// Override the recipe's version (e.g. to build v2 of the same image).
    #[arg(long)]
    pub version: Option<semver::Version>,
    /// Override the recipe's security version.
    #[arg(long)]
    pub security_version: Option<u32>,
    /// Sign the image into this repository after building it.
    #[arg(long, requires = "channel")]
    pub sign_into: Option<PathBuf>,
    /// Keys for signing (targets, snapshot, timestamp).
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Release channel when signing.
    #[arg(long)]
    pub channel: Option<String>,
    /// Nodes that may run it (when signing).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Groups that may run it (when signing).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Every node may run it (when signing).
    #[arg(long)]
    pub all_nodes: bool,
    /// UEFI Secure Boot: sign the kernel (so a kernel under lockdown may
    /// kexec it) and the finished UKI (so the firmware runs it) with this
    /// `db` key (PEM, RSA), before any TUF signing. Needs `sbsign`.
    #[arg(long, requires = "secure_boot_cert", value_name = "KEY")]
    pub secure_boot_key: Option<PathBuf>,
    /// The certificate of `--secure-boot-key` (PEM), as enrolled in `db`.
    #[arg(long, requires = "secure_boot_key", value_name = "CERT")]
    pub secure_boot_cert: Option<PathBuf>,
    /// When signing an arm64 stage1: the rack file. Its assigned nodes with
    /// `firmware: pi4-eeprom` / `pi5-eeprom` get that model's Raspberry Pi
    /// `boot.img` + `boot.sig` in the same release (the kernel and this
    /// initramfs, with the Pi files of `cargo xtask fetch-pi-files`).
    #[arg(long, requires = "pi_key", value_name = "RACK_YAML")]
    pub rack: Option<PathBuf>,
    /// The Raspberry Pi secure-boot key (`imgsign pi-key generate`).
    #[arg(long, requires = "rack", value_name = "KEY")]
    pub pi_key: Option<String>,
    /// The Pi's kernel command line (`cmdline.txt`); default: the recipe's.
    #[arg(long, value_name = "TEXT")]
    pub pi_cmdline: Option<String>,
    /// Also write the image's initramfs (newc cpio) here, for a boot path
    /// without a UKI (a Raspberry Pi's `boot.img` holds it beside the kernel).
    #[arg(long, value_name = "FILE")]
    pub initramfs_out: Option<PathBuf>,
}

impl BuildImageArgs {
    /// A recipe built into `out` as it is: no overrides, no signing.
    pub fn plain(recipe: PathBuf, out: PathBuf) -> BuildImageArgs {
        BuildImageArgs {
            recipe,
            out,
            kernel: None,
            add_files: Vec::new(),
            // Callers of `plain` (the demo, the test image) run their
            // images under stage1 only: no firmware, so no stub needed.
            stub: "if-installed".into(),
            version: None,
            security_version: None,
            sign_into: None,
            keys: Vec::new(),
            channel: None,
            nodes: Vec::new(),
            groups: Vec::new(),
            all_nodes: false,
            secure_boot_key: None,
            secure_boot_cert: None,
            rack: None,
            pi_key: None,
            pi_cmdline: None,
            initramfs_out: None,
        }
    }

    /// The Secure Boot signing key, when both halves were given.
    fn secure_boot(&self) -> Option<SigningKey> {
        Some(SigningKey {
            key: self.secure_boot_key.clone()?,
            cert: self.secure_boot_cert.clone()?,
        })
    }
}

/// The Rust target triple for building binaries that go into an image of
/// `arch`.
pub fn triple(arch: Arch) -> Result<&'static str> {
    match arch {
        Arch::X86_64 => Ok("x86_64-unknown-linux-gnu"),
        Arch::Aarch64 => Ok("aarch64-unknown-linux-gnu"),
        Arch::Thumbv7em => bail!("initramfs binaries are not built for thumbv7em"),
    }
}

/// Builds workspace binaries statically for `arch` (an initramfs has no
/// dynamic loader) and returns their paths.
pub fn build_binaries(names: &[&str], arch: Arch) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let triple = triple(arch)?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked", "--target", triple]);
    // An initramfs carries no debugger: symbols only cost every node
    // download time (stage1 goes from ~15 MB to a third of it).
    cmd.args(["--config", "profile.release.strip=\"symbols\""]);
    for n in names {
        cmd.args(["--bin", n]);
    }
    // With --target, RUSTFLAGS reach only the target's crates, not build
    // scripts: the host build cache stays valid.
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    if arch == Arch::Aarch64 {
        cmd.env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc",
        )
        .env("CC_aarch64_unknown_linux_gnu", "aarch64-linux-gnu-gcc");
    }
    sh(&mut cmd)?;
    for n in names {
        let p = root().join("target").join(triple).join("release").join(n);
        if !p.exists() {
            bail!("cargo did not produce {}", p.display());
        }
        out.insert((*n).to_owned(), p);
    }
    Ok(out)
}

/// Reads the stub choice.
fn stub(choice: &str, arch: Arch) -> Result<Option<Vec<u8>>> {
    stub_under(choice, arch, Path::new("/"))
}

/// [`stub`] with Debian's stub paths taken below `root` (tests).
fn stub_under(choice: &str, arch: Arch, root: &Path) -> Result<Option<Vec<u8>>> {
    let path = match choice {
        "none" => return Ok(None),
        "auto" | "if-installed" => {
            let (p, package) = match arch {
                Arch::X86_64 => (racklet_images::SYSTEMD_STUB_X64, "systemd-boot-efi"),
                Arch::Aarch64 => (racklet_images::SYSTEMD_STUB_AA64, "systemd-boot-efi:arm64"),
                Arch::Thumbv7em => return Ok(None),
            };
            let p = root.join(p.trim_start_matches('/'));
            if !p.exists() {
                if choice == "auto" {
                    bail!(
                        "--stub auto: {} is not installed (Debian package {package}; `cargo \
                         xtask setup` installs it): without it the image is a plain PE \
                         container that no firmware boots. Install it, or pass --stub none \
                         for an image only stage1 starts",
                        p.display()
                    );
                }
                eprintln!(
                    "note: {} is not installed ({package}): building a plain PE container \
                     that stage1 starts but firmware cannot boot",
                    p.display()
                );
                return Ok(None);
            }
            p
        }
        p => PathBuf::from(p),
    };
    Ok(Some(std::fs::read(&path).with_context(|| {
        format!("reading the EFI stub {}", path.display())
    })?))
}

/// Builds the image; returns its path.
pub fn run(args: &BuildImageArgs) -> Result<PathBuf> {
    let recipe_path = if args.recipe.is_absolute() {
        args.recipe.clone()
    } else {
        std::env::current_dir()?.join(&args.recipe)
    };
    let mut recipe = Recipe::load(&recipe_path)?;
    if let Some(k) = &args.kernel {
        recipe.kernel = Source::Path(k.clone());
    }
    if let Some(v) = &args.version {
        recipe.version = v.clone();
    }
    if let Some(sv) = args.security_version {
        recipe.security_version = racklet_release::SecurityVersion(sv);
    }
    if let Source::Debian(pkg) = &recipe.kernel {
        let k = crate::kernel::ensure_for(recipe.arch)
            .with_context(|| format!("fetching the kernel of Debian's {pkg}"))?;
        recipe.kernel = Source::Path(k);
    }
    for spec in &args.add_files {
        let mut it = spec.splitn(3, ':');
        let (src, dst) = match (it.next(), it.next()) {
            (Some(s), Some(d)) if !s.is_empty() && d.starts_with('/') => (s, d),
            _ => bail!("--add-file `{spec}`: want SRC:/DST[:MODE]"),
        };
        let mode = match it.next() {
            Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                .with_context(|| format!("--add-file `{spec}`: mode `{m}` is not octal"))?,
            None => 0o644,
        };
        recipe.files.retain(|f| f.dst != dst);
        recipe.files.push(racklet_images::recipe::FileEntry {
            dst: dst.to_owned(),
            src: Source::Path(PathBuf::from(src)),
            mode,
        });
    }
    let built = build_binaries(&recipe.builds(), recipe.arch)?;
    let stub = stub(&args.stub, recipe.arch)?;
    let out_dir = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root().join(&args.out)
    };
    std::fs::create_dir_all(&out_dir)?;
    let sb = args.secure_boot();
    // A Pi boots the kernel as it is: no UEFI, so no Secure Boot signature.
    let plain_kernel = recipe.kernel.clone();
    if let Some(key) = &sb {
        if stub.is_none() {
            bail!("--secure-boot-key: the image has no EFI stub, so no firmware would run it");
        }
        let Source::Path(kernel) = &recipe.kernel else {
            bail!("--secure-boot-key: the recipe's kernel must be a file");
        };
        let signed = out_dir.join(format!(".{}-kernel.signed", recipe.name));
        secureboot::sign(kernel, &signed, key)
            .with_context(|| format!("signing the kernel {}", kernel.display()))?;
        recipe.kernel = Source::Path(signed);
    }
    let mtime = racklet_images::initramfs::source_date_epoch()?;
    let resolve = |s: &Source| -> racklet_images::Result<PathBuf> {
        match s {
            Source::Path(p) => Ok(p.clone()),
            Source::Build(b) => built
                .get(b)
                .cloned()
                .ok_or_else(|| racklet_images::Error::NotBuilt(b.clone())),
            // Only the kernel may be `debian:`, and it was fetched above.
            Source::Debian(p) => Err(racklet_images::Error::NotBuilt(p.clone())),
        }
    };
    let image = racklet_images::build(&recipe, &resolve, stub.as_deref(), mtime);
    if sb.is_some() {
        if let Source::Path(signed) = &recipe.kernel {
            let _ = std::fs::remove_file(signed);
        }
    }
    let image = image?;
    let out = out_dir.join(&image.name);
    racklet_images::write_image(&out, &image.bytes)?;
    // The initramfs apart: where asked, or for the Pi pair being signed
    // (a hidden file beside the image, removed after signing).
    let hidden_initramfs = out_dir.join(format!(".{}.initramfs.cpio", image.name));
    let initramfs = match (&args.initramfs_out, &args.rack, &args.sign_into) {
        (Some(p), _, _) => Some(p.clone()),
        (None, Some(_), Some(_)) => Some(hidden_initramfs.clone()),
        _ => None,
    };
    if let Some(p) = &initramfs {
        racklet_images::write_image(p, &image.initrd)?;
    }
    if let Some(key) = &sb {
        secureboot::sign(&out, &out, key)
            .with_context(|| format!("signing {} for Secure Boot", out.display()))?;
        println!("signed {} for UEFI Secure Boot", out.display());
    }
    println!(
        "built {} ({} bytes, {}{})",
        out.display(),
        image.bytes.len(),
        if image.on_stub {
            "on systemd's EFI stub"
        } else {
            "plain PE container"
        },
        if image.uname.is_empty() {
            String::new()
        } else {
            format!(", kernel {}", image.uname)
        }
    );
    if let Some(repo) = &args.sign_into {
        let channel = args.channel.as_deref().unwrap_or_default();
        let mut cmd = Command::new(root().join("target/debug/imgsign"));
        // Signing goes through the real CLI, as a release manager would.
        let mut c = cargo();
        c.args(["build", "--locked", "-p", "imgsign"]);
        sh(&mut c)?;
        cmd.args(["sign", "release", "--repo"])
            .arg(repo)
            .args(["--kind", recipe.kind.as_str()])
            .args(["--version", &recipe.version.to_string()])
            .args(["--security-version", &recipe.security_version.0.to_string()])
            .args(["--arch", recipe.arch.as_str(), "--channel", channel]);
        for k in &args.keys {
            cmd.args(["--key", k]);
        }
        for n in &args.nodes {
            cmd.args(["--node", n]);
        }
        for g in &args.groups {
            cmd.args(["--group", g]);
        }
        if args.all_nodes {
            cmd.arg("--all-nodes");
        }
        if let (Some(rack), Some(pi_key)) = (&args.rack, &args.pi_key) {
            let Source::Path(kernel) = &plain_kernel else {
                bail!("--rack: the recipe's kernel must be a file");
            };
            let initramfs = initramfs
                .as_ref()
                .context("the initramfs was written above")?;
            let files = crate::pifiles::ensure()?;
            cmd.arg("--rack").arg(rack).args(["--pi-key", pi_key]);
            cmd.arg("--pi-kernel").arg(kernel);
            cmd.arg("--pi-initramfs").arg(initramfs);
            cmd.arg("--pi-device-trees").arg(&files.device_trees);
            cmd.arg("--pi-firmware").arg(&files.firmware);
            cmd.arg("--pi-armstub").arg(&files.armstub);
            cmd.args([
                "--pi-cmdline",
                args.pi_cmdline.as_deref().unwrap_or(&recipe.cmdline),
            ]);
        }
        cmd.arg(&out);
        sh(&mut cmd)?;
        let _ = std::fs::remove_file(&hidden_initramfs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_auto_without_systemd_boot_efi_is_an_error_not_a_plain_pe() {
        let empty = tempfile::tempdir().unwrap();
        for (arch, package) in [
            (Arch::X86_64, "systemd-boot-efi"),
            (Arch::Aarch64, "systemd-boot-efi:arm64"),
        ] {
            let e = stub_under("auto", arch, empty.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(package) && e.contains("--stub none"), "{e}");
            assert_eq!(
                stub_under("if-installed", arch, empty.path()).unwrap(),
                None
            );
            assert_eq!(stub_under("none", arch, empty.path()).unwrap(), None);
        }
        // Installed: `auto` takes it.
        let root = tempfile::tempdir().unwrap();
        let p = root
            .path()
            .join(racklet_images::SYSTEMD_STUB_X64.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"MZ stub").unwrap();
        assert_eq!(
            stub_under("auto", Arch::X86_64, root.path()).unwrap(),
            Some(b"MZ stub".to_vec())
        );
    }
}
