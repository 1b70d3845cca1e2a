//! The only module with `unsafe`: the Linux system calls stage1 needs as
//! PID 1 and for the hand-off. Each call is a thin wrapper that turns
//! `-1`/errno into [`Error::Sys`].
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

fn check(call: &'static str, rc: libc::c_long) -> Result<libc::c_long> {
    if rc < 0 {
        Err(Error::Sys {
            call,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(rc)
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::NulByte {
        value: s.to_owned(),
    })
}

/// An anonymous in-memory file holding `bytes` (for `kexec_file_load`).
pub fn memfd_with(name: &str, bytes: &[u8]) -> Result<std::fs::File> {
    let n = cstr(name)?;
    // SAFETY: `n` is a valid NUL-terminated string that outlives the call;
    // memfd_create takes no other pointers.
    let fd = unsafe { libc::memfd_create(n.as_ptr(), libc::MFD_CLOEXEC) };
    check("memfd_create", fd.into())?;
    // SAFETY: `fd` was just returned by memfd_create, is open, and is owned
    // by nothing else; OwnedFd takes sole ownership and closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut f = std::fs::File::from(owned);
    io::Write::write_all(&mut f, bytes).map_err(|source| Error::Sys {
        call: "write memfd",
        source,
    })?;
    Ok(f)
}

/// Loads the payload's kernel (+ initrd, command line) for the next
/// `reboot(KEXEC)`. Takes the parts by value: each is freed as soon
/// as it is in its memfd, so the bytes are never held three times.
pub fn kexec_file_load(kernel: Vec<u8>, initrd: Vec<u8>, cmdline: &str) -> Result<()> {
    let k = memfd_with("kernel", &kernel)?;
    drop(kernel);
    let i = if initrd.is_empty() {
        None
    } else {
        Some(memfd_with("initrd", &initrd)?)
    };
    drop(initrd);
    let c = cstr(cmdline)?;
    let flags: libc::c_ulong = if i.is_none() {
        0x4 // KEXEC_FILE_NO_INITRAMFS
    } else {
        0
    };
    let ifd = i.as_ref().map_or(-1, |f| f.as_raw_fd());
    // SAFETY: kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline,
    // flags): both fds are open for the duration of the call, `c` is a
    // NUL-terminated buffer of `cmdline_len` bytes (length includes the
    // NUL, as the kernel requires) that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            k.as_raw_fd(),
            ifd,
            c.as_bytes_with_nul().len(),
            c.as_ptr(),
            flags,
        )
    };
    check("kexec_file_load", rc).map(drop)
}

/// `struct kexec_segment` (`include/uapi/linux/kexec.h`).
#[repr(C)]
struct KexecSegment {
    buf: *const libc::c_void,
    bufsz: libc::size_t,
    mem: *const libc::c_void,
    memsz: libc::size_t,
}

/// Loads an arm64 hand-off planned by `racklet_kexec::plan` with
/// `kexec_load(2)` for the next `reboot(KEXEC)`: the kernel copies each
/// segment's bytes to its physical destination and enters at `plan.entry`
/// (the trampoline). The flags name the architecture
/// (`KEXEC_ARCH_AARCH64`) rather than `KEXEC_ARCH_DEFAULT`: the kernel then
/// refuses the load outright if it is not an arm64 kernel, instead of
/// trusting that the plan was made for it.
pub fn kexec_load(plan: &racklet_kexec::Plan<'_>) -> Result<()> {
    let too_far = || Error::Sys {
        call: "kexec_load",
        source: io::Error::other("a segment lies beyond this machine's address space"),
    };
    let mut segments = Vec::with_capacity(plan.segments.len());
    for s in &plan.segments {
        segments.push(KexecSegment {
            buf: s.bytes.as_ptr().cast(),
            bufsz: s.bytes.len(),
            mem: usize::try_from(s.dest).map_err(|_| too_far())? as *const libc::c_void,
            memsz: usize::try_from(s.memsz).map_err(|_| too_far())?,
        });
    }
    let entry = libc::c_ulong::try_from(plan.entry).map_err(|_| too_far())?;
    let flags = racklet_kexec::KEXEC_ARCH_AARCH64 as libc::c_ulong;
    // SAFETY: kexec_load(entry, nr_segments, segments, flags): `segments`
    // is an array of `nr_segments` `struct kexec_segment` laid out as the
    // kernel's (repr(C)); each `buf` points at `bufsz` readable bytes owned
    // by `plan`, which outlives the call (the kernel copies them before it
    // returns). `mem` is a physical address the kernel checks itself; no
    // user memory is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            entry,
            segments.len() as libc::c_ulong,
            segments.as_ptr(),
            flags,
        )
    };
    check("kexec_load", rc).map(drop)
}

