//! What a phase checks on each node's console, and running a phase: every
//! node booted at once, each checked by a thread of its own against its
//! list of steps, under one deadline.

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
/// node's OS must power off at the end.
pub(super) fn run_phase(
    lab: &Lab,
    nodes: &mut [(&mut Node, Vec<StepSpec>)],
    phase: &str,
    timeout: Duration,
    power_off: bool,
    forbidden: &[&str],
) -> Result<()> {
    let forbidden: Vec<&str> = FORBIDDEN.iter().chain(forbidden).copied().collect();
    let forbidden = &forbidden;
    eprintln!("\n--- {phase}");
    let t = Instant::now();
    for (n, _) in nodes.iter_mut() {
        n.boot(lab, phase)?;
    }
    let deadline = Instant::now() + timeout;
    std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter_mut()
            .map(|(n, steps)| {
                let steps = steps.clone();
                s.spawn(move || -> Result<()> {
                    for st in &steps {
                        n.expect(st.what, st.needle, st.also, forbidden, deadline)?;
                    }
                    if power_off {
                        n.expect_power_off(deadline)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let mut first_err = None;
        for h in handles {
            let r = h
                .join()
                .map_err(|_| anyhow::anyhow!("a node thread panicked"))?;
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })?;
    eprintln!("--- {phase}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
