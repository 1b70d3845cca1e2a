//! The TUF version floors the BMC keeps for this node (issue 14, item 1;
//! `bmc/README.md`, "TUF version floors"): read before a refresh, raised
//! after one that passed every check, before the BMC is sealed.

use std::io::{Read, Write};

use racklet_bmc_proto::{Request, Response, TufFloors, TufRole};

use crate::bmc::Bmc;
use crate::error::Result;

impl<S: Read + Write> Bmc<S> {
    /// The floors (a read: no MAC, works sealed).
    pub fn tuf_floors(&mut self) -> Result<TufFloors> {
        match self.call(Request::GetTufFloors)? {
            Response::TufFloors(f) => Ok(f),
            r => Err(Self::unexpected("GetTufFloors", r)),
        }
    }

    /// Raises each floor in `now` above `had` (what the BMC answered
    /// before): one MAC'd RaiseTufFloor per role that moved, none when
    /// nothing did (no flash write). Returns the floors the BMC keeps.
    pub fn raise_tuf_floors(&mut self, had: TufFloors, now: TufFloors) -> Result<TufFloors> {
        let mut kept = had;
        for role in TufRole::ALL {
            if now.get(role) > had.get(role) {
                let version = now.get(role);
                kept = match self.call(Request::RaiseTufFloor { role, version })? {
                    Response::TufFloors(f) => f,
                    r => return Err(Self::unexpected("RaiseTufFloor", r)),
                };
            }
        }
        Ok(kept)
    }
}
