//! The EEPROM bootloader config a Racklet Pi needs for HTTP boot.
//!
//! A pure function of the rack's facts: [`EepromConfig::bootconf`] writes
//! the `boot.conf` text `rpi-eeprom-config` embeds. Each property, and
//! where it is documented (raspberrypi/documentation,
//! `computers/raspberry-pi/eeprom-bootloader.adoc` and `boot-http.adoc`;
//! usbboot `secure-boot-recovery/README.md`):
//!
//! | property | value | why |
//! |---|---|---|
//! | `BOOT_UART` | `0`/`1` | bootloader log on GPIO 14/15 |
//! | `BOOT_ORDER` | `0xf7` by default | mode `7` is HTTP; `f` restarts the list |
//! | `NET_INSTALL_ENABLED` | `0` | no network-install screen (saves the keyboard probe) |
//! | `ENABLE_SELF_UPDATE` | `0` | the secure-boot recipes turn it off: no unsigned EEPROM updates from the network |
//! | `HTTP_HOST` | bootd's address or name | lower-case letters, digits, `-`, `.` only; anything else is ignored by the bootloader |
//! | `HTTP_PORT` | `80`, or `443` with TLS | plain HTTP is used on any port unless `HTTP_CACERT_HASH` is set |
//! | `HTTP_PATH` | e.g. `racklet/stage1` | no leading or trailing `/`; case-sensitive |
//! | `HTTP_CACERT_HASH` | SHA-256 hex of the CA's DER | only with [`Transport::Https`]: then HTTPS on 443 |
//! | `SIGNED_BOOT` | `1` | load only `boot.img`, checked against `boot.sig` |
//!
//! The bootloader then requests `boot.sig`, then `boot.img`, from
//! [`EepromConfig::url`]. With a custom `HTTP_HOST` every download must be
//! signed with the key in the EEPROM. Note that `rpi-eeprom-config
//! --apply` cannot add that key or a CA certificate: a signed config is
//! made offline with `rpi-eeprom-config -c boot.conf -p public.pem
//! [--cacertder ca.der] -o pieeprom.upd pieeprom.original.bin` and
//! `rpi-eeprom-digest`, then flashed (`rpi-eeprom-update -d -f`, or
//! `rpiboot` with usbboot's `secure-boot-recovery`).

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The EEPROM's slot for one embedded file (`boot.conf`, `cacert.der`):
/// a 4 KiB sector less its 20-byte header (rpi-eeprom `rpi-eeprom-config`,
/// `MAX_FILE_SIZE`).
pub const MAX_EEPROM_FILE_BYTES: usize = 4076;

/// `HTTP_HOST`: a host name or IPv4 address the bootloader accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHost(String);

