//! The running system's RAM, as `/proc/iomem` tells it, and what of it the
//! next kernel's segments may be written over.
//!
//! `/proc/iomem` is the kernel's resource tree, one resource a line,
//! children indented two spaces per level, addresses in hex, end inclusive:
//!
//! ```text
//! 40000000-5fffffff : System RAM
//!   40210000-4185ffff : Kernel code
//!   41860000-41eaffff : reserved
//!   41eb0000-4220ffff : Kernel data
//! 5c440000-5c72ffff : reserved
//! ```
//!
//! Usable RAM is every top-level `System RAM` range minus every resource
//! nested in it, except `Kernel code` and `Kernel data` — the running kernel,
//! which is gone once the next one starts (kexec-tools,
//! `kexec/arch/arm64/kexec-arm64.c` `to_be_excluded`, makes the same cut).
//! The rule is an allow-list: a child we do not know (`reserved` — memblock
//! reservations such as the UEFI memory map, the firmware's DTB, the old
//! initrd —, `Crash kernel`, anything new) is never written over.
//!
//! `/sys/firmware/memmap` is not used: arm64 kernels do not populate it (it
//! is absent on all three recorded QEMU `virt` boots, `tests/data/`).
//!
//! Reading `/proc/iomem` without `CAP_SYS_ADMIN` shows every address as 0;
//! that is refused ([`Error::AddressesHidden`]) rather than read as "no RAM".

use std::fmt;

/// A physical address range `[start, end)`; never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    start: u64,
    end: u64,
}

impl PhysRange {
    /// All of the address space but its last byte.
    pub const ALL: PhysRange = PhysRange {
        start: 0,
        end: u64::MAX,
    };

    /// `[start, end)`, or `None` if it would be empty.
    pub fn new(start: u64, end: u64) -> Option<PhysRange> {
        (start < end).then_some(PhysRange { start, end })
    }

    /// `len` bytes from `start`, or `None` if empty or past the address space.
    pub fn at(start: u64, len: u64) -> Option<PhysRange> {
        PhysRange::new(start, start.checked_add(len)?)
    }

    /// First byte.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: a `PhysRange` is never empty (kept for clippy's sake).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True if `other` lies entirely inside `self`.
    pub fn contains(&self, other: &PhysRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// True if the two share at least one byte.
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end - 1)
    }
}

/// Why `/proc/iomem` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line that is not `START-END : NAME` (hex, start ≤ end).
    #[error("/proc/iomem line {line}: not `START-END : NAME`: {text:?}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// The line as read.
        text: String,
    },
    /// A line indented deeper than one level below the previous one.
    #[error("/proc/iomem line {line}: indented {depth} levels, under a line of level {parent}")]
    Indent {
        /// 1-based line number.
        line: usize,
        /// Its depth (two spaces per level).
        depth: usize,
        /// The previous line's depth.
        parent: usize,
    },
    /// A child resource that does not lie inside its parent.
    #[error("/proc/iomem line {line}: {child} lies outside its parent {parent}")]
    OutsideParent {
        /// 1-based line number.
        line: usize,
        /// The child's range.
        child: PhysRange,
        /// The parent's range.
        parent: PhysRange,
    },
    /// Every address reads 0: the file was read without `CAP_SYS_ADMIN`.
    #[error("/proc/iomem shows every address as 0 (read it as root)")]
    AddressesHidden,
    /// No top-level `System RAM` at all.
    #[error("/proc/iomem lists no System RAM")]
    NoSystemRam,
}

/// One `/proc/iomem` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IomemEntry {
    /// Nesting level (0 = top).
    pub depth: usize,
    /// The range (the file's end is inclusive; this one is not).
    pub range: PhysRange,
    /// What the kernel calls it (`System RAM`, `reserved`, `Kernel code`, …).
    pub name: String,
}

