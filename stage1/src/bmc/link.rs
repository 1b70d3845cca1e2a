//! The byte streams to a BMC: the simulator's socket, a character device.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{Bmc, BmcError};
use crate::error::Result;

/// The byte stream to a BMC: the simulator's TCP socket, or a character
/// device (a UART; under QEMU a virtio-serial port wired to the simulator).
#[derive(Debug)]
pub enum Link {
    /// `host:port`.
    Tcp(TcpStream),
    /// A device path, opened non-blocking.
    Device(std::fs::File),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf),
            Link::Device(f) => match f.read(buf) {
                // A device has no read timeout: poll it gently instead.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                    Err(e)
                }
                r => r,
            },
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Tcp(s) => s.write(buf),
            Link::Device(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Tcp(s) => s.flush(),
            Link::Device(f) => f.flush(),
        }
    }
}

impl Bmc<Link> {
    /// Opens the link named by `addr`: a path (starting with `/`) is a
    /// character device, anything else `host:port` of the simulator.
    pub fn open(addr: &str, smbus: u8) -> Result<Self> {
        if addr.starts_with('/') {
            use std::os::unix::fs::OpenOptionsExt;
            let path = virtio_port(addr).unwrap_or_else(|| addr.into());
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&path)
                .map_err(|source| BmcError::Open {
                    path: path.clone(),
                    source,
                })?;
            // Drop whatever a previous run left unread (a late answer).
            let mut junk = [0u8; 256];
            while matches!((&f).read(&mut junk), Ok(n) if n > 0) {}
            return Bmc::new(Link::Device(f), smbus);
        }
        let b = Bmc::connect(addr, smbus)?;
        Bmc::new(Link::Tcp(b.stream), smbus)
    }
}

/// `/dev/virtio-ports/NAME` is a udev symlink; an initramfs has no udev.
/// Finds the port named NAME in sysfs instead (`/dev/vportNpM`), when the
/// link itself is missing.
fn virtio_port(addr: &str) -> Option<std::path::PathBuf> {
    let name = addr.strip_prefix("/dev/virtio-ports/")?;
    if std::path::Path::new(addr).exists() {
        return None;
    }
    std::fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("name")).is_ok_and(|n| n.trim() == name))
        .map(|e| std::path::Path::new("/dev").join(e.file_name()))
}

impl Bmc<TcpStream> {
    /// Connects to a simulator socket (`host:port`).
    pub fn connect(addr: &str, smbus: u8) -> Result<Self> {
        let connect = |source| BmcError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let s = TcpStream::connect(addr).map_err(connect)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(connect)?;
        let _ = s.set_nodelay(true);
        Bmc::new(s, smbus)
    }
}
