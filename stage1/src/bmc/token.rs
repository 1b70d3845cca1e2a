//! The booted OS's one-shot confirmation ([`ConfirmToken`]) and how it
//! travels: on the kernel command line (`racklet.confirm=…`), or in an EFI
//! variable after a hand-off through the firmware.

use std::io::Write;

use racklet_bmc_proto::{Request, SmbusAddr};

use super::BmcError;
use crate::error::{Error, Result};

/// The kernel command-line key of a [`ConfirmToken`].
pub const CONFIRM_CMDLINE_KEY: &str = "racklet.confirm";

/// The booted OS's one-shot confirmation: a ConfirmBoot frame and, when the
/// rollback minimum is to rise, a RaiseRollbackMin frame, MAC'd by stage1
/// for this epoch with the counters after its own. Anyone who reads it
/// (it is on `/proc/cmdline`) can only confirm this boot, once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmToken {
    frames: Vec<Vec<u8>>,
}

impl ConfirmToken {
    /// A token of these (already MAC'd) frames.
    pub(super) fn from_frames(frames: Vec<Vec<u8>>) -> ConfirmToken {
        ConfirmToken { frames }
    }

    /// The command-line word: `racklet.confirm=<hex frame>[.<hex frame>]`.
    pub fn cmdline_word(&self) -> String {
        let frames: Vec<String> = self.frames.iter().map(hex::encode).collect();
        format!("{CONFIRM_CMDLINE_KEY}={}", frames.join("."))
    }

    /// Finds and parses the token in a kernel command line (`None`: none there).
    pub fn from_cmdline(cmdline: &str) -> Option<Result<ConfirmToken, BmcError>> {
        let prefix = format!("{CONFIRM_CMDLINE_KEY}=");
        let word = cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix(prefix.as_str()))
            .next_back()?;
        Some(Self::parse(word))
    }

    fn parse(value: &str) -> Result<ConfirmToken, BmcError> {
        let bad = |why: String| BmcError::BadToken { why };
        let mut frames = Vec::new();
        for part in value.split('.') {
            let f = hex::decode(part).map_err(|e| bad(format!("`{part}`: {e}")))?;
            let addr = f
                .first()
                .and_then(|b| SmbusAddr::new(b >> 1).ok())
                .ok_or_else(|| bad("a frame without an address".into()))?;
            let inc = racklet_bmc_proto::decode_request(addr, &f);
            match inc.request {
                Ok(Request::ConfirmBoot { .. } | Request::RaiseRollbackMin { .. })
                    if inc.auth.is_some() => {}
                other => {
                    return Err(bad(format!(
                        "not an authenticated ConfirmBoot or RaiseRollbackMin: {other:?}"
                    )))
                }
            }
            frames.push(f);
        }
        if frames.is_empty() || frames.len() > 2 {
            return Err(bad(format!("{} frames, want 1 or 2", frames.len())));
        }
        Ok(ConfirmToken { frames })
    }

    /// The token's frame for exactly `req` at `addr`, if it has one.
    pub(super) fn frame_for(&self, addr: SmbusAddr, req: &Request<'_>) -> Option<&[u8]> {
        self.frames
            .iter()
            .find(|f| racklet_bmc_proto::decode_request(addr, f).request.as_ref() == Ok(req))
            .map(Vec::as_slice)
    }
}

/// The EFI variable that carries a [`ConfirmToken`] when the hand-off goes
/// through the firmware (UEFI Secure Boot's route: the UKI's signed command
/// line cannot take the token). Non-volatile: it must survive the reset;
/// a stale one is harmless (it fails in any later epoch).
pub const CONFIRM_EFI_VARIABLE: &str = "RackletConfirmToken-5c0f7b6e-2a4d-4e8b-9f31-7d2c6a1e8b40";

impl ConfirmToken {
    /// Writes the token into [`CONFIRM_EFI_VARIABLE`] under `efivars`
    /// (efivarfs: 4 attribute bytes, then the command-line word).
    pub fn write_efi_variable(&self, efivars: &std::path::Path) -> Result<()> {
        let path = efivars.join(CONFIRM_EFI_VARIABLE);
        // The previous boot's token is immutable to efivarfs (a variable it
        // does not know): writable again only after `chattr -i`.
        if path.exists() {
            crate::sys::clear_immutable(&path)?;
        }
        let bytes = crate::efi::efivarfs_file(
            crate::efi::ATTRIBUTES_NV_BS_RT,
            self.cmdline_word().as_bytes(),
        );
        // One write(2): efivarfs takes a variable whole.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        match f.write(&bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(n) => Err(Error::Write {
                path,
                source: std::io::Error::other(format!("short write: {n} of {}", bytes.len())),
            }),
            Err(source) => Err(Error::Write { path, source }),
        }
    }

    /// The token in [`CONFIRM_EFI_VARIABLE`] under `efivars` (`None`: no
    /// such variable).
    pub fn from_efi_variable(efivars: &std::path::Path) -> Option<Result<ConfirmToken>> {
        let bytes = std::fs::read(efivars.join(CONFIRM_EFI_VARIABLE)).ok()?;
        let text = String::from_utf8_lossy(bytes.get(4..).unwrap_or_default()).into_owned();
        Some(match Self::from_cmdline(&text) {
            Some(r) => r.map_err(Error::from),
            None => Err(BmcError::BadToken {
                why: format!("{CONFIRM_EFI_VARIABLE} holds no {CONFIRM_CMDLINE_KEY}= word"),
            }
            .into()),
        })
    }
}

/// `cmdline` with `token`'s word appended (any `racklet.confirm=` word it
/// carried before is dropped: only stage1's counts).
pub fn cmdline_with_confirm_token(cmdline: &str, token: &ConfirmToken) -> String {
    let prefix = format!("{CONFIRM_CMDLINE_KEY}=");
    let mut words: Vec<String> = cmdline
        .split_whitespace()
        .filter(|w| !w.starts_with(prefix.as_str()))
        .map(str::to_owned)
        .collect();
    words.push(token.cmdline_word());
    words.join(" ")
}