/// Parses `/proc/iomem`. Blank lines are skipped; everything else must be
/// a well-formed, properly nested resource.
pub fn parse_iomem(text: &str) -> Result<Vec<IomemEntry>, Error> {
    let mut out: Vec<IomemEntry> = Vec::new();
    // The ranges of the open ancestors of the next line, outermost first.
    let mut stack: Vec<PhysRange> = Vec::new();
    let mut all_zero = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let bad = || Error::Line {
            line,
            text: raw.to_owned(),
        };
        let body = raw.trim_start_matches(' ');
        let indent = raw.len() - body.len();
        if indent % 2 != 0 {
            return Err(bad());
        }
        let depth = indent / 2;
        let (span, name) = body.split_once(" : ").ok_or_else(bad)?;
        let (s, e) = span.split_once('-').ok_or_else(bad)?;
        let hex = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u64::from_str_radix(t, 16).ok()
            }
        };
        let (start, last) = (hex(s).ok_or_else(bad)?, hex(e).ok_or_else(bad)?);
        all_zero &= start == 0 && last == 0;
        let range = PhysRange::new(start, last.checked_add(1).ok_or_else(bad)?).ok_or_else(bad)?;
        if depth > stack.len() {
            return Err(Error::Indent {
                line,
                depth,
                parent: stack.len().saturating_sub(1),
            });
        }
        stack.truncate(depth);
        if let Some(parent) = stack.last() {
            if !parent.contains(&range) {
                return Err(Error::OutsideParent {
                    line,
                    child: range,
                    parent: *parent,
                });
            }
        }
        stack.push(range);
        out.push(IomemEntry {
            depth,
            range,
            name: name.trim_end().to_owned(),
        });
    }
    if all_zero && !out.is_empty() {
        return Err(Error::AddressesHidden);
    }
    Ok(out)
}

/// Children of `System RAM` that may be written over: the running kernel.
const REUSABLE_CHILDREN: [&str; 2] = ["Kernel code", "Kernel data"];

/// RAM the next kernel's segments may occupy: sorted, disjoint, merged.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemoryMap {
    free: Vec<PhysRange>,
    managed_estimate: u64,
}

impl MemoryMap {
    /// Usable RAM from parsed `/proc/iomem` lines (see the module doc).
    pub fn from_iomem(entries: &[IomemEntry]) -> Result<MemoryMap, Error> {
        let mut map = MemoryMap::default();
        let mut in_ram = false;
        let mut excluded = Vec::new();
        let mut all_children = 0u64;
        for e in entries {
            if e.depth == 0 {
                in_ram = e.name == "System RAM";
                if in_ram {
                    map.free.push(e.range);
                }
            } else if in_ram {
                if e.depth == 1 {
                    all_children += e.range.len();
                }
                if !REUSABLE_CHILDREN.contains(&e.name.as_str()) {
                    excluded.push(e.range);
                }
            }
        }
        if map.free.is_empty() {
            return Err(Error::NoSystemRam);
        }
        map.normalize();
        let total = map.total();
        for r in excluded {
            map.exclude(r);
        }
        map.managed_estimate = total.saturating_sub(all_children);
        Ok(map)
    }

    /// A map of exactly these ranges (for tests and callers with their own
    /// source of RAM); the kernel's own memory is taken as none of it.
    pub fn from_ranges(ranges: &[PhysRange]) -> MemoryMap {
        let mut map = MemoryMap {
            free: ranges.to_vec(),
            managed_estimate: 0,
        };
        map.normalize();
        map.managed_estimate = map.total();
        map
    }

    fn normalize(&mut self) {
        self.free.sort();
        let mut merged: Vec<PhysRange> = Vec::with_capacity(self.free.len());
        for r in self.free.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        self.free = merged;
    }

    /// Removes `r` from the usable RAM.
    pub fn exclude(&mut self, r: PhysRange) {
        let mut out = Vec::with_capacity(self.free.len() + 1);
        for f in &self.free {
            if !f.overlaps(&r) {
                out.push(*f);
                continue;
            }
            if let Some(left) = PhysRange::new(f.start, r.start) {
                out.push(left);
            }
            if let Some(right) = PhysRange::new(r.end, f.end) {
                out.push(right);
            }
        }
        self.free = out;
    }

    /// The usable ranges, ascending.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.free
    }

    /// Bytes of usable RAM.
    pub fn total(&self) -> u64 {
        self.free.iter().map(PhysRange::len).sum()
    }

    /// `System RAM` minus everything nested in it, as it was when the map
    /// was read: about what the kernel counts as `totalram_pages`, which
    /// bounds a `kexec_load` to half of it.
    pub fn managed_estimate(&self) -> u64 {
        self.managed_estimate
    }

    /// The lowest range of `len` bytes that starts at `base + offset` for
    /// an `align`-aligned `base` (`align` a power of two), at or above
    /// `floor`, inside one usable range and inside `within`.
    pub fn first_fit(
        &self,
        len: u64,
        align: u64,
        offset: u64,
        floor: u64,
        within: PhysRange,
    ) -> Option<PhysRange> {
        debug_assert!(align.is_power_of_two());
        for f in &self.free {
            let lo = f.start.max(floor).max(within.start);
            let hi = f.end.min(within.end);
            if lo >= hi {
                continue;
            }
            // base + offset >= lo with base aligned: when lo < offset, base 0.
            let base = align_up(lo.saturating_sub(offset), align)?;
            let r = PhysRange::at(base.checked_add(offset)?, len)?;
            if r.end <= hi {
                return Some(r);
            }
        }
        None
    }
}