impl HttpHost {
    /// Validates `host`: 1–253 characters of `a-z 0-9 - .`, not starting
    /// or ending with `.` or `-`. No scheme, port or slash.
    pub fn new(host: &str) -> Result<Self> {
        let bad = |reason| Error::BadEepromValue {
            key: "HTTP_HOST",
            value: host.to_owned(),
            reason,
        };
        if host.is_empty() || host.len() > 253 {
            return Err(bad("must be 1 to 253 characters"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(bad(
                "only lower-case letters, digits, '-' and '.' (the bootloader ignores other hosts)",
            ));
        }
        if host.starts_with(['.', '-']) || host.ends_with(['.', '-']) || host.contains("..") {
            return Err(bad("an empty label, or one starting or ending with '-'"));
        }
        Ok(Self(host.to_owned()))
    }

    /// The host.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `HTTP_PATH`: `/`-separated components of `A-Z a-z 0-9 . _ ~ -`,
/// without leading or trailing `/`, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPath(String);

impl HttpPath {
    /// Validates `path` (at most 128 bytes).
    pub fn new(path: &str) -> Result<Self> {
        let bad = |reason| Error::BadEepromValue {
            key: "HTTP_PATH",
            value: path.to_owned(),
            reason,
        };
        if path.is_empty() || path.len() > 128 {
            return Err(bad("must be 1 to 128 characters"));
        }
        for c in path.split('/') {
            if c.is_empty() || c == "." || c == ".." {
                return Err(bad(
                    "an empty, '.' or '..' component (or a leading or trailing '/')",
                ));
            }
            if !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
            {
                return Err(bad("only letters, digits and . _ ~ - between slashes"));
            }
        }
        Ok(Self(path.to_owned()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the bootloader reaches bootd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP (a Pi 4: Raspberry Pi documents custom CA certificates
    /// for BCM2712 only). Safe because signed boot checks `boot.sig`.
    PlainHttp,
    /// HTTPS on port 443 to the CA whose DER has this SHA-256 (a Pi 5,
    /// bootloader 2024-04-05 or later).
    Https {
        /// SHA-256 of the CA certificate's DER ([`ca_cert_sha256`]).
        ca_cert_sha256: [u8; 32],
    },
}

/// `BOOT_ORDER`: up to eight 4-bit boot modes, tried lowest nibble first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOrder(u32);

impl BootOrder {
    /// HTTP, then start again: `0xf7`.
    pub const HTTP_THEN_RESTART: Self = Self(0xf7);

    /// Validates `order`: every nibble up to the highest non-zero one is a
    /// documented mode (`1`–`7`, `e`, `f`; `0` only as the first), and one
    /// of them is `7` (HTTP).
    pub fn new(order: u32) -> Result<Self> {
        let bad = |reason| Error::BadEepromValue {
            key: "BOOT_ORDER",
            value: format!("{order:#x}"),
            reason,
        };
        let digits = (0..8)
            .map(|i| (order >> (4 * i)) & 0xf)
            .take(8 - (order.leading_zeros() as usize / 4));
        let mut http = false;
        for (i, d) in digits.enumerate() {
            match d {
                0 if i == 0 => {}
                1..=7 | 0xe | 0xf => http |= d == 7,
                _ => return Err(bad("a nibble that is not a boot mode")),
            }
        }
        if !http {
            return Err(bad("no HTTP boot (mode 7)"));
        }
        Ok(Self(order))
    }
}

/// The EEPROM config of one Racklet Pi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EepromConfig {
    /// bootd's address.
    pub host: HttpHost,
    /// Where on bootd the pair is served.
    pub path: HttpPath,
    /// Plain HTTP or HTTPS to the rack CA.
    pub transport: Transport,
    /// `HTTP_PORT`; `None` is the transport's default (80 or 443).
    pub port: Option<u16>,
    /// `SIGNED_BOOT=1`: boot only a `boot.img` that `boot.sig` signs.
    pub signed_boot: bool,
    /// `BOOT_ORDER`.
    pub boot_order: BootOrder,
    /// `BOOT_UART=1`: log to the UART.
    pub boot_uart: bool,
}

impl EepromConfig {
    /// A signed-boot HTTP config with the defaults of the table above.
    pub fn signed_http_boot(host: HttpHost, path: HttpPath, transport: Transport) -> Self {
        Self {
            host,
            path,
            transport,
            port: None,
            signed_boot: true,
            boot_order: BootOrder::HTTP_THEN_RESTART,
            boot_uart: false,
        }
    }

    /// The port the bootloader connects to. HTTPS is documented on 443
    /// only, so [`Self::bootconf`] refuses any other port with it.
    pub fn effective_port(&self) -> u16 {
        match (self.port, self.transport) {
            (Some(p), _) => p,
            (None, Transport::PlainHttp) => 80,
            (None, Transport::Https { .. }) => 443,
        }
    }

    /// The URL the bootloader requests `file` (`boot.sig`, `boot.img`) at:
    /// `http(s)://HTTP_HOST:HTTP_PORT/HTTP_PATH/file`.
    pub fn url(&self, file: &str) -> String {
        let scheme = match self.transport {
            Transport::PlainHttp => "http",
            Transport::Https { .. } => "https",
        };
        format!(
            "{scheme}://{}:{}/{}/{file}",
            self.host.as_str(),
            self.effective_port(),
            self.path.as_str()
        )
    }

    /// The `boot.conf` text for `rpi-eeprom-config` (see the module docs
    /// for how it reaches a signed EEPROM).
    pub fn bootconf(&self) -> Result<String> {
        let port = self.effective_port();
        if matches!(self.transport, Transport::Https { .. }) && port != 443 {
            return Err(Error::BadEepromValue {
                key: "HTTP_PORT",
                value: port.to_string(),
                reason: "the bootloader's HTTPS is documented on port 443 only",
            });
        }
        if port == 0 {
            return Err(Error::BadEepromValue {
                key: "HTTP_PORT",
                value: "0".into(),
                reason: "not a port",
            });
        }
        let mut out = String::from(
            "# Racklet: EEPROM bootloader config for HTTP boot of a signed boot.img\n[all]\n",
        );
        let b = |on: bool| u8::from(on);
        let _ = writeln!(out, "BOOT_UART={}", b(self.boot_uart));
        let _ = writeln!(out, "BOOT_ORDER={:#x}", self.boot_order.0);
        out.push_str("NET_INSTALL_ENABLED=0\nENABLE_SELF_UPDATE=0\n");
        let _ = writeln!(out, "HTTP_HOST={}", self.host.as_str());
        let _ = writeln!(out, "HTTP_PORT={port}");
        let _ = writeln!(out, "HTTP_PATH={}", self.path.as_str());
        if let Transport::Https { ca_cert_sha256 } = self.transport {
            let _ = writeln!(out, "HTTP_CACERT_HASH={}", hex::encode(ca_cert_sha256));
        }
        let _ = writeln!(out, "SIGNED_BOOT={}", b(self.signed_boot));
        debug_assert!(out.len() <= MAX_EEPROM_FILE_BYTES);
        Ok(out)
    }

    /// Reads a `boot.conf` back, as the modelled Pi's EEPROM holds it: the
    /// properties of the module table (others are ignored, as the
    /// bootloader ignores what it does not know; a Racklet Pi needs none),
    /// `#` comments and the `[all]` section. `HTTP_HOST` is required;
    /// `HTTP_CACERT_HASH` makes the transport HTTPS. A property given
    /// twice, or a value the bootloader would not take, is refused.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |key: &'static str, value: &str, reason| Error::BadEepromValue {
            key,
            value: value.to_owned(),
            reason,
        };
        const KEYS: [&str; 9] = [
            "BOOT_UART",
            "BOOT_ORDER",
            "NET_INSTALL_ENABLED",
            "ENABLE_SELF_UPDATE",
            "HTTP_HOST",
            "HTTP_PORT",
            "HTTP_PATH",
            "HTTP_CACERT_HASH",
            "SIGNED_BOOT",
        ];
        let mut seen: std::collections::BTreeMap<&'static str, String> = Default::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let Some(key) = KEYS.iter().copied().find(|known| *known == k.trim()) else {
                continue;
            };
            if seen.insert(key, v.trim().to_owned()).is_some() {
                return Err(bad(key, v.trim(), "given twice"));
            }
        }
        let get = |k: &str| seen.get(k).map(String::as_str);
        let flag = |key: &'static str| -> Result<bool> {
            match get(key) {
                None | Some("0") => Ok(false),
                Some("1") => Ok(true),
                Some(v) => Err(bad(key, v, "not 0 or 1")),
            }
        };
        let host = HttpHost::new(get("HTTP_HOST").ok_or(Error::BadEepromValue {
            key: "HTTP_HOST",
            value: String::new(),
            reason: "missing: HTTP boot needs a host",
        })?)?;
        let path = HttpPath::new(get("HTTP_PATH").ok_or(Error::BadEepromValue {
            key: "HTTP_PATH",
            value: String::new(),
            reason: "missing: Racklet serves the pair under a path",
        })?)?;
        let transport = match get("HTTP_CACERT_HASH") {
            None => Transport::PlainHttp,
            Some(h) => {
                let mut hash = [0u8; 32];
                hex::decode_to_slice(h, &mut hash)
                    .map_err(|_| bad("HTTP_CACERT_HASH", h, "not 64 hex digits"))?;
                Transport::Https {
                    ca_cert_sha256: hash,
                }
            }
        };
        let port = get("HTTP_PORT")
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("HTTP_PORT", p, "not a port"))
            })
            .transpose()?;
        let boot_order = match get("BOOT_ORDER") {
            None => BootOrder::HTTP_THEN_RESTART,
            Some(v) => {
                let n = u32::from_str_radix(v.trim_start_matches("0x"), 16)
                    .map_err(|_| bad("BOOT_ORDER", v, "not a hex number"))?;
                BootOrder::new(n)?
            }
        };
        Ok(Self {
            host,
            path,
            transport,
            port,
            signed_boot: flag("SIGNED_BOOT")?,
            boot_order,
            boot_uart: flag("BOOT_UART")?,
        })
    }
}

