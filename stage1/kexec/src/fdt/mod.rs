//! A strict reader and writer of flattened device trees (DTB), Devicetree
//! Specification v0.4 chapter 5, version 17.
//!
//! Why not a crate: the next kernel must get back every node and property
//! of the running tree, byte for byte, with `/chosen` edited. dtoolkit 0.4
//! (the one maintained crate that both reads and writes) refuses names over
//! 31 characters — 319 of the 577 device trees in Debian 12's arm64 kernel
//! package have one (`snps,dis-del-phy-power-chg-quirk`,
//! `interrupt-controller@400,d0080000`, …), and dtc and the kernel take
//! them — and always writes `boot_cpuid_phys` as 0; `fdt`,
//! `flat_device_tree` and `fdt-rs` only read, `vm-fdt` only writes. The
//! format is small, so this module reads it into a [`DeviceTree`], refuses
//! anything malformed with a typed [`Error`] (never a panic:
//! [`crate::fuzz::device_tree`] states that), and writes it back packed.
//! All 577 of those trees read and write back equal
//! (`tests/fdt.rs`, `RACKLET_DTB_DIR`).
//!
//! ## Header (all fields big-endian u32)
//!
//! | offset | field | checked |
//! |---|---|---|
//! | 0x00 | magic `0xd00dfeed` | equal |
//! | 0x04 | totalsize | ≤ the bytes given; the rest is ignored |
//! | 0x08 | off_dt_struct | 4-aligned, block inside totalsize |
//! | 0x0c | off_dt_strings | block inside totalsize |
//! | 0x10 | off_mem_rsvmap | 8-aligned, ≥ 0x28 |
//! | 0x14 | version | ≥ 17 |
//! | 0x18 | last_comp_version | ≤ 17 |
//! | 0x1c | boot_cpuid_phys | kept |
//! | 0x20 | size_dt_strings | |
//! | 0x24 | size_dt_struct | |
//!
//! The memory reservation block is (address, size) big-endian u64 pairs
//! ending with (0, 0). The structure block is big-endian u32 tokens:
//! `BEGIN_NODE` (1) + NUL-terminated name padded to 4, `END_NODE` (2),
//! `PROP` (3) + len + nameoff + value padded to 4, `NOP` (4, skipped: the
//! kernel NOPs `rng-seed` out after using it), `END` (9).
//!
//! Refused beyond the layout: a first node that is not the unnamed root,
//! properties after a child node, two properties or two children of one
//! node with the same name, names that are empty or not printable ASCII,
//! node names with `/`, nesting deeper than 64 (the kernel's limit).

mod write;

use std::collections::HashSet;

/// The DTB magic.
pub const MAGIC: u32 = 0xd00d_feed;
/// Header length of version 17.
pub const HEADER_LEN: usize = 0x28;
/// Deepest nesting accepted (the kernel's `FDT_MAX_DEPTH`).
pub const MAX_DEPTH: usize = 64;

pub(crate) const BEGIN_NODE: u32 = 1;
pub(crate) const END_NODE: u32 = 2;
pub(crate) const PROP: u32 = 3;
const NOP: u32 = 4;
pub(crate) const END: u32 = 9;

/// Why a device tree blob was refused. `offset` is from the blob's start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the header or `totalsize` says.
    #[error("device tree truncated: {len} bytes, needs {need}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Not `0xd00dfeed`.
    #[error("not a device tree: magic {found:#010x}")]
    BadMagic {
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// A version this reader does not speak.
    #[error("device tree version {version} (last compatible {last_comp}) is not 17")]
    UnsupportedVersion {
        /// `version`.
        version: u32,
        /// `last_comp_version`.
        last_comp: u32,
    },
    /// A header offset or size that is misaligned or points outside.
    #[error("device tree header: {field} is misaligned or out of bounds")]
    BadHeader {
        /// The header field.
        field: &'static str,
    },
    /// The reservation block has no (0, 0) terminator before its end, or
    /// an entry whose end overflows.
    #[error("device tree memory reservation block at {offset:#x} is malformed")]
    BadReservation {
        /// Offset of the entry.
        offset: usize,
    },
    /// A token that does not belong where it is.
    #[error("device tree token {token:#x} unexpected at {offset:#x}")]
    UnexpectedToken {
        /// The token.
        token: u32,
        /// Its offset.
        offset: usize,
    },
    /// The structure block ends inside a token, name or value.
    #[error("device tree structure block ends inside the item at {offset:#x}")]
    StructTruncated {
        /// Offset of the item.
        offset: usize,
    },
    /// A property name offset outside the strings block, or unterminated.
    #[error(
        "device tree property at {offset:#x}: name offset {nameoff:#x} is outside the strings"
    )]
    BadNameOffset {
        /// Offset of the property.
        offset: usize,
        /// Its `nameoff`.
        nameoff: u32,
    },
    /// An empty, non-ASCII or otherwise unusable node or property name.
    #[error("device tree item at {offset:#x}: bad name {name:?}")]
    BadName {
        /// Offset of the node or property.
        offset: usize,
        /// The name (lossy).
        name: String,
    },
    /// A property after a child node, in the same node.
    #[error("device tree property {name:?} at {offset:#x} comes after a child node")]
    PropertyAfterChild {
        /// Offset of the property.
        offset: usize,
        /// Its name.
        name: String,
    },
    /// Two properties, or two children, of one node share a name.
    #[error("device tree item {name:?} at {offset:#x} duplicates a sibling")]
    Duplicate {
        /// Offset of the second one.
        offset: usize,
        /// The name.
        name: String,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("device tree nested deeper than {MAX_DEPTH} at {offset:#x}")]
    TooDeep {
        /// Offset of the node.
        offset: usize,
    },
    /// A tree too big to write (a length over `u32::MAX`).
    #[error("device tree too big to write")]
    TooBig,
}