/// `v` rounded up to a multiple of `align` (a power of two), if it fits.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// `v` rounded down to a multiple of `align` (a power of two).
pub fn align_down(v: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    v & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> PhysRange {
        PhysRange::new(s, e).unwrap()
    }

    #[test]
    fn refusals() {
        type Check = fn(&Error) -> bool;
        let cases: &[(&str, Check)] = &[
            ("40000000 : System RAM", |e| {
                matches!(e, Error::Line { line: 1, .. })
            }),
            ("4000000g-5fffffff : System RAM", |e| {
                matches!(e, Error::Line { .. })
            }),
            ("50000000-4fffffff : System RAM", |e| {
                matches!(e, Error::Line { .. })
            }),
            ("0-ffffffffffffffff : all", |e| {
                matches!(e, Error::Line { .. })
            }),
            (" 0-1 : odd", |e| matches!(e, Error::Line { .. })),
            ("0-ff : a\n    10-1f : b", |e| {
                matches!(
                    e,
                    Error::Indent {
                        line: 2,
                        depth: 2,
                        ..
                    }
                )
            }),
            ("0-ff : a\n  f0-1ff : b", |e| {
                matches!(e, Error::OutsideParent { line: 2, .. })
            }),
            (
                "00000000-00000000 : System RAM\n  00000000-00000000 : reserved",
                |e| matches!(e, Error::AddressesHidden),
            ),
        ];
        for (text, want) in cases {
            let err = parse_iomem(text).unwrap_err();
            assert!(want(&err), "{text:?}: {err:?}");
        }
        let no_ram = parse_iomem("09000000-09000fff : pl011@9000000").unwrap();
        assert_eq!(MemoryMap::from_iomem(&no_ram), Err(Error::NoSystemRam));
    }

    #[test]
    fn cuts_every_child_but_the_running_kernel() {
        let text = "40000000-4fffffff : System RAM\n  40200000-403fffff : Kernel code\n  \
                    40400000-404fffff : Kernel data\n  48000000-48000fff : reserved\n    \
                    48000000-480000ff : nested\n  4c000000-4cffffff : Crash kernel\n\
                    50000000-50ffffff : reserved\n";
        let map = MemoryMap::from_iomem(&parse_iomem(text).unwrap()).unwrap();
        assert_eq!(
            map.ranges(),
            [
                r(0x4000_0000, 0x4800_0000),
                r(0x4800_1000, 0x4c00_0000),
                r(0x4d00_0000, 0x5000_0000)
            ]
        );
        assert_eq!(
            map.managed_estimate(),
            0x1000_0000 - 0x30_0000 - 0x1000 - 0x100_0000
        );
    }

    #[test]
    fn first_fit_table() {
        let map = MemoryMap::from_ranges(&[r(0x1000, 0x3000), r(0x20_0000, 0x60_0000)]);
        let all = r(0, u64::MAX);
        // (len, align, offset, floor, want start)
        let cases = [
            (0x1000, 0x1000, 0, 0, Some(0x1000)),
            (0x2000, 0x1000, 0, 0, Some(0x1000)),
            (0x3000, 0x1000, 0, 0, Some(0x20_0000)),
            (0x1000, 0x1000, 0, 0x2000, Some(0x2000)),
            (0x1000, 0x20_0000, 0x8_0000, 0, Some(0x28_0000)),
            (0x40_0000, 0x20_0000, 0, 0, Some(0x20_0000)),
            (0x40_0000, 0x20_0000, 0x1000, 0, None),
            (0x1000, 0x1000, 0, 0x60_0000, None),
        ];
        for (len, align, offset, floor, want) in cases {
            let got = map
                .first_fit(len, align, offset, floor, all)
                .map(|r| r.start());
            assert_eq!(
                got, want,
                "len {len:#x} align {align:#x} offset {offset:#x} floor {floor:#x}"
            );
        }
        assert_eq!(
            map.first_fit(0x1000, 0x1000, 0, 0, r(0x30_0000, 0x30_1000))
                .map(|r| r.start()),
            Some(0x30_0000)
        );
    }
}
