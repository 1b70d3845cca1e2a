//! Telling bootd and the BMC what a boot refused.

use std::time::Duration;

use super::{read_file, BootConfig};
use crate::bmc::Bmc;
use crate::error::Error;

/// The report of a refusal: its label and the error's whole chain.
pub(super) fn refusal(e: &Error) -> bootd_api::RefusalReport {
    bootd_api::RefusalReport {
        reason: e.refusal_reason(),
        detail: bootd_client::display_chain(e),
    }
}

/// How long telling bootd about refusals may hold up a boot.
const REFUSAL_REPORT_DEADLINE: Duration = Duration::from_secs(5);

/// Tells bootd (if the node is enrolled) and the BMC what this boot
/// refused. Never fails the boot: a bootd that replays old metadata may
/// well not listen, which is why the BMC is told too.
pub(super) async fn tell_refusals(
    cfg: &BootConfig,
    bmc: &mut Bmc<crate::bmc::Link>,
    refused: &[bootd_api::RefusalReport],
) {
    if refused.is_empty() {
        return;
    }
    // The BMC first: it keeps the last refusal in flash whoever bootd is,
    // and the booted OS cannot add or erase one (MAC'd, before the seal).
    for r in refused {
        if let Err(e) = bmc.report_refusal(r.reason) {
            tracing::warn!(error = %e, reason = %r.reason, "refusal NOT reported to the BMC");
        }
    }
    let (Some(base), Some(ca), Ok(Some(id))) = (&cfg.bootd, &cfg.ca, cfg.client_identity()) else {
        return;
    };
    let Ok(ca) = read_file(ca) else {
        return;
    };
    let all = async {
        for r in refused {
            bootd_client::refusal(base, &ca, &id, &cfg.net, r).await?;
        }
        Ok::<_, bootd_client::Error>(())
    };
    match tokio::time::timeout(REFUSAL_REPORT_DEADLINE, all).await {
        Ok(Ok(())) => tracing::info!(count = refused.len(), "refusals reported to bootd"),
        Ok(Err(e)) => tracing::warn!(error = %e, "refusals NOT reported to bootd"),
        Err(_) => {
            tracing::warn!(after = ?REFUSAL_REPORT_DEADLINE, "refusals NOT reported to bootd (no answer)")
        }
    }
}
