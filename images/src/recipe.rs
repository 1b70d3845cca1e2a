//! Image recipes: YAML in, a validated [`Recipe`] out.
//!
//! ```yaml
//! name: demo-os
//! kind: os
//! arch: x86_64
//! version: 1.0.0
//! security_version: 1
//! kernel: { build: racklet-standin-kernel }   # or { path: vmlinuz }, { debian: linux-image-arm64 }
//! initramfs:
//!   files:
//!     - { dst: /init, build: stage1, mode: 0o755 }
//!     - { dst: /etc/motd, path: files/motd }
//!   modules:
//!     - { path: modules/virtio_net.ko }
//! cmdline: console=ttyS0
//! os_release: { NAME: Racklet demo OS }
//! ```
//!
//! `path:` is relative to the recipe file; `build:` names a binary of this
//! workspace, which `cargo xtask build-image` builds for the recipe's
//! architecture; `debian:` (the kernel only) names the Debian kernel
//! metapackage for the recipe's architecture (`linux-image-amd64`,
//! `linux-image-arm64`), whose kernel `cargo xtask build-image` downloads
//! with apt and unpacks. Unknown fields are errors, and every error names
//! the field (and, for YAML errors, the line).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use racklet_hardware::Arch;
use racklet_release::{ImageKind, SecurityVersion};
use serde::Deserialize;

use crate::{Error, Result};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file, already resolved against the recipe's directory.
    Path(PathBuf),
    /// A binary of this workspace, built for the recipe's architecture.
    Build(String),
    /// The kernel of a Debian kernel metapackage for the recipe's
    /// architecture (kernel only; fetched by `cargo xtask build-image`).
    Debian(String),
}

/// The Debian kernel metapackage for `arch`.
pub fn debian_kernel_package(arch: Arch) -> Option<&'static str> {
    match arch {
        Arch::X86_64 => Some("linux-image-amd64"),
        Arch::Aarch64 => Some("linux-image-arm64"),
        Arch::Thumbv7em => None,
    }
}

/// One file in the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path inside the initramfs, normalized (`/etc/motd`).
    pub dst: String,
    /// Its bytes.
    pub src: Source,
    /// Permission bits (e.g. 0o755).
    pub mode: u32,
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Image name (the target name stem).
    pub name: String,
    /// What kind of image.
    pub kind: ImageKind,
    /// Architecture the kernel must be for.
    pub arch: Arch,
    /// Version.
    pub version: semver::Version,
    /// Anti-rollback version.
    pub security_version: SecurityVersion,
    /// The kernel (or the documented stand-in).
    pub kernel: Source,
    /// Files of the initramfs.
    pub files: Vec<FileEntry>,
    /// Kernel modules, loaded in this order by stage1 (listed in
    /// `/etc/racklet/modules`).
    pub modules: Vec<Source>,
    /// The kernel command line (no trailing newline).
    pub cmdline: String,
    /// `.osrel` fields (os-release format).
    pub os_release: BTreeMap<String, String>,
}

impl Recipe {
    /// The target name for the built image: `<name>-<arch>-<version>.uki`.
    pub fn image_name(&self) -> String {
        format!("{}-{}-{}.uki", self.name, self.arch, self.version)
    }