/// The running kernel's page size (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer and no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

/// Flushes file systems and restarts the machine through its firmware
/// (`reboot(LINUX_REBOOT_CMD_RESTART)`): the firmware hand-off, after
/// `BootNext` is set. Returns only on failure.
pub fn restart() -> Error {
    // SAFETY: sync(2) and reboot(2) take no pointers.
    let rc = unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART)
    };
    match check("reboot(RESTART)", rc.into()) {
        Err(e) => e,
        Ok(_) => Error::Sys {
            call: "reboot(RESTART)",
            source: io::Error::other("returned"),
        },
    }
}

/// Makes efivarfs at `target` writable: remounts it read-write (it is
/// mounted read-only by [`platform_security`]), or mounts it so if it is
/// not mounted yet. Only the firmware hand-off writes UEFI variables.
pub fn efivarfs_writable(target: &str) -> Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount_with("efivarfs", target, "efivarfs", libc::MS_REMOUNT | flags)
        .or_else(|_| mount_with("efivarfs", target, "efivarfs", flags))
}

/// Clears the immutable attribute of `path` (`chattr -i`). efivarfs marks
/// every variable it does not know immutable, so stage1's confirm-token
/// variable, written again at every firmware hand-off, needs this first.
pub fn clear_immutable(path: &std::path::Path) -> Result<()> {
    const FS_IMMUTABLE_FL: libc::c_int = 0x10;
    let f = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut flags: libc::c_int = 0;
    // SAFETY: the descriptor is open for the whole call, and
    // FS_IOC_GETFLAGS writes one int through the pointer, which points at
    // `flags`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if let Err(e) = check("ioctl(FS_IOC_GETFLAGS)", rc.into()) {
        // A file system without attributes has nothing immutable.
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL) => Ok(()),
            _ => Err(e),
        };
    }
    if flags & FS_IMMUTABLE_FL == 0 {
        return Ok(());
    }
    flags &= !FS_IMMUTABLE_FL;
    // SAFETY: as above; FS_IOC_SETFLAGS reads one int from `flags`.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    check("ioctl(FS_IOC_SETFLAGS)", rc.into()).map(drop)
}

/// Reboots into the loaded kernel. Returns only on failure.
pub fn reboot_kexec() -> Error {
    // SAFETY: reboot(2) takes an integer command and no pointers.
    let rc = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    match check("reboot(KEXEC)", rc.into()) {
        Err(e) => e,
        Ok(_) => Error::Sys {
            call: "reboot(KEXEC)",
            source: io::Error::other("returned"),
        },
    }
}

/// `mount(source, target, fstype)` with no flags or data.
pub fn mount(source: &str, target: &str, fstype: &str) -> Result<()> {
    mount_with(source, target, fstype, 0)
}

/// Mounts read-only, with no devices, set-uid or executables: for
/// filesystems stage1 only reads (the UEFI variables, securityfs).
pub fn mount_read_only(source: &str, target: &str, fstype: &str) -> Result<()> {
    mount_with(
        source,
        target,
        fstype,
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )
}

fn mount_with(source: &str, target: &str, fstype: &str, flags: libc::c_ulong) -> Result<()> {
    let (s, t, f) = (cstr(source)?, cstr(target)?, cstr(fstype)?);
    // SAFETY: three valid NUL-terminated strings that outlive the call; a
    // null data pointer is allowed.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) };
    check("mount", rc.into()).map(drop)
}

/// What the platform enforces below stage1, as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSecurity {
    /// UEFI Secure Boot: `Some(true)` on, `Some(false)` off, `None` when
    /// the firmware is not UEFI or its variables cannot be read.
    pub secure_boot: Option<bool>,
    /// The kernel's lockdown mode (`none`, `integrity`, `confidentiality`),
    /// `None` when the kernel has no lockdown support.
    pub lockdown: Option<String>,
}

impl std::fmt::Display for PlatformSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sb = match self.secure_boot {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown (no UEFI variables)",
        };
        let lockdown = self.lockdown.as_deref().unwrap_or("unsupported");
        write!(f, "UEFI Secure Boot {sb}, kernel lockdown {lockdown}")
    }
}

