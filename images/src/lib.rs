//! Racklet boot images: recipes in, reproducible Unified Kernel Images out.
//!
//! - [`recipe`]: the declarative YAML recipe (`images/recipes/*.yaml`).
//! - [`initramfs`]: a deterministic `newc` cpio archive.
//! - [`uki`]: writing and reading systemd UKIs (PE/COFF) with `object`.
//! - [`build`]: a recipe plus resolved inputs → the image bytes, with the
//!   kernel's architecture checked against the recipe.
//!
//! The image format lives here because this crate builds it; stage1 reads
//! images with [`uki::parse`] and [`check_payload`].
#![forbid(unsafe_code)]

pub mod console;
pub mod initramfs;
pub mod recipe;
pub mod uki;

use std::path::{Path, PathBuf};

use racklet_hardware::Arch;

pub use recipe::{Recipe, Source};

/// Debian's systemd EFI stub for x86_64 (package `systemd-boot-efi`).
pub const SYSTEMD_STUB_X64: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Debian's systemd EFI stub for aarch64.
pub const SYSTEMD_STUB_AA64: &str = "/usr/lib/systemd/boot/efi/linuxaa64.efi.stub";

/// Where the initramfs lists kernel modules for stage1 to load, in order.
pub const MODULES_LIST: &str = "/etc/racklet/modules";

/// Errors building or reading images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("recipe {path}: {source}")]
    Recipe {
        path: PathBuf,
        source: serde_norway::Error,
    },
    #[error("recipe {path}: field `{field}`: {reason}")]
    RecipeField {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("kernel {path}: {reason}")]
    Kernel { path: PathBuf, reason: String },
    /// An aarch64 image's kernel (or a UKI's `.linux`) that is not an arm64
    /// Linux `Image`: the node's `kexec_load` hand-off takes nothing else.
    #[error("{what}: an aarch64 image needs an arm64 Linux Image: {source}")]
    NotArm64Image {
        /// The kernel file, or `.linux`.
        what: String,
        /// What the Image reader found.
        source: racklet_kexec::image::Error,
    },
    /// An aarch64 kernel without the EFI stub under systemd's EFI stub,
    /// which starts `.linux` as a PE image: firmware could not boot it.
    #[error(
        "kernel {path}: an arm64 Image without the EFI stub cannot boot from systemd's EFI stub"
    )]
    NoEfiStub { path: PathBuf },
    #[error("initramfs: {0}")]
    Initramfs(String),
    #[error("UKI: {0}")]
    Uki(String),
    #[error("no built binary `{0}` was provided")]
    NotBuilt(String),
    #[error(transparent)]
    Write(#[from] racklet_fsio::Error),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The architecture of an executable (PE or ELF), from its headers.
pub fn executable_arch(bytes: &[u8]) -> std::result::Result<Arch, String> {
    use object::Object;
    let file =
        object::File::parse(bytes).map_err(|e| format!("not a PE or ELF executable ({e})"))?;
    match file.architecture() {
        object::Architecture::X86_64 => Ok(Arch::X86_64),
        object::Architecture::Aarch64 => Ok(Arch::Aarch64),
        object::Architecture::Arm => Ok(Arch::Thumbv7em),
        other => Err(format!("built for {other:?}, which Racklet does not run")),
    }
}

/// Checks that `bytes` are an arm64 Linux `Image` (plain, with the EFI stub,
/// `Image.gz` or EFI zboot): the header the node's `kexec_load` hand-off
/// reads (`racklet_kexec::image`).
pub fn check_arm64_image(what: &str, bytes: &[u8]) -> Result<racklet_kexec::image::Header> {
    racklet_kexec::image::Image::parse(bytes)
        .map(|i| i.header)
        .map_err(|source| Error::NotArm64Image {
            what: what.to_owned(),
            source,
        })
}

/// Checks a kernel (or stand-in) for `arch`; returns its release string if
/// it is a Linux bzImage/Image that carries one. For aarch64 the kernel must
/// be an arm64 `Image` ([`check_arm64_image`]; the stand-in is x86_64 only).
pub fn check_kernel(path: &Path, bytes: &[u8], arch: Arch) -> Result<String> {
    if arch == Arch::Aarch64 {
        check_arm64_image(&format!("kernel {}", path.display()), bytes)?;
        return Ok(String::new());
    }
    let found = executable_arch(bytes).map_err(|reason| Error::Kernel {
        path: path.to_owned(),
        reason,
    })?;
    if found != arch {
        return Err(Error::Kernel {
            path: path.to_owned(),
            reason: format!("is for {found}, the recipe is for {arch}"),
        });
    }
    Ok(bzimage_release(bytes).unwrap_or_default())
}

/// The kernel release of an x86 bzImage (boot protocol `kernel_version`).
fn bzimage_release(bytes: &[u8]) -> Option<String> {
    if bytes.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let off = u16::from_le_bytes(bytes.get(0x20e..0x210)?.try_into().ok()?) as usize;
    let s = bytes.get(0x200 + off..)?;
    let end = s.iter().position(|&b| b == 0)?.min(256);
    let text = std::str::from_utf8(&s[..end]).ok()?;
    // "6.1.0-27-amd64 (debian-kernel@…) #1 SMP …": the release is the first word.
    text.split_whitespace().next().map(str::to_owned)
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The target name (`<name>-<arch>-<version>.uki`).
    pub name: String,
    /// The UKI bytes.
    pub bytes: Vec<u8>,
    /// The kernel release found in the kernel (empty for the stand-in).
    pub uname: String,
    /// True if it was built on systemd's EFI stub (firmware-bootable).
    pub on_stub: bool,
    /// The initramfs inside it (newc cpio), for a boot path without a UKI
    /// (a Raspberry Pi's `boot.img` carries kernel and initramfs apart).
    pub initrd: Vec<u8>,
}

/// Builds a recipe. `resolve` maps each source to a file (paths as they are,
/// `build:` names to the binaries the caller built); `stub` is systemd's EFI
/// stub for the recipe's architecture, if installed; `mtime` stamps every
/// initramfs entry.
pub fn build(
    recipe: &Recipe,
    resolve: &dyn Fn(&Source) -> Result<PathBuf>,
    stub: Option<&[u8]>,
    mtime: u32,
) -> Result<Built> {
    let read = |src: &Source| -> Result<(PathBuf, Vec<u8>)> {
        let path = resolve(src)?;
        let bytes = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        Ok((path, bytes))
    };
    let (kpath, kernel) = read(&recipe.kernel)?;
    let uname = check_kernel(&kpath, &kernel, recipe.arch)?;
    if recipe.arch == Arch::Aarch64 && stub.is_some() {
        let header = check_arm64_image(&format!("kernel {}", kpath.display()), &kernel)?;
        if !header.efi_stub() {
            return Err(Error::NoEfiStub { path: kpath });
        }
    }

    let mut rd = initramfs::Initramfs::new();
    for f in &recipe.files {
        let (_, bytes) = read(&f.src)?;
        rd.add_file(&f.dst, f.mode, bytes)?;
    }
    let mut list = String::new();
    for (i, m) in recipe.modules.iter().enumerate() {
        let (path, bytes) = read(m)?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("module-{i}.ko"));
        let dst = format!("/lib/modules/racklet/{i:02}-{file}");
        rd.add_file(&dst, 0o644, bytes)?;
        list.push_str(&dst);
        list.push('\n');
    }
    if !recipe.modules.is_empty() {
        rd.add_file(MODULES_LIST, 0o644, list.into_bytes())?;
    }
    let initrd = rd.to_bytes(mtime)?;

    let parts = uki::Parts {
        osrel: os_release(recipe).into_bytes(),
        cmdline: recipe.cmdline.clone().into_bytes(),
        uname: uname.clone().into_bytes(),
        linux: kernel,
        initrd: initrd.clone(),
    };
    let bytes = uki::build(recipe.arch, stub, &parts)?;
    Ok(Built {
        name: recipe.image_name(),
        bytes,
        uname,
        on_stub: stub.is_some(),
        initrd,
    })
}

