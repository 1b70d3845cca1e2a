//! The release side of the run: its own signing keys and TUF repository
//! (never keys-example), the kernel modules the images load, and building
//! the two images per architecture — the stage1 UKI and the OS
//! (`confirm-os`) — and signing them into the repository (and for Secure
//! Boot with the platform's `db`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use racklet_hardware::Arch;

use super::bin;
use super::lab::SERVER;
use super::platform::Platform;
use crate::build_image::{self, BuildImageArgs};
use crate::secureboot::SigningKey;
use crate::util::{root, sh};

/// Debian's kernel for `platform` and its modules folder, whose
/// [`Platform::modules`] are checked to load in order.
pub(super) fn kernel(platform: &Platform) -> Result<(PathBuf, PathBuf)> {
    let kernel = platform.kernel()?;
    let moddir = std::fs::read_dir(platform.kernel_dir().join("root/lib/modules"))?
        .flatten()
        .map(|e| e.path())
        .next()
        .context("the kernel package has no lib/modules")?;
    check_module_order(&moddir, platform.modules)?;
    Ok((kernel, moddir))
}

/// Checks `modules` against each module's `depends=` (its .modinfo).
fn check_module_order(moddir: &Path, modules: &[&str]) -> Result<()> {
    let mut loaded: Vec<String> = Vec::new();
    for m in modules {
        let p = moddir.join("kernel").join(m);
        let bytes = std::fs::read(&p).with_context(|| p.display().to_string())?;
        let deps = bytes
            .split(|b| *b == 0)
            .find_map(|f| f.strip_prefix(b"depends="))
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default();
        for d in deps.split(',').filter(|d| !d.is_empty()) {
            if !loaded.iter().any(|l| l == d) {
                bail!("{m} depends on {d}, which is not loaded before it");
            }
        }
        let name = Path::new(m)
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        loaded.push(name);
    }
    Ok(())
}

/// The run's TUF repository, made with keys of its own.
pub(super) struct Repository {
    pub repo: PathBuf,
    /// Its first root: what every stage1 image and bootd pin.
    pub root_json: PathBuf,
    /// The targets, snapshot and timestamp keys (what signing a release takes).
    pub keys: Vec<String>,
}

impl Repository {
    /// Generates the four role keys into `work/keys`, makes `work/repo` and
    /// copies its root to `work/root.json`.
    pub fn init(work: &Path) -> Result<Repository> {
        std::fs::create_dir_all(work.join("keys"))?;
        let imgsign = bin("imgsign");
        let key = |r: &str| work.join("keys").join(format!("{r}.pem"));
        for r in ["root", "targets", "snapshot", "timestamp"] {
            sh(Command::new(&imgsign)
                .arg("key")
                .arg("generate")
                .arg(key(r)))?;
        }
        let repo = work.join("repo");
        sh(Command::new(&imgsign)
            .args(["init", "--repo"])
            .arg(&repo)
            .arg("--root-key")
            .arg(key("root"))
            .arg("--targets-key")
            .arg(key("targets"))
            .arg("--snapshot-key")
            .arg(key("snapshot"))
            .arg("--timestamp-key")
            .arg(key("timestamp")))?;
        let root_json = work.join("root.json");
        std::fs::copy(repo.join("metadata/1.root.json"), &root_json)?;
        let keys = ["targets", "snapshot", "timestamp"]
            .iter()
            .map(|r| key(r).display().to_string())
            .collect();
        Ok(Repository {
            repo,
            root_json,
            keys,
        })
    }
}

/// The initramfs arguments both images share: who the node is (by MAC from
/// the rack file), its network, its BMC link, its disk, bootd, trust.
fn common_args(module_paths: &str) -> String {
    [
        "--rack",
        "/etc/stage1/rack.yaml",
        "--dhcp",
        "eth0",
        "--modules",
        module_paths,
        "--disk",
        "/dev/vda",
        "--bmc",
        "/dev/virtio-ports/racklet.bmc",
        "--bootd",
        &format!("https://{SERVER}:8443/"),
        "--ca",
        "/etc/stage1/ca.pem",
        "--root",
        "/etc/stage1/root.json",
        // /run is RAM: stage1 keeps the metadata versions seen and the
        // node's identity on the disk too (its default).
        "--state",
        "/run/stage1",
    ]
    .join("\n")
}

/// What it takes to build an image and sign it into the repository, for
/// every architecture the rack has: the kernel, the files both images
/// carry, each image's arguments for stage1.
pub(super) struct Publisher {
    keys: Vec<String>,
    repo: PathBuf,
    /// Where the images are built (`target/e2e/images`).
    out: PathBuf,
    arches: Vec<ArchImages>,
    /// The platform's db key, when a node runs Secure Boot.
    secure_boot: Option<SigningKey>,
    /// The rack file and the Pi secure-boot key, when the rack has Pis:
    /// the arm64 stage1 release then also carries their `boot.img` +
    /// `boot.sig`.
    pi: Option<(PathBuf, String)>,
}