/// The `SecureBoot` variable (EFI global variable GUID) as efivarfs shows
/// it: four attribute bytes, then the value (1 = on).
const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Parses an efivarfs `SecureBoot` file.
pub fn parse_secure_boot(bytes: &[u8]) -> Option<bool> {
    match bytes {
        [_, _, _, _, v] => Some(*v == 1),
        _ => None,
    }
}

/// Parses `/sys/kernel/security/lockdown` (`none [integrity]
/// confidentiality`): the bracketed mode.
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(text[start..start + len].to_owned())
}

/// Mounts efivarfs and securityfs read-only (PID 1 only; already-mounted
/// is fine: only the firmware hand-off writes UEFI variables, after
/// [`efivarfs_writable`]) and reads what the
/// platform enforces. Under Secure Boot with lockdown,
/// `kexec_file_load` only takes a kernel signed by a key the kernel trusts
/// (its own, or the firmware's `db`).
pub fn platform_security() -> PlatformSecurity {
    let efivars = "/sys/firmware/efi/efivars";
    if std::path::Path::new("/sys/firmware/efi").exists() {
        let _ = mount_read_only("efivarfs", efivars, "efivarfs");
    }
    let _ = mount_read_only("securityfs", "/sys/kernel/security", "securityfs");
    PlatformSecurity {
        secure_boot: std::fs::read(format!("{efivars}/{SECURE_BOOT_VAR}"))
            .ok()
            .and_then(|b| parse_secure_boot(&b)),
        lockdown: std::fs::read_to_string("/sys/kernel/security/lockdown")
            .ok()
            .and_then(|t| parse_lockdown(&t)),
    }
}

/// Loads a kernel module from a file (`finit_module`).
pub fn load_module(path: &std::path::Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let params = cstr("")?;
    // SAFETY: finit_module(fd, params, flags): the fd is open during the
    // call and `params` is a valid empty NUL-terminated string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    match check("finit_module", rc) {
        Err(Error::Sys { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other.map(drop),
    }
}

/// Sets the system clock (so tough, which reads it, sees trusted time).
pub fn set_clock(t: jiff::Timestamp) -> Result<()> {
    let ts = libc::timespec {
        tv_sec: t.as_second() as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec on the stack for the whole call.
    let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    check("clock_settime", rc.into()).map(drop)
}

/// Fills `buf` from the kernel's CSPRNG (`getrandom(2)`, which blocks until
/// the pool is initialised; no `/dev` needed, so it works as PID 1).
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes
        // for the whole call; the kernel writes at most that many.
        let rc = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        done += check("getrandom", rc as libc::c_long)? as usize;
    }
    Ok(())
}

/// Reaps every exited child without blocking; returns how many.
pub fn reap_children() -> usize {
    let mut n = 0;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return n;
        }
        n += 1;
    }
}

/// Flushes file systems and powers the machine off. Returns only on failure.
pub fn power_off() -> Error {
    // SAFETY: sync(2) and reboot(2) take no pointers.
    let rc = unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF)
    };
    match check("reboot(POWER_OFF)", rc.into()) {
        Err(e) => e,
        Ok(_) => Error::Sys {
            call: "reboot(POWER_OFF)",
            source: io::Error::other("returned"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_boot_variable() {
        // Attributes (NV|BS|RT = 0x07) then the value.
        assert_eq!(parse_secure_boot(&[7, 0, 0, 0, 1]), Some(true));
        assert_eq!(parse_secure_boot(&[7, 0, 0, 0, 0]), Some(false));
        assert_eq!(parse_secure_boot(&[7, 0, 0, 0]), None);
        assert_eq!(parse_secure_boot(&[7, 0, 0, 0, 1, 0]), None);
    }

    #[test]
    fn lockdown_mode() {
        let on = "none [integrity] confidentiality\n";
        assert_eq!(parse_lockdown(on).as_deref(), Some("integrity"));
        let off = "[none] integrity confidentiality\n";
        assert_eq!(parse_lockdown(off).as_deref(), Some("none"));
        assert_eq!(parse_lockdown("none integrity"), None);
        let shown = PlatformSecurity {
            secure_boot: Some(true),
            lockdown: parse_lockdown(on),
        };
        assert_eq!(
            shown.to_string(),
            "UEFI Secure Boot on, kernel lockdown integrity"
        );
    }
}
