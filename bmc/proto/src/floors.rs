//! The TUF metadata version floors a BMC keeps for its node (issue 14,
//! item 1): the newest version of each top-level role stage1 has trusted.
//! A node whose trusted state does not survive a reboot (no state area on
//! its disk, or one wiped) starts every boot from the root pinned in its
//! image; these floors, in BMC flash, still refuse metadata a replaying
//! server sends from before what the node last trusted.

use crate::Error;

/// A top-level TUF role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TufRole {
    /// `root.json` (wire 0).
    Root,
    /// `timestamp.json` (wire 1).
    Timestamp,
    /// `snapshot.json` (wire 2).
    Snapshot,
    /// `targets.json` (wire 3).
    Targets,
}

impl TufRole {
    /// Number of roles.
    pub const COUNT: usize = 4;
    /// Every role, in wire order.
    pub const ALL: [TufRole; TufRole::COUNT] = [
        TufRole::Root,
        TufRole::Timestamp,
        TufRole::Snapshot,
        TufRole::Targets,
    ];

    /// The wire value, also the index into [`TufFloors`].
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// Parses a wire value.
    pub fn from_byte(b: u8) -> Result<TufRole, Error> {
        TufRole::ALL
            .get(usize::from(b))
            .copied()
            .ok_or(Error::OutOfRange {
                field: "TUF role",
                value: b.into(),
            })
    }

    /// The role's name as TUF spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            TufRole::Root => "root",
            TufRole::Timestamp => "timestamp",
            TufRole::Snapshot => "snapshot",
            TufRole::Targets => "targets",
        }
    }
}

impl core::fmt::Display for TufRole {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The newest trusted version of each role, `0` where none was kept yet.
/// Versions above `u32::MAX` are kept as `u32::MAX`: a floor may be lower
/// than what was trusted, never higher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TufFloors(pub [u32; TufRole::COUNT]);

impl TufFloors {
    /// Length of the wire form.
    pub const LEN: usize = 4 * TufRole::COUNT;

    /// The floor of `role`.
    pub fn get(&self, role: TufRole) -> u32 {
        self.0[usize::from(role.to_byte())]
    }

    /// Raises the floor of `role` to `version`; never lowers it. Returns
    /// true when it rose.
    pub fn raise(&mut self, role: TufRole, version: u32) -> bool {
        let f = &mut self.0[usize::from(role.to_byte())];
        let rose = version > *f;
        *f = (*f).max(version);
        rose
    }

    /// The wire form (and the BMC's flash form): four u32 LE in role order.
    pub fn to_bytes(&self) -> [u8; TufFloors::LEN] {
        let mut b = [0u8; TufFloors::LEN];
        for (i, v) in self.0.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses [`TufFloors::to_bytes`]; every value is valid.
    pub fn from_bytes(b: &[u8; TufFloors::LEN]) -> TufFloors {
        let mut f = [0u32; TufRole::COUNT];
        for (i, v) in f.iter_mut().enumerate() {
            *v = u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        }
        TufFloors(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_only_rise_and_round_trip() {
        let mut f = TufFloors::default();
        assert!(f.raise(TufRole::Timestamp, 9));
        assert!(!f.raise(TufRole::Timestamp, 3));
        assert!(!f.raise(TufRole::Timestamp, 9));
        assert!(f.raise(TufRole::Targets, 0x0102_0304));
        assert_eq!(f.get(TufRole::Timestamp), 9);
        assert_eq!(f.get(TufRole::Root), 0);
        let b = f.to_bytes();
        assert_eq!(&b[4..8], &[9, 0, 0, 0]);
        assert_eq!(&b[12..16], &[4, 3, 2, 1]);
        assert_eq!(TufFloors::from_bytes(&b), f);
    }

    #[test]
    fn roles_parse_their_wire_values_only() {
        for r in TufRole::ALL {
            assert_eq!(TufRole::from_byte(r.to_byte()), Ok(r));
        }
        assert!(TufRole::from_byte(4).is_err());
    }
}