    /// Every workspace binary the recipe needs built.
    pub fn builds(&self) -> Vec<&str> {
        let mut v: Vec<&str> = std::iter::once(&self.kernel)
            .chain(self.files.iter().map(|f| &f.src))
            .chain(self.modules.iter())
            .filter_map(|s| match s {
                Source::Build(b) => Some(b.as_str()),
                Source::Path(_) | Source::Debian(_) => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let wire: wire::Recipe = serde_norway::from_str(&text).map_err(|source| Error::Recipe {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        convert(wire, dir).map_err(|(field, reason)| Error::RecipeField {
            path: path.to_owned(),
            field,
            reason,
        })
    }
}

/// The serde wire format.
pub mod wire {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Recipe {
        pub name: String,
        pub kind: String,
        pub arch: String,
        pub version: String,
        pub security_version: u32,
        pub kernel: Kernel,
        #[serde(default)]
        pub initramfs: Initramfs,
        #[serde(default)]
        pub cmdline: String,
        #[serde(default)]
        pub os_release: BTreeMap<String, String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Initramfs {
        #[serde(default)]
        pub files: Vec<File>,
        #[serde(default)]
        pub modules: Vec<Source>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Source {
        pub path: Option<String>,
        pub build: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Kernel {
        pub path: Option<String>,
        pub build: Option<String>,
        pub debian: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        pub dst: String,
        pub path: Option<String>,
        pub build: Option<String>,
        pub mode: Option<u32>,
    }
}

type FieldError = (String, String);

fn source(
    dir: &Path,
    field: &str,
    path: Option<String>,
    build: Option<String>,
) -> std::result::Result<Source, FieldError> {
    match (path, build) {
        (Some(p), None) => {
            // A recipe may only take files from its own folder: a line such
            // as `path: ../../keys/targets.pem` must not put a release key
            // into an image. (Real kernels come in with --kernel.)
            let rel = Path::new(&p);
            let inside = !p.is_empty()
                && rel
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
            if !inside {
                return Err((
                    field.into(),
                    format!("`{p}` must be a relative path inside the recipe's folder (no `..`, not absolute)"),
                ));
            }
            let full = dir.join(rel);
            // Symlinks inside the folder must not lead out of it either.
            if let (Ok(d), Ok(f)) = (std::fs::canonicalize(dir), std::fs::canonicalize(&full)) {
                if !f.starts_with(&d) {
                    return Err((
                        field.into(),
                        format!("`{p}` leads out of the recipe's folder (symlink)"),
                    ));
                }
            }
            Ok(Source::Path(full))
        }
        (None, Some(b)) => {
            let ok = !b.is_empty()
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err((field.into(), format!("`{b}` is not a binary name")));
            }
            Ok(Source::Build(b))
        }
        _ => Err((field.into(), "give exactly one of `path` or `build`".into())),
    }
}

/// Normalizes an initramfs path: absolute, no `..`, no `.`, no empty parts.
fn dst_path(field: &str, dst: &str) -> std::result::Result<String, FieldError> {
    if !dst.starts_with('/') {
        return Err((field.into(), format!("`{dst}` must be an absolute path")));
    }
    let mut parts = Vec::new();
    for c in Path::new(dst).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => return Err((field.into(), format!("`{dst}` may not contain `.` or `..`"))),
        }
    }
    if parts.is_empty() {
        return Err((field.into(), "`/` is not a file".into()));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn convert(w: wire::Recipe, dir: &Path) -> std::result::Result<Recipe, FieldError> {
    let name_ok = !w.name.is_empty()
        && w.name.len() <= 64
        && w.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        return Err((
            "name".into(),
            format!("`{}`: use 1-64 of a-z 0-9 -", w.name),
        ));
    }
    let kind: ImageKind = w
        .kind
        .parse()
        .map_err(|e: racklet_release::Error| ("kind".to_string(), e.to_string()))?;
    let arch: Arch = w
        .arch
        .parse()
        .map_err(|e: String| ("arch".to_string(), e))?;
    if arch == Arch::Thumbv7em {
        return Err((
            "arch".into(),
            "boot images are for x86_64 or aarch64 nodes; BMC firmware is built in bmc/fw".into(),
        ));
    }
    let version: semver::Version = w
        .version
        .parse()
        .map_err(|e| ("version".to_string(), format!("`{}`: {e}", w.version)))?;
    let kernel = match (w.kernel.debian, w.kernel.path, w.kernel.build) {
        (Some(pkg), None, None) => {
            let want = debian_kernel_package(arch).unwrap_or_default();
            if pkg != want {
                return Err((
                    "kernel.debian".into(),
                    format!("`{pkg}`: the Debian kernel for {arch} is `{want}`"),
                ));
            }
            Source::Debian(pkg)
        }
        (Some(_), _, _) => {
            return Err((
                "kernel".into(),
                "give exactly one of `path`, `build` or `debian`".into(),
            ))
        }
        (None, path, build) => source(dir, "kernel", path, build)?,
    };
    let mut files = Vec::new();
    for (i, f) in w.initramfs.files.into_iter().enumerate() {
        let field = format!("initramfs.files[{i}]");
        let dst = dst_path(&format!("{field}.dst"), &f.dst)?;
        if files.iter().any(|e: &FileEntry| e.dst == dst) {
            return Err((format!("{field}.dst"), format!("`{dst}` appears twice")));
        }
        let mode = f.mode.unwrap_or(0o644);
        if mode > 0o7777 {
            return Err((
                format!("{field}.mode"),
                format!("{mode:o} is not a permission"),
            ));
        }
        files.push(FileEntry {
            dst,
            src: source(dir, &field, f.path, f.build)?,
            mode,
        });
    }
    let mut modules = Vec::new();
    for (i, m) in w.initramfs.modules.into_iter().enumerate() {
        modules.push(source(
            dir,
            &format!("initramfs.modules[{i}]"),
            m.path,
            m.build,
        )?);
    }
    if w.cmdline.contains(['\n', '\0']) || w.cmdline.len() > 4096 {
        return Err((
            "cmdline".into(),
            "one line of at most 4096 bytes, no NUL".into(),
        ));
    }
    for (k, v) in &w.os_release {
        let ok = k.starts_with(|c: char| c.is_ascii_uppercase())
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err((format!("os_release.{k}"), "keys are A-Z 0-9 _".into()));
        }
        if v.contains(['\n', '"', '\\', '`', '$']) {
            return Err((
                format!("os_release.{k}"),
                "values may not contain newlines, quotes, `\\`, backticks or `$`".into(),
            ));
        }
    }
    Ok(Recipe {
        name: w.name,
        kind,
        arch,
        version,
        security_version: SecurityVersion(w.security_version),
        kernel,
        files,
        modules,
        cmdline: w.cmdline,
        os_release: w.os_release,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "name: demo-os\nkind: os\narch: x86_64\nversion: 1.0.0\nsecurity_version: 1\nkernel: { build: racklet-standin-kernel }\ninitramfs:\n  files:\n    - { dst: /init, build: stage1, mode: 0o755 }\n    - { dst: /etc/motd, path: motd }\ncmdline: console=ttyS0\nos_release: { NAME: Racklet }\n";

    fn parse(text: &str) -> Result<Recipe> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.yaml");
        std::fs::write(&p, text).unwrap();
        Recipe::load(&p)
    }

    #[test]
    fn a_good_recipe_parses() {
        let r = parse(OK).unwrap();
        assert_eq!(r.image_name(), "demo-os-x86_64-1.0.0.uki");
        assert_eq!(r.builds(), ["racklet-standin-kernel", "stage1"]);
        assert_eq!(r.files[0].mode, 0o755);
        assert!(matches!(&r.files[1].src, Source::Path(p) if p.ends_with("motd")));
        let arm = OK.replace("arch: x86_64", "arch: aarch64").replace(
            "{ build: racklet-standin-kernel }",
            "{ debian: linux-image-arm64 }",
        );
        let r = parse(&arm).unwrap();
        assert_eq!(r.kernel, Source::Debian("linux-image-arm64".into()));
        assert_eq!(r.builds(), ["stage1"]);
    }

    #[test]
    fn bad_recipes_name_the_field() {
        for (from, to, want) in [
            ("arch: x86_64", "arch: mips", "arch"),
            ("arch: x86_64", "arch: thumbv7em", "arch"),
            ("version: 1.0.0", "version: one", "version"),
            ("kind: os", "kind: firmware", "kind"),
            (
                "dst: /etc/motd",
                "dst: ../etc/motd",
                "initramfs.files[1].dst",
            ),
            (
                "dst: /etc/motd",
                "dst: /etc/../motd",
                "initramfs.files[1].dst",
            ),
            ("dst: /etc/motd", "dst: /init", "initramfs.files[1].dst"),
            ("path: motd", "path: motd, build: x", "initramfs.files[1]"),
            (
                "security_version: 1",
                "security_version: 1\nsecurity_level: 2",
                "line",
            ),
            ("security_version: 1", "security_version: -1", "line"),
            ("path: motd", "path: ../../etc/passwd", "initramfs.files[1]"),
            ("path: motd", "path: /etc/passwd", "initramfs.files[1]"),
            ("NAME: Racklet", "NAME: \"a$b\"", "os_release.NAME"),
            (
                "{ build: racklet-standin-kernel }",
                "{ debian: linux-image-arm64 }",
                "kernel.debian",
            ),
            (
                "{ build: racklet-standin-kernel }",
                "{ debian: linux-image-amd64, build: x }",
                "kernel",
            ),
            ("path: motd", "debian: linux-image-amd64", "line"),
        ] {
            let text = OK.replace(from, to);
            assert_ne!(text, OK, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{to}: {err}");
        }
    }
}
