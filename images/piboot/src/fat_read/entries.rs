//! Directory entries: 8.3 names, VFAT long names, and the name rules a
//! modelled Pi relies on when it extracts files (see the parent module's
//! byte table).

use super::{le16, le32, FatProblem};

/// A live entry of a directory, long name resolved.
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) is_dir: bool,
    pub(super) first_cluster: u32,
    pub(super) size: u64,
}

/// Parses the 32-byte entries of one directory. `sub` is true for a
/// subdirectory, whose `.` and `..` entries are skipped; the high half of
/// the first cluster counts on FAT32 only.
pub(super) fn parse_directory(
    bytes: &[u8],
    sub: bool,
    fat32: bool,
) -> std::result::Result<Vec<Entry>, FatProblem> {
    let mut out = Vec::new();
    let mut lfn = LongName::default();
    for raw in bytes.chunks_exact(32) {
        match raw[0] {
            0x00 => break,
            0xE5 => {
                lfn.reset();
                continue;
            }
            _ => {}
        }
        let attr = raw[11];
        if attr & 0x3F == 0x0F {
            lfn.push(raw)?;
            continue;
        }
        let short = &raw[..11];
        if sub && (short == b".          " || short == b"..         ") {
            if lfn.active() {
                return Err(FatProblem::Entry("a long name on a '.' or '..' entry"));
            }
            continue;
        }
        if attr & 0x08 != 0 {
            if lfn.active() {
                return Err(FatProblem::Entry("a long name on a volume label"));
            }
            continue;
        }
        let name = match lfn.finish(short)? {
            Some(long) => long,
            None => short_name(short, raw[12])?,
        };
        check_name(&name)?;
        out.push(Entry {
            name,
            is_dir: attr & 0x10 != 0,
            first_cluster: (if fat32 { le16(raw, 20) << 16 } else { 0 }) | le16(raw, 26),
            size: u64::from(le32(raw, 28)),
        });
    }
    if lfn.active() {
        return Err(FatProblem::Entry("a long name with no 8.3 entry after it"));
    }
    Ok(out)
}

fn short_name(raw: &[u8], case: u8) -> std::result::Result<String, FatProblem> {
    let mut base = raw[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5;
    }
    if raw.iter().any(|b| !(0x20..0x7F).contains(b)) {
        return Err(FatProblem::Entry("an 8.3 name that is not printable ASCII"));
    }
    let fold = |bytes: &[u8], lower: bool| {
        let s = String::from_utf8_lossy(bytes)
            .trim_end_matches(' ')
            .to_owned();
        if lower {
            s.to_ascii_lowercase()
        } else {
            s
        }
    };
    let base = fold(&base, case & 0x08 != 0);
    let ext = fold(&raw[8..11], case & 0x10 != 0);
    Ok(if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    })
}

/// A name must be something a modelled Pi can write into a directory of
/// its own: no separators, no control characters, not `.` or `..`.
fn check_name(name: &str) -> std::result::Result<(), FatProblem> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(FatProblem::Entry("an empty, '.' or '..' name"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'))
    {
        return Err(FatProblem::Entry(
            "a name with a control character or a separator",
        ));
    }
    Ok(())
}

/// Long-name parts collected so far (they come last part first).
#[derive(Default)]
struct LongName {
    parts: Vec<[u16; 13]>,
    expected: u8,
    checksum: u8,
}

impl LongName {
    fn active(&self) -> bool {
        !self.parts.is_empty()
    }

    fn reset(&mut self) {
        self.parts.clear();
        self.expected = 0;
    }

    fn push(&mut self, raw: &[u8]) -> std::result::Result<(), FatProblem> {
        let ord = raw[0];
        let seq = ord & 0x1F;
        if raw[12] != 0 || le16(raw, 26) != 0 || seq == 0 || ord & 0xA0 != 0 {
            return Err(FatProblem::Entry("a malformed long-name part"));
        }
        if ord & 0x40 != 0 {
            if self.active() {
                return Err(FatProblem::Entry(
                    "a long name that starts again before it ended",
                ));
            }
            self.expected = seq;
            self.checksum = raw[13];
        } else if !self.active() || seq != self.expected || raw[13] != self.checksum {
            return Err(FatProblem::Entry("long-name parts out of order"));
        }
        let mut units = [0u16; 13];
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (u, at) in units.iter_mut().zip(offsets) {
            *u = u16::from_le_bytes([raw[at], raw[at + 1]]);
        }
        self.parts.push(units);
        self.expected = seq - 1;
        Ok(())
    }

    /// The long name that ends on the 8.3 entry `short`, if one was collected.
    fn finish(&mut self, short: &[u8]) -> std::result::Result<Option<String>, FatProblem> {
        if !self.active() {
            return Ok(None);
        }
        let sum = short
            .iter()
            .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
        if self.expected != 0 || sum != self.checksum {
            return Err(FatProblem::Entry(
                "a long name whose checksum or length does not match its 8.3 entry",
            ));
        }
        let units: Vec<u16> = self
            .parts
            .iter()
            .rev()
            .flatten()
            .copied()
            .take_while(|&u| u != 0)
            .collect();
        self.reset();
        String::from_utf16(&units)
            .map(Some)
            .map_err(|_| FatProblem::Entry("a long name that is not valid UTF-16"))
    }
}
