//! `imgsign sign release`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use imgsign::sign::{ImageSpec, Placement, Progress};
use racklet_hardware::{Arch, NodeName};
use racklet_release::{Assignment, Channel, ImageKind, ImageName, ReleaseInfo, SecurityVersion};

use super::{load_keys, refs, ExpiryArgs};

#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// Add images to the repository as a signed release and publish it.
    Release(ReleaseArgs),
}

impl SignCommand {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        match self {
            SignCommand::Release(a) => a.run(now),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The repository directory.
    #[arg(long)]
    repo: PathBuf,
    /// Signing keys: targets key(s) (k-of-n), snapshot and timestamp keys.
    /// Each key signs the roles the root authorizes it for.
    #[arg(long = "key", value_name = "KEY", required_unless_present = "stage_to")]
    keys: Vec<String>,
    /// Do not sign or publish: place the images and write the unsigned
    /// targets role here, for targets key holders to sign elsewhere
    /// (`imgsign targets sign`, `combine`, `publish`).
    #[arg(long, value_name = "FILE", conflicts_with = "keys")]
    stage_to: Option<PathBuf>,
    /// What the images are: os, stage1 or bmc-firmware.
    #[arg(long)]
    kind: ImageKind,
    /// Version (semantic versioning, e.g. 1.2.0).
    #[arg(long)]
    version: semver::Version,
    /// Anti-rollback version: nodes never go below the highest one they booted.
    #[arg(long)]
    security_version: u32,
    /// Architecture: x86_64, aarch64 or thumbv7em.
    #[arg(long)]
    arch: Arch,
    /// Release channel (the example keys may only sign `demo`).
    #[arg(long)]
    channel: Channel,
    /// A node that may run the images (repeat).
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<NodeName>,
    /// A node group that may run the images (repeat).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// Every node may run the images.
    #[arg(long)]
    all_nodes: bool,
    /// A signed downgrade: nodes running a newer version may install these
    /// images (to back out a bad release). Without it stage1 never installs
    /// an image older than the one it runs.
    #[arg(long)]
    downgrade: bool,
    /// Target name for a single image (default: its file name).
    #[arg(long)]
    name: Option<String>,
    /// Hard-link images into the repository instead of copying them (same
    /// filesystem only; the source files must never change afterwards).
    #[arg(long)]
    link: bool,
    #[command(flatten)]
    expiry: ExpiryArgs,
    #[command(flatten)]
    pi: PiArgs,
    /// The image files.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

impl ReleaseArgs {
    pub fn run(self, now: jiff::Timestamp) -> Result<ExitCode> {
        if self.name.is_some() && self.images.len() != 1 {
            bail!("--name needs exactly one image");
        }
        let assign = Assignment {
            nodes: self.nodes.iter().cloned().collect(),
            groups: self.groups.iter().cloned().collect(),
            all: self.all_nodes,
        };
        let info = ReleaseInfo {
            kind: self.kind,
            version: self.version.clone(),
            security_version: SecurityVersion(self.security_version),
            arch: self.arch,
            channel: self.channel.clone(),
            assign,
            downgrade: self.downgrade,
        };
        let mut specs = Vec::new();
        for path in &self.images {
            let name = match &self.name {
                Some(n) => n.clone(),
                None => path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .with_context(|| format!("{} has no file name", path.display()))?,
            };
            specs.push(ImageSpec {
                path: path.clone(),
                name: ImageName::new(&name)?,
                info: info.clone(),
            });
        }
        // The Pi pair is made beside the repository, so --link works too.
        let pi_dir = tempfile::Builder::new()
            .prefix(".imgsign-pi-")
            .tempdir_in(
                self.repo
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new(".")),
            )
            .context("a directory for the Raspberry Pi pair")?;
        specs.extend(self.pi.make(&info, pi_dir.path(), now)?);
        let keys = load_keys(&self.keys)?;
        let placement = if self.link {
            Placement::Link
        } else {
            Placement::Copy
        };
        let started = Instant::now();
        let mut bar = ProgressBar::new();
        if let Some(out) = &self.stage_to {
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite a staged file",
                    out.display()
                );
            }
            let (_, published) = super::open_pinned(&self.repo)?;
            let staged = imgsign::sign::stage_release(
                &published,
                &specs,
                placement,
                now,
                &self.expiry.expiries()?,
                &mut |p| bar.update(p),
            )?;
            bar.finish();
            let version = staged.targets.version;
            let signed = tough::schema::Signed {
                signed: staged.targets,
                signatures: Vec::new(),
            };
            imgsign::staged::write(out, &signed)?;
            for (name, d) in &staged.images {
                println!("{name}  {} bytes  sha256 {}", d.length, d.hex());
            }
            println!(
                "staged targets v{version} in {}; targets key holders sign it with `imgsign targets sign`",
                out.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let (store, published) = super::open_pinned(&self.repo)?;
        let report = imgsign::sign::sign_release_with(
            published,
            &specs,
            placement,
            &refs(&keys),
            now,
            &self.expiry.expiries()?,
            &mut |p| bar.update(p),
        )
        .with_context(|| format!("signing a release into {}", self.repo.display()))?;
        bar.finish();
        super::record(&store, &self.repo)?;
        let secs = started.elapsed().as_secs_f64();
        let bytes: u64 = report.images.iter().map(|(_, d)| d.length).sum();
        for (name, d) in &report.images {
            println!("{name}  {} bytes  sha256 {}", d.length, d.hex());
        }
        println!(
            "published targets v{}, snapshot v{}, timestamp v{} ({:.1} MiB in {secs:.2} s, {:.0} MiB/s)",
            report.targets_version,
            report.snapshot_version,
            report.timestamp_version,
            bytes as f64 / 1048576.0,
            bytes as f64 / 1048576.0 / secs.max(1e-9)
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// The Raspberry Pi pair (`imgsign::pipair`): with `--rack`, a stage1
/// release for aarch64 nodes whose rack entry says `firmware: pi4-eeprom`
/// or `pi5-eeprom` also gets that model's `boot.img` + `boot.sig`.
#[derive(Debug, clap::Args)]
struct PiArgs {
    /// The rack description: which assigned nodes boot through a Pi EEPROM.
    #[arg(long, value_name = "RACK_YAML")]
    rack: Option<PathBuf>,
    /// The Pi secure-boot key (`imgsign pi-key generate`): file or pkcs11: URI.
    #[arg(long, value_name = "KEY")]
    pi_key: Option<String>,
    /// Make this model's pair whatever the rack says (`pi4`, `pi5`;
    /// repeatable): for Pis not (yet) in the rack file, and for a rack file
    /// kept elsewhere.
    #[arg(long = "pi-model", value_name = "MODEL", value_parser = ["pi4", "pi5"])]
    pi_models: Vec<String>,
    /// The aarch64 stage1 kernel.
    #[arg(long, value_name = "FILE")]
    pi_kernel: Option<PathBuf>,
    /// The aarch64 stage1 initramfs.
    #[arg(long, value_name = "FILE")]
    pi_initramfs: Option<PathBuf>,
    /// The kernel command line.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "console=ttyAMA0,115200 rdinit=/init"
    )]
    pi_cmdline: String,
    /// Directory with the device trees (Debian's arm64 kernel's `broadcom/`).
    #[arg(long, value_name = "DIR")]
    pi_device_trees: Option<PathBuf>,
    /// Directory with `start4.elf` and `fixup4.dat` (Pi 4).
    #[arg(long, value_name = "DIR", default_value = "/usr/lib/raspi-firmware")]
    pi_firmware: PathBuf,
    /// TF-A `PLAT=rpi4` BL31 (Pi 4).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/arm-trusted-firmware/rpi4/bl31.bin"
    )]
    pi_armstub: PathBuf,
}