/// `HTTP_CACERT_HASH` for a CA certificate: SHA-256 of its DER, refused
/// when the certificate would not fit the EEPROM's file slot.
pub fn ca_cert_sha256(der: &[u8]) -> Result<[u8; 32]> {
    if der.len() > MAX_EEPROM_FILE_BYTES {
        return Err(Error::CaCertTooLarge {
            len: der.len(),
            max: MAX_EEPROM_FILE_BYTES,
        });
    }
    Ok(Sha256::digest(der).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_paths_and_orders_as_a_table() {
        for (host, ok) in [
            ("10.0.0.2", true),
            ("bootd.rack.lan", true),
            ("Bootd", false),
            ("http://bootd", false),
            ("bootd:80", false),
            ("bootd/", false),
            (".bootd", false),
            ("a..b", false),
            ("", false),
        ] {
            assert_eq!(HttpHost::new(host).is_ok(), ok, "{host:?}");
        }
        for (path, ok) in [
            ("net_install", true),
            ("racklet/unit-3", true),
            ("/racklet", false),
            ("racklet/", false),
            ("a/../b", false),
            ("with space", false),
            ("q?x=1", false),
        ] {
            assert_eq!(HttpPath::new(path).is_ok(), ok, "{path:?}");
        }
        for (order, ok) in [
            (0xf7, true),
            (0x7, true),
            (0xf471, true),
            (0xf21, false),
            (0x97, false),
            (0x70, true),
            (0x707, false),
            (0, false),
        ] {
            assert_eq!(BootOrder::new(order).is_ok(), ok, "{order:#x}");
        }
    }

    #[test]
    fn bootconf_for_a_pi5_over_https() {
        let hash = [0xab; 32];
        let c = EepromConfig::signed_http_boot(
            HttpHost::new("10.0.0.2").unwrap(),
            HttpPath::new("racklet/stage1").unwrap(),
            Transport::Https {
                ca_cert_sha256: hash,
            },
        );
        let want = format!(
            "# Racklet: EEPROM bootloader config for HTTP boot of a signed boot.img\n[all]\n\
             BOOT_UART=0\nBOOT_ORDER=0xf7\nNET_INSTALL_ENABLED=0\nENABLE_SELF_UPDATE=0\n\
             HTTP_HOST=10.0.0.2\nHTTP_PORT=443\nHTTP_PATH=racklet/stage1\n\
             HTTP_CACERT_HASH={}\nSIGNED_BOOT=1\n",
            "ab".repeat(32)
        );
        assert_eq!(c.bootconf().unwrap(), want);
        assert_eq!(
            c.url("boot.sig"),
            "https://10.0.0.2:443/racklet/stage1/boot.sig"
        );
        let c = EepromConfig {
            port: Some(8443),
            ..c
        };
        assert!(matches!(
            c.bootconf(),
            Err(Error::BadEepromValue {
                key: "HTTP_PORT",
                ..
            })
        ));
    }

    #[test]
    fn bootconf_for_a_pi4_over_plain_http() {
        let c = EepromConfig::signed_http_boot(
            HttpHost::new("bootd.lan").unwrap(),
            HttpPath::new("racklet").unwrap(),
            Transport::PlainHttp,
        );
        let text = c.bootconf().unwrap();
        assert!(text.contains("\nHTTP_PORT=80\n") && !text.contains("HTTP_CACERT_HASH"));
        assert_eq!(c.url("boot.img"), "http://bootd.lan:80/racklet/boot.img");
    }

    #[test]
    fn bootconf_reads_back() {
        for transport in [
            Transport::PlainHttp,
            Transport::Https {
                ca_cert_sha256: [7; 32],
            },
        ] {
            let mut c = EepromConfig::signed_http_boot(
                HttpHost::new("10.197.0.2").unwrap(),
                HttpPath::new("rpi4").unwrap(),
                transport,
            );
            c.port = Some(if transport == Transport::PlainHttp {
                8080
            } else {
                443
            });
            let back = EepromConfig::parse(&c.bootconf().unwrap()).unwrap();
            assert_eq!(back, c);
        }
        let ok = "HTTP_HOST=bootd\nHTTP_PATH=p\nSIGNED_BOOT=1\nUNKNOWN_THING=5\n";
        assert!(EepromConfig::parse(ok).unwrap().signed_boot);
        for (bad, key) in [
            ("SIGNED_BOOT=1\n", "HTTP_HOST"),
            ("HTTP_HOST=a\n", "HTTP_PATH"),
            ("HTTP_HOST=a\nHTTP_HOST=b\n", "HTTP_HOST"),
            (
                "HTTP_HOST=a\nHTTP_PATH=p\nHTTP_CACERT_HASH=abc\n",
                "HTTP_CACERT_HASH",
            ),
            ("HTTP_HOST=a\nHTTP_PATH=p\nHTTP_PORT=0\n", "HTTP_PORT"),
            ("HTTP_HOST=a\nHTTP_PATH=p\nSIGNED_BOOT=yes\n", "SIGNED_BOOT"),
            ("HTTP_HOST=a\nHTTP_PATH=p\nBOOT_ORDER=0xf1\n", "BOOT_ORDER"),
        ] {
            let err = EepromConfig::parse(bad).unwrap_err().to_string();
            assert!(err.contains(key), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ca_cert_slot_limit() {
        assert!(ca_cert_sha256(&[0; 4076]).is_ok());
        assert!(matches!(
            ca_cert_sha256(&[0; 4077]),
            Err(Error::CaCertTooLarge { len: 4077, .. })
        ));
        assert_eq!(
            hex::encode(ca_cert_sha256(b"").unwrap()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