/// One architecture's kernel and image inputs.
struct ArchImages {
    platform: &'static Platform,
    kernel: PathBuf,
    add_files: Vec<String>,
    stage1_args: PathBuf,
    os_args: PathBuf,
}

impl Publisher {
    /// Writes each of `platforms`' two images' stage1 arguments into
    /// `work`; every image carries its kernel's modules, the rack file, the
    /// rack CA `ca` and the pinned root.
    pub fn new(
        work: &Path,
        repo: &Repository,
        platforms: &[&'static Platform],
        rack_yaml: &Path,
        ca: &Path,
        secure_boot: Option<SigningKey>,
        pi_key: Option<PathBuf>,
    ) -> Result<Publisher> {
        let mut arches = Vec::new();
        for &platform in platforms {
            let (kernel, moddir) = kernel(platform)?;
            let mut add_files = Vec::new();
            let mut module_paths = Vec::new();
            for (i, m) in platform.modules.iter().enumerate() {
                let file = Path::new(m).file_name().unwrap().to_string_lossy();
                let dst = format!("/lib/modules/e2e/{i:02}-{file}");
                add_files.push(format!("{}:{dst}", moddir.join("kernel").join(m).display()));
                module_paths.push(dst);
            }
            let module_paths = module_paths.join(",");
            add_files.push(format!("{}:/etc/stage1/rack.yaml", rack_yaml.display()));
            add_files.push(format!("{}:/etc/stage1/ca.pem", ca.display()));
            add_files.push(format!(
                "{}:/etc/stage1/root.json",
                repo.root_json.display()
            ));
            let stage1_args = work.join(format!("stage1-{}.args", platform.arch));
            std::fs::write(&stage1_args, common_args(&module_paths) + "\n")?;
            let os_args = work.join(format!("os-{}.args", platform.arch));
            std::fs::write(
                &os_args,
                format!("confirm\n--power-off\n{}\n", common_args(&module_paths)),
            )?;
            arches.push(ArchImages {
                platform,
                kernel,
                add_files,
                stage1_args,
                os_args,
            });
        }
        Ok(Publisher {
            keys: repo.keys.clone(),
            repo: repo.repo.clone(),
            out: work.join("images"),
            arches,
            secure_boot,
            pi: pi_key.map(|k| (rack_yaml.to_owned(), k.display().to_string())),
        })
    }

    /// Builds each architecture's stage1 UKI (`images/recipes/stage1*.yaml`,
    /// for every node of that architecture) and signs it into the
    /// repository, with the Pis' pairs beside the arm64 one; returns each
    /// UKI's path.
    pub fn publish_stage1(&self) -> Result<Vec<(Arch, PathBuf)>> {
        let mut ukis = Vec::new();
        for a in &self.arches {
            let mut s1_files = a.add_files.clone();
            s1_files.push(format!("{}:/etc/stage1/args", a.stage1_args.display()));
            let pi = self.pi.clone().filter(|_| a.platform.arch == Arch::Aarch64);
            build_image::run(&BuildImageArgs {
                recipe: root().join("images/recipes").join(a.platform.stage1_recipe),
                out: self.out.clone(),
                kernel: Some(a.kernel.clone()),
                add_files: s1_files,
                stub: "auto".into(),
                version: None,
                security_version: None,
                sign_into: Some(self.repo.clone()),
                keys: self.keys.clone(),
                channel: Some("stable".into()),
                nodes: Vec::new(),
                groups: Vec::new(),
                all_nodes: true,
                secure_boot_key: self.secure_boot.as_ref().map(|k| k.key.clone()),
                secure_boot_cert: self.secure_boot.as_ref().map(|k| k.cert.clone()),
                rack: pi.as_ref().map(|(r, _)| r.clone()),
                pi_key: pi.map(|(_, k)| k),
                pi_cmdline: None,
                initramfs_out: None,
            })?;
            ukis.push((a.platform.arch, self.out.join(a.platform.stage1_target())));
        }
        Ok(ukis)
    }

    /// Builds the OS image at `version` for each architecture and signs
    /// it into the repository (stage1 picks its own architecture's).
    pub fn publish_os(&self, version: &str, security_version: u32) -> Result<()> {
        for a in &self.arches {
            let mut add_files = a.add_files.clone();
            add_files.push(format!("{}:/etc/stage1/args", a.os_args.display()));
            let args = BuildImageArgs {
                recipe: root().join("images/recipes").join(a.platform.os_recipe),
                out: self.out.clone(),
                kernel: Some(a.kernel.clone()),
                add_files,
                stub: "auto".into(),
                version: Some(version.parse()?),
                security_version: Some(security_version),
                sign_into: Some(self.repo.clone()),
                keys: self.keys.clone(),
                channel: Some("stable".into()),
                nodes: Vec::new(),
                groups: vec!["workers".into()],
                all_nodes: false,
                secure_boot_key: self.secure_boot.as_ref().map(|k| k.key.clone()),
                secure_boot_cert: self.secure_boot.as_ref().map(|k| k.cert.clone()),
                rack: None,
                pi_key: None,
                pi_cmdline: None,
                initramfs_out: None,
            };
            build_image::run(&args)?;
        }
        Ok(())
    }
}