/// A `/memreserve/` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Physical address.
    pub address: u64,
    /// Length in bytes.
    pub size: u64,
}

/// A property: a name and raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// Name (printable ASCII).
    pub name: String,
    /// Value as stored.
    pub value: Vec<u8>,
}

/// A node: name (with unit address), properties, then children, in order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    /// Name (empty for the root).
    pub name: String,
    /// Properties, in blob order.
    pub properties: Vec<Property>,
    /// Children, in blob order.
    pub children: Vec<Node>,
}

impl Node {
    /// A node with no properties or children.
    pub fn new(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            ..Node::default()
        }
    }

    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&[u8]> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_slice())
    }

    /// A big-endian u32 property (one cell).
    pub fn property_u32(&self, name: &str) -> Option<u32> {
        let v: [u8; 4] = self.property(name)?.try_into().ok()?;
        Some(u32::from_be_bytes(v))
    }

    /// Sets `name` to `value`, in place if it exists, else appended.
    pub fn set_property(&mut self, name: &str, value: Vec<u8>) {
        match self.properties.iter_mut().find(|p| p.name == name) {
            Some(p) => p.value = value,
            None => self.properties.push(Property {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// Removes property `name`; returns its value if it was there.
    pub fn remove_property(&mut self, name: &str) -> Option<Vec<u8>> {
        let i = self.properties.iter().position(|p| p.name == name)?;
        Some(self.properties.remove(i).value)
    }

    /// The child called exactly `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The child called `name`, appended empty if missing.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Node {
        let i = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.children.push(Node::new(name));
                self.children.len() - 1
            }
        };
        &mut self.children[i]
    }
}

/// A whole device tree.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeviceTree {
    /// `boot_cpuid_phys` from the header.
    pub boot_cpuid_phys: u32,
    /// The `/memreserve/` entries, in order, without the terminator.
    pub reservations: Vec<Reservation>,
    /// The root node.
    pub root: Node,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

pub(crate) fn pad4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// A name is 1.. printable ASCII characters; node names have no `/`.
pub(crate) fn name_ok(name: &[u8], node: bool) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_graphic() && !(node && b == b'/'))
}

/// Reads a NUL-terminated name at `at`, not past `end`.
fn cstr(b: &[u8], at: usize, end: usize) -> Option<&[u8]> {
    let s = b.get(at..end)?;
    let n = s.iter().position(|&c| c == 0)?;
    Some(&s[..n])
}

impl DeviceTree {
    /// Parses a blob (see the module doc for what is refused).
    pub fn parse(blob: &[u8]) -> Result<DeviceTree, Error> {
        let field = |at: usize| be32(blob, at).unwrap_or(0) as usize;
        if blob.len() < HEADER_LEN {
            let found = be32(blob, 0).unwrap_or(0);
            if blob.len() >= 4 && found != MAGIC {
                return Err(Error::BadMagic { found });
            }
            return Err(Error::Truncated {
                len: blob.len(),
                need: HEADER_LEN,
            });
        }
        let magic = field(0) as u32;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        let total = field(0x04);
        if total > blob.len() || total < HEADER_LEN {
            return Err(Error::Truncated {
                len: blob.len(),
                need: total.max(HEADER_LEN),
            });
        }
        let b = &blob[..total];
        let (version, last_comp) = (field(0x14) as u32, field(0x18) as u32);
        if version < 17 || last_comp > 17 {
            return Err(Error::UnsupportedVersion { version, last_comp });
        }
        let (off_struct, off_strings, off_rsv) = (field(0x08), field(0x0c), field(0x10));
        let (size_strings, size_struct) = (field(0x20), field(0x24));
        let within = |off: usize, size: usize| off.checked_add(size).is_some_and(|e| e <= total);
        if off_rsv % 8 != 0 || off_rsv < HEADER_LEN || off_rsv >= total {
            return Err(Error::BadHeader {
                field: "off_mem_rsvmap",
            });
        }
        if off_struct % 4 != 0 || off_struct < HEADER_LEN || !within(off_struct, size_struct) {
            return Err(Error::BadHeader {
                field: "off_dt_struct",
            });
        }
        if off_strings < HEADER_LEN || !within(off_strings, size_strings) {
            return Err(Error::BadHeader {
                field: "off_dt_strings",
            });
        }
        let strings = &b[off_strings..off_strings + size_strings];
        let reservations = read_reservations(b, off_rsv, [off_struct, off_strings, total])?;
        let root = read_struct(b, off_struct, off_struct + size_struct, strings)?;
        Ok(DeviceTree {
            boot_cpuid_phys: field(0x1c) as u32,
            reservations,
            root,
        })
    }
}

