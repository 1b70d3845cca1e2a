//! Telling the BMC that this boot refused an update (issue 14, item 6):
//! the BMC counts it and keeps the last reason with its epoch in flash, for
//! its status and metrics, so a refusal is seen even when bootd is not
//! reachable (or is the attacker).

use std::io::{Read, Write};

use racklet_bmc_proto::{RefusalReason, Refusals, Request, Response};

use crate::bmc::{Bmc, BmcError};
use crate::error::Result;

fn unexpected(request: &'static str, r: Response) -> crate::Error {
    BmcError::Unexpected {
        request,
        answer: format!("{r:?}"),
    }
    .into()
}

impl<S: Read + Write> Bmc<S> {
    /// Reports that this boot refused an update for `reason` (a
    /// `bootd_api::RefusalReason` converts). MAC'd through this epoch's
    /// session like every state change, so it must be sent before
    /// [`Bmc::seal`]: a sealed BMC refuses it (`Sealed`), which keeps the
    /// booted OS from adding a refusal, and no request removes one.
    pub fn report_refusal(&mut self, reason: impl Into<RefusalReason>) -> Result<()> {
        let reason = reason.into();
        match self.call(Request::ReportRefusal { reason })? {
            Response::Done => Ok(()),
            r => Err(unexpected("ReportRefusal", r)),
        }
    }

    /// The refusals the BMC recorded: how many, and the last with its
    /// epoch (a read: no MAC, works sealed).
    pub fn refusals(&mut self) -> Result<Refusals> {
        match self.call(Request::GetRefusal)? {
            Response::Refusals(r) => Ok(r),
            r => Err(unexpected("GetRefusal", r)),
        }
    }
}