impl PiArgs {
    /// Makes the pairs this release needs into `dir`; their image specs.
    fn make(
        &self,
        info: &ReleaseInfo,
        dir: &std::path::Path,
        now: jiff::Timestamp,
    ) -> Result<Vec<ImageSpec>> {
        let mut models = match &self.rack {
            Some(rack) => {
                imgsign::pipair::models_for(&racklet_hardware::Rack::load(rack)?, &info.assign)
            }
            None if self.pi_key.is_some() && self.pi_models.is_empty() => {
                bail!("--pi-key needs --rack or --pi-model: which Pis the release is for")
            }
            None => Vec::new(),
        };
        for m in &self.pi_models {
            let m = if m == "pi4" {
                racklet_piboot::bootfiles::PiModel::Pi4
            } else {
                racklet_piboot::bootfiles::PiModel::Pi5
            };
            if !models.contains(&m) {
                models.push(m);
            }
        }
        if !self.pi_models.is_empty()
            && (info.kind != ImageKind::Stage1 || info.arch != Arch::Aarch64)
        {
            bail!("--pi-model: a Pi pair is made from an aarch64 stage1 release only");
        }
        if models.is_empty() || info.kind != ImageKind::Stage1 || info.arch != Arch::Aarch64 {
            return Ok(Vec::new());
        }
        let need = |o: &Option<PathBuf>, flag: &str| {
            o.clone()
                .with_context(|| format!("{flag} is needed: the release has Raspberry Pi nodes"))
        };
        let key = self
            .pi_key
            .as_deref()
            .context("--pi-key is needed: the release has Raspberry Pi nodes")?;
        let key = imgsign::keys::PiKey::load(key)
            .with_context(|| format!("loading the Pi key {}", super::shown(key)))?;
        // Compressed once for every model (the pairs take it as it is).
        let kernel = need(&self.pi_kernel, "--pi-kernel")?;
        let gz = racklet_piboot::bootfiles::gzip_kernel(&racklet_fsio::read(&kernel)?);
        let kernel_gz = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(kernel_gz.path(), &gz)?;
        let inputs = imgsign::pipair::PiInputs {
            kernel: kernel_gz.path().to_owned(),
            initramfs: need(&self.pi_initramfs, "--pi-initramfs")?,
            cmdline: self.pi_cmdline.clone(),
            device_trees: need(&self.pi_device_trees, "--pi-device-trees")?,
            firmware: Some(self.pi_firmware.clone()),
            armstub: Some(self.pi_armstub.clone()),
        };
        let at = imgsign::pipair::signing_time(now)?;
        let mut specs = Vec::new();
        for model in models {
            let started = Instant::now();
            let pair = imgsign::pipair::make_pair(model, &inputs, at, &key)?;
            let (img, sig) = imgsign::pipair::target_names(model);
            for (name, bytes) in [(img, &pair.image[..]), (sig, pair.sig.as_bytes())] {
                let path = dir.join(name);
                racklet_fsio::write_new(&path, bytes, racklet_fsio::Mode::Public)?;
                specs.push(ImageSpec {
                    path,
                    name: ImageName::new(name)?,
                    info: info.clone(),
                });
            }
            eprintln!(
                "{model:?}: {img} {} bytes + {sig}, ts {at}, signed by pi-key {} in {:.2} s",
                pair.image.len(),
                key.fingerprint(),
                started.elapsed().as_secs_f64()
            );
        }
        Ok(specs)
    }
}

/// A progress bar on a terminal; on a pipe, a line every 25%.
struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    current: String,
    last_quarter: u64,
}

impl ProgressBar {
    fn new() -> Self {
        ProgressBar {
            bar: None,
            current: String::new(),
            last_quarter: 0,
        }
    }

    fn update(&mut self, p: Progress<'_>) {
        match p {
            Progress::Image { name, done, total } => {
                if self.current != name {
                    self.finish();
                    self.current = name.to_owned();
                    self.last_quarter = 0;
                    if std::io::stderr().is_terminal() {
                        let bar = indicatif::ProgressBar::new(total);
                        bar.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                            )
                            .expect("valid template")
                            .progress_chars("=> "),
                        );
                        bar.set_message(name.to_owned());
                        self.bar = Some(bar);
                    }
                }
                match &self.bar {
                    Some(bar) => bar.set_position(done),
                    None => {
                        let quarter = done * 4 / total.max(1);
                        if quarter > self.last_quarter && total >= 64 << 20 {
                            self.last_quarter = quarter;
                            eprintln!("{name}: {}% hashed", quarter * 25);
                        }
                    }
                }
            }
            Progress::Publishing => {
                self.finish();
                tracing::debug!("signing and publishing metadata");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
