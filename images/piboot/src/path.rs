//! [`BootPath`]: a validated path inside a `boot.img`.

use std::fmt;

use crate::error::{Error, Result};

/// Longest path accepted, in bytes (FAT allows 255 UTF-16 units per name;
/// firmware file names are short).
pub const MAX_PATH_BYTES: usize = 240;
/// Deepest directory nesting accepted.
pub const MAX_DEPTH: usize = 8;

/// A path of a file inside a `boot.img`: `/`-separated components of
/// ASCII letters, digits and `. _ - + ~`, no empty, `.` or `..` component,
/// no leading dot, no leading or trailing `/`.
///
/// Narrower than what FAT allows, on purpose: these are the names the
/// Raspberry Pi firmware looks for (`start4.elf`, `config.txt`,
/// `bcm2711-rpi-4-b.dtb`, `overlays/…`), and nothing in them can walk out
/// of a directory when the modelled Pi extracts the image.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootPath(String);

impl BootPath {
    /// Validates `path`.
    pub fn new(path: &str) -> Result<Self> {
        let bad = |reason| Error::BadBootPath {
            path: path.to_owned(),
            reason,
        };
        if path.is_empty() {
            return Err(bad("empty"));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(bad("longer than 240 bytes"));
        }
        let components: Vec<&str> = path.split('/').collect();
        if components.len() > MAX_DEPTH {
            return Err(bad("nested deeper than 8 directories"));
        }
        for c in &components {
            if c.is_empty() {
                return Err(bad("empty component (leading, trailing or double '/')"));
            }
            if c.starts_with('.') {
                return Err(bad("a component starts with '.'"));
            }
            if !c.chars().all(is_name_char) {
                return Err(bad("only ASCII letters, digits and . _ - + ~ are allowed"));
            }
        }
        Ok(Self(path.to_owned()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The key FAT compares names by (ASCII case folded).
    pub fn fold(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

fn is_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | '+' | '~')
}

impl fmt::Display for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BootPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TryFrom<&str> for BootPath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_a_table() {
        let cases: &[(&str, bool)] = &[
            ("config.txt", true),
            ("overlays/disable-bt.dtbo", true),
            ("bcm2711-rpi-4-b.dtb", true),
            ("Image", true),
            ("", false),
            ("/config.txt", false),
            ("config.txt/", false),
            ("a//b", false),
            ("..", false),
            ("overlays/../x", false),
            (".hidden", false),
            ("with space", false),
            ("back\\slash", false),
            ("nul\0", false),
            ("ünïcode", false),
            ("a/b/c/d/e/f/g/h", true),
            ("a/b/c/d/e/f/g/h/i", false),
        ];
        for (path, ok) in cases {
            assert_eq!(BootPath::new(path).is_ok(), *ok, "{path:?}");
        }
        assert!(BootPath::new(&"a".repeat(241)).is_err());
    }
}
