//! Why a slot header copy, a slot record or a slot transition is refused.

use racklet_bmc_proto::Slot;

use super::header::{Geometry, SlotStatus, HEADER_LEN};

/// A slot transition that would break an invariant (refused before
/// anything reaches the disk).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Transition {
    /// Marking valid, or writing, a slot that was not invalidated first.
    #[error("slot {slot:?} is {status:?}, not being written (invalidate it first)")]
    NotWriting {
        /// The slot.
        slot: Slot,
        /// What it is instead.
        status: SlotStatus,
    },
    /// Activating, or failing, a slot that is not valid.
    #[error("slot {slot:?} is {status:?}; only a valid slot becomes active or fails")]
    NotValid {
        /// The slot.
        slot: Slot,
        /// What it is instead.
        status: SlotStatus,
    },
    /// A commit that moves the slots.
    #[error("the geometry never changes")]
    Geometry,
    /// A commit whose active slot is not valid.
    #[error("active slot {0:?} is not valid")]
    ActiveNotValid(Slot),
}

/// Why one header copy is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("truncated: {len} of {HEADER_LEN} bytes")]
    Truncated {
        /// Bytes there were.
        len: usize,
    },
    /// Not [`MAGIC`](super::MAGIC).
    #[error("bad magic (not a Racklet slot header)")]
    BadMagic,
    /// The CRC does not match.
    #[error("CRC mismatch: stored {stored:08x}, computed {computed:08x} (torn or corrupted)")]
    Crc {
        /// The CRC in the copy.
        stored: u32,
        /// The CRC of its bytes.
        computed: u32,
    },
    /// A format version this stage1 does not know.
    #[error("unknown format version {0}")]
    FormatVersion(u32),
    /// A header length other than [`HEADER_LEN`].
    #[error("header length {0} is not {HEADER_LEN}")]
    HeaderLength(u32),
    /// Slots that overlap the headers, each other, or the address space.
    #[error("impossible geometry {0:?}")]
    Geometry(Geometry),
    /// An active-slot byte that is neither a slot nor `0xFF`.
    #[error("bad active slot byte {0:#x}")]
    ActiveByte(u8),
    /// Reserved bytes that are not zero.
    #[error("reserved bytes {start}..{end} are not zero")]
    Reserved {
        /// First byte.
        start: usize,
        /// One past the last.
        end: usize,
    },
    /// A slot record that does not decode.
    #[error("slot {slot:?} record: {problem}")]
    Record {
        /// Whose record.
        slot: Slot,
        /// What is wrong with it.
        problem: RecordError,
    },
    /// The active slot's record is not valid.
    #[error("active slot {0:?} is not valid")]
    ActiveNotValid(Slot),
    /// The disk ends before this copy does.
    #[error("truncated: disk ends at {len}, copy needs {need}")]
    CopyPastEnd {
        /// Disk length.
        len: u64,
        /// Where the copy ends.
        need: u64,
    },
    /// The disk ends before the slots this copy describes.
    #[error("slots end at {end} but the disk at {len} (truncated disk)")]
    SlotsPastEnd {
        /// Where slot B ends.
        end: u64,
        /// Disk length.
        len: u64,
    },
    /// Reading the copy failed (the I/O error's text).
    #[error("read error: {0}")]
    Read(String),
}

/// Why one slot record is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A status byte that is no [`SlotStatus`].
    #[error("bad status {0}")]
    Status(u8),
    /// An empty record with bytes set.
    #[error("empty record is not all zero")]
    EmptyNotZero,
    /// A name or version length out of range.
    #[error("bad name/version length {name}/{version}")]
    Lengths {
        /// Name length.
        name: usize,
        /// Version length.
        version: usize,
    },
    /// Padding that is not zero.
    #[error("non-zero padding")]
    Padding,
    /// A name that is not a valid target name.
    #[error("bad target name")]
    Name,
    /// A version that is not semver.
    #[error("bad version")]
    Version,
    /// An image longer than the slot.
    #[error("length {length} over slot capacity {capacity}")]
    Length {
        /// Image length.
        length: u64,
        /// Slot capacity.
        capacity: u64,
    },
    /// A security version wider than 32 bits.
    #[error("security_version {0} over 32 bits")]
    SecurityVersion(u64),
}
