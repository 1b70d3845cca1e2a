//! What a phase checks on each node's console, and running a phase: every
//! node booted at once, each checked by a thread of its own against its
//! list of steps, under one deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::lab::Lab;
use super::node::Node;

/// One node's expected console steps in a phase.
#[derive(Clone, Copy)]
pub(super) struct StepSpec {
    what: &'static str,
    needle: &'static str,
    also: &'static [&'static str],
}

/// A step `what`: a console line containing `needle` and every one of `also`.
pub(super) const fn step(
    what: &'static str,
    needle: &'static str,
    also: &'static [&'static str],
) -> StepSpec {
    StepSpec { what, needle, also }
}

/// Console lines that fail any phase at once.
const FORBIDDEN: &[&str] = &["Kernel panic", "Attempted to kill init", "panicked at"];

/// Boots every node in `nodes` and checks its steps, in parallel (a thread
/// per node; each prints its own progress); fails also on any console line
/// containing one of [`FORBIDDEN`] or `forbidden`. With `power_off`, every
/// node's OS must power off at the end. The whole phase has `timeout`: a
/// node that misses it fails the phase with the phase's name and the tail
/// of its console. Returns the phase's time in seconds.
pub(super) fn run_phase(
    lab: &Lab,
    nodes: &mut [(&mut Node, Vec<StepSpec>)],
    phase: &str,
    timeout: Duration,
    power_off: bool,
    forbidden: &[&str],
) -> Result<f64> {
    let forbidden: Vec<&str> = FORBIDDEN.iter().chain(forbidden).copied().collect();
    let forbidden = &forbidden;
    eprintln!("\n--- {phase}");
    let t = Instant::now();
    for (n, _) in nodes.iter_mut() {
        n.boot(lab, phase)?;
    }
    let deadline = Instant::now() + timeout;
    // The first node to fail stops the others waiting out the deadline.
    let failed = &AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter_mut()
            .map(|(n, steps)| {
                let steps = steps.clone();
                s.spawn(move || -> Result<()> {
                    let r = (|| {
                        for st in &steps {
                            n.expect_or_cancel(
                                st.what, st.needle, st.also, forbidden, deadline, failed,
                            )?;
                        }
                        if power_off {
                            n.expect_power_off(deadline)?;
                        }
                        Ok(())
                    })();
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r.map_err(|e: anyhow::Error| {
                        anyhow::anyhow!(
                            "phase {phase:?} failed on {} after {:.0} s (of {} s): {e:#}\n  \
                             last console lines ({}):\n{}",
                            n.name,
                            t.elapsed().as_secs_f64(),
                            timeout.as_secs(),
                            n.log().display(),
                            n.tail(15)
                        )
                    })
                })
            })
            .collect();
        let mut errors = Vec::new();
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("a node thread panicked"))?;
            if let Err(e) = r {
                errors.push(e);
            }
        }
        // The node that failed, not one that was cancelled because of it.
        errors.sort_by_key(|e| format!("{e:#}").contains("(another node failed)"));
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!("--- {phase}: {secs:.1} s");
    Ok(secs)
}
