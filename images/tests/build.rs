//! Building recipes from real files: reproducibility and bad input.

use std::path::{Path, PathBuf};

use racklet_hardware::Arch;
use racklet_images::{build, check_payload, Error, Recipe, Source};

/// A real executable for this machine: the test binary itself.
fn host_executable() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// A real (relocatable) ELF object for aarch64, made with `object`.
fn aarch64_elf(dir: &Path) -> PathBuf {
    use object::write::Object;
    let obj = Object::new(
        object::BinaryFormat::Elf,
        object::Architecture::Aarch64,
        object::Endianness::Little,
    );
    let p = dir.join("aarch64.o");
    std::fs::write(&p, obj.write().unwrap()).unwrap();
    p
}

fn recipe(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("motd"), "hello\n").unwrap();
    std::fs::write(dir.join("tool"), "#!/bin/sh\necho tool\n").unwrap();
    let text = format!(
        "name: test-os\nkind: os\narch: x86_64\nversion: 2.1.0\nsecurity_version: 4\n\
         kernel: {{ build: kernel }}\ninitramfs:\n  files:\n    - {{ dst: /etc/motd, path: motd }}\n    \
         - {{ dst: /usr/bin/tool, path: tool, mode: 0o755 }}\ncmdline: console=ttyS0\n{extra}"
    );
    let p = dir.join("r.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn resolver(kernel: PathBuf) -> impl Fn(&Source) -> racklet_images::Result<PathBuf> {
    move |s| match s {
        Source::Path(p) => Ok(p.clone()),
        Source::Build(b) if b == "kernel" => Ok(kernel.clone()),
        Source::Build(b) | Source::Debian(b) => Err(Error::NotBuilt(b.clone())),
    }
}

#[test]
fn the_same_recipe_builds_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let r = Recipe::load(&recipe(d.path(), "")).unwrap();
    let a = build(&r, &resolver(host_executable()), None, 1_700_000_000).unwrap();
    let b = build(&r, &resolver(host_executable()), None, 1_700_000_000).unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.name, "test-os-x86_64-2.1.0.uki");
    // A different SOURCE_DATE_EPOCH is a different image.
    let c = build(&r, &resolver(host_executable()), None, 1).unwrap();
    assert_ne!(a.bytes, c.bytes);
    // What stage1 checks before hand-off passes, and the sections are right.
    if Arch::X86_64.as_str() == std::env::consts::ARCH {
        let u = check_payload(&a.bytes, Arch::X86_64).unwrap();
        assert_eq!(u.parts.cmdline, b"console=ttyS0");
        let osrel = String::from_utf8(u.parts.osrel).unwrap();
        assert!(osrel.contains("IMAGE_VERSION=\"2.1.0\""), "{osrel}");
        assert!(osrel.contains("RACKLET_SECURITY_VERSION=\"4\""), "{osrel}");
        assert_eq!(u.parts.linux, std::fs::read(host_executable()).unwrap());
    }
}

#[test]
fn a_kernel_for_another_architecture_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = Recipe::load(&recipe(d.path(), "")).unwrap();
    let err = build(&r, &resolver(aarch64_elf(d.path())), None, 0).unwrap_err();
    match err {
        Error::Kernel { reason, .. } => {
            assert!(
                reason.contains("aarch64") && reason.contains("x86_64"),
                "{reason}"
            )
        }
        other => panic!("wrong error: {other}"),
    }
    // Something that is not an executable at all.
    let junk = d.path().join("junk");
    std::fs::write(&junk, b"not a kernel").unwrap();
    let err = build(&r, &resolver(junk), None, 0).unwrap_err().to_string();
    assert!(err.contains("not a PE or ELF"), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    let r = Recipe::load(&recipe(d.path(), "")).unwrap();
    std::fs::remove_file(d.path().join("motd")).unwrap();
    let err = build(&r, &resolver(host_executable()), None, 0).unwrap_err();
    assert!(
        matches!(&err, Error::Read { path, .. } if path.ends_with("motd")),
        "{err}"
    );
}

#[test]
fn a_payload_for_another_node_architecture_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let r = Recipe::load(&recipe(d.path(), "")).unwrap();
    let a = build(&r, &resolver(host_executable()), None, 0).unwrap();
    let err = check_payload(&a.bytes, Arch::Aarch64)
        .unwrap_err()
        .to_string();
    assert!(err.contains("this node is aarch64"), "{err}");
}

/// The first 4 KiB of Debian 12's arm64 kernel (EFI stub, Image header),
/// zero-padded to the end of its PE sections: what `racklet-kexec` records.
fn debian_arm64_kernel(dir: &Path, efi_stub: bool) -> PathBuf {
    let head = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../stage1/kexec/tests/data/debian-12-arm64-image-head/head.bin");
    let mut k = std::fs::read(head).unwrap();
    k.resize(0x1f6_da00, 0);
    if !efi_stub {
        // A plain Image: no `MZ`, no PE header offset.
        k[0..4].copy_from_slice(&[0; 4]);
        k[0x3c..0x40].copy_from_slice(&[0; 4]);
    }
    let p = dir.join(if efi_stub { "vmlinuz" } else { "Image" });
    std::fs::write(&p, k).unwrap();
    p
}

#[test]
fn an_aarch64_image_needs_an_arm64_linux_image_for_its_kernel() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recipe(d.path(), ""))
        .unwrap()
        .replace("arch: x86_64", "arch: aarch64");
    let path = d.path().join("arm.yaml");
    std::fs::write(&path, text).unwrap();
    let r = Recipe::load(&path).unwrap();
    // Debian's Image (with the EFI stub) builds, and stage1's check passes.
    let k = debian_arm64_kernel(d.path(), true);
    let a = build(&r, &resolver(k.clone()), None, 0).unwrap();
    let u = check_payload(&a.bytes, Arch::Aarch64).unwrap();
    assert_eq!(u.parts.linux, std::fs::read(&k).unwrap());
    // An aarch64 ELF (the stand-in's kind), an x86 kernel: refused.
    for kernel in [aarch64_elf(d.path()), host_executable()] {
        let err = build(&r, &resolver(kernel.clone()), None, 0).unwrap_err();
        assert!(
            matches!(err, Error::NotArm64Image { .. }),
            "{}: {err}",
            kernel.display()
        );
        assert!(
            err.to_string().contains("needs an arm64 Linux Image"),
            "{err}"
        );
    }
    // Truncated inside its PE sections.
    let cut = d.path().join("cut");
    std::fs::write(&cut, &std::fs::read(&k).unwrap()[..1 << 20]).unwrap();
    let err = build(&r, &resolver(cut), None, 0).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");
    // On systemd's stub the Image must carry the EFI stub; without one
    // (a PE container for kexec only) a plain Image is fine.
    let plain = debian_arm64_kernel(d.path(), false);
    build(&r, &resolver(plain.clone()), None, 0).unwrap();
    let stub = racklet_images::uki::build(Arch::Aarch64, None, &Default::default()).unwrap();
    let err = build(&r, &resolver(plain), Some(&stub), 0).unwrap_err();
    assert!(matches!(err, Error::NoEfiStub { .. }), "{err}");
}