/// The `.osrel` text: the recipe's fields plus `IMAGE_ID`, `IMAGE_VERSION`
/// and `RACKLET_SECURITY_VERSION` (unless the recipe sets them), sorted.
pub fn os_release(recipe: &Recipe) -> String {
    let mut fields = recipe.os_release.clone();
    fields
        .entry("IMAGE_ID".into())
        .or_insert_with(|| recipe.name.clone());
    fields
        .entry("IMAGE_VERSION".into())
        .or_insert_with(|| recipe.version.to_string());
    fields
        .entry("RACKLET_SECURITY_VERSION".into())
        .or_insert_with(|| recipe.security_version.to_string());
    fields
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
        .collect()
}

/// Checks a payload before stage1 hands off to it: a UKI whose machine type
/// is `arch` and whose `.linux` is an executable for `arch` — for aarch64,
/// an arm64 Linux `Image` ([`check_arm64_image`]).
pub fn check_payload(bytes: &[u8], arch: Arch) -> Result<uki::Uki> {
    let u = uki::parse(bytes)?;
    if u.arch != arch {
        return Err(Error::Uki(format!(
            "the image is for {}, this node is {arch}",
            u.arch
        )));
    }
    if arch == Arch::Aarch64 {
        check_arm64_image(".linux", &u.parts.linux)?;
        return Ok(u);
    }
    let inner = executable_arch(&u.parts.linux).map_err(|r| Error::Uki(format!(".linux: {r}")))?;
    if inner != arch {
        return Err(Error::Uki(format!(
            ".linux is for {inner}, this node is {arch}"
        )));
    }
    Ok(u)
}

/// Writes an image atomically (temp, fsync, rename).
pub fn write_image(out: &Path, bytes: &[u8]) -> Result<()> {
    Ok(racklet_fsio::write_atomic(
        out,
        bytes,
        racklet_fsio::Mode::Public,
    )?)
}