fn read_reservations(b: &[u8], start: usize, ends: [usize; 3]) -> Result<Vec<Reservation>, Error> {
    // The block runs to the next block after it.
    let end = ends
        .into_iter()
        .filter(|&e| e > start)
        .min()
        .unwrap_or(b.len());
    let mut out = Vec::new();
    let mut at = start;
    loop {
        let bad = Error::BadReservation { offset: at };
        if at + 16 > end {
            return Err(bad);
        }
        let (address, size) = (
            be64(b, at).ok_or(bad.clone())?,
            be64(b, at + 8).ok_or(bad.clone())?,
        );
        if address == 0 && size == 0 {
            return Ok(out);
        }
        if address.checked_add(size).is_none() {
            return Err(bad);
        }
        out.push(Reservation { address, size });
        at += 16;
    }
}

/// A node being read, with the names seen so far (so that a node with
/// many children costs linear time, not quadratic).
struct Frame {
    node: Node,
    names: HashSet<String>,
    props: HashSet<String>,
}

/// Reads the structure block `[start, end)` into the root node; iterative,
/// so a hostile depth cannot overflow the stack.
fn read_struct(b: &[u8], start: usize, end: usize, strings: &[u8]) -> Result<Node, Error> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut at = start;
    loop {
        let token = match be32(b, at) {
            Some(t) if at + 4 <= end => t,
            _ => return Err(Error::StructTruncated { offset: at }),
        };
        let item = at;
        at += 4;
        match token {
            NOP => {}
            BEGIN_NODE => {
                let name = cstr(b, at, end).ok_or(Error::StructTruncated { offset: item })?;
                at = pad4(at + name.len() + 1).ok_or(Error::StructTruncated { offset: item })?;
                let root = stack.is_empty();
                let name_s = String::from_utf8_lossy(name).into_owned();
                if root != name.is_empty() || (!root && !name_ok(name, true)) {
                    return Err(Error::BadName {
                        offset: item,
                        name: name_s,
                    });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::TooDeep { offset: item });
                }
                if let Some(parent) = stack.last_mut() {
                    if !parent.names.insert(name_s.clone()) {
                        return Err(Error::Duplicate {
                            offset: item,
                            name: name_s,
                        });
                    }
                }
                stack.push(Frame {
                    node: Node::new(&name_s),
                    names: HashSet::new(),
                    props: HashSet::new(),
                });
            }
            END_NODE => {
                let frame = stack.pop().ok_or(Error::UnexpectedToken {
                    token,
                    offset: item,
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.node.children.push(frame.node),
                    None => {
                        return match next_token(b, at, end) {
                            Some((END, _)) => Ok(frame.node),
                            Some((t, o)) => Err(Error::UnexpectedToken {
                                token: t,
                                offset: o,
                            }),
                            None => Err(Error::StructTruncated { offset: at }),
                        };
                    }
                }
            }
            PROP => {
                let frame = stack.last_mut().ok_or(Error::UnexpectedToken {
                    token,
                    offset: item,
                })?;
                let trunc = Error::StructTruncated { offset: item };
                let (len, nameoff) = (
                    be32(b, at).ok_or(trunc.clone())? as usize,
                    be32(b, at + 4).ok_or(trunc.clone())?,
                );
                let vstart = at + 8;
                let vend = vstart
                    .checked_add(len)
                    .filter(|&e| e <= end)
                    .ok_or(trunc.clone())?;
                at = pad4(vend).ok_or(trunc)?;
                let name =
                    cstr(strings, nameoff as usize, strings.len()).ok_or(Error::BadNameOffset {
                        offset: item,
                        nameoff,
                    })?;
                let name_s = String::from_utf8_lossy(name).into_owned();
                if !name_ok(name, false) {
                    return Err(Error::BadName {
                        offset: item,
                        name: name_s,
                    });
                }
                if !frame.node.children.is_empty() {
                    return Err(Error::PropertyAfterChild {
                        offset: item,
                        name: name_s,
                    });
                }
                if !frame.props.insert(name_s.clone()) {
                    return Err(Error::Duplicate {
                        offset: item,
                        name: name_s,
                    });
                }
                frame.node.properties.push(Property {
                    name: name_s,
                    value: b[vstart..vend].to_vec(),
                });
            }
            _ => {
                return Err(Error::UnexpectedToken {
                    token,
                    offset: item,
                })
            }
        }
    }
}

/// The first token at or after `at` that is not a NOP.
fn next_token(b: &[u8], mut at: usize, end: usize) -> Option<(u32, usize)> {
    while at + 4 <= end {
        match be32(b, at)? {
            NOP => at += 4,
            t => return Some((t, at)),
        }
    }
    None
}
