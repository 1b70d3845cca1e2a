//! One SoftHSM token for a test process: its own token directory and
//! configuration, set in this process's environment (SoftHSM reads
//! `SOFTHSM2_CONF` from there, once per process: one token per test file).
//!
//! The one copy of this set-up: imgsign's PKCS#11 tests include it as
//! `common::softhsm`, bootd's by path (`#[path]`), so nothing else
//! rewrites it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The user PIN of every test token.
pub const PIN: &str = "4321";

/// True if SoftHSM (Debian `softhsm2`) is installed.
pub fn available() -> bool {
    Path::new("/usr/bin/softhsm2-util").exists()
        && Path::new("/usr/lib/softhsm/libsofthsm2.so").exists()
}

/// What to name in a skip line.
pub const NEEDS: &str = "softhsm2 (Debian package softhsm2)";

/// An initialised token and the files behind it.
pub struct Token {
    /// Holds the token directory, the configuration and the PIN file.
    pub dir: tempfile::TempDir,
    /// `softhsm2.conf` (also set as `SOFTHSM2_CONF` in this process).
    pub conf: PathBuf,
    /// A file holding [`PIN`], for `pin-source=`.
    pub pin_file: PathBuf,
    /// The token's label.
    pub label: String,
}

impl Token {
    /// Initialises a token labelled `label` (user PIN [`PIN`]) and points
    /// this process's SoftHSM at it.
    pub fn new(label: &str) -> Token {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let ok = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", PIN, "--so-pin", "8765"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        Token {
            dir,
            conf,
            pin_file,
            label: label.to_owned(),
        }
    }

    /// The URI of `object` in this token, its PIN read from [`Token::pin_file`].
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?pin-source={}",
            self.label,
            self.pin_file.display()
        )
    }

    /// The URI of `object` with the PIN in it (`pin-value`).
    pub fn uri_with_pin(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object}?pin-value={PIN}",
            self.label
        )
    }
}
