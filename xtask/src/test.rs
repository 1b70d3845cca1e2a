//! `cargo xtask test`: the one command that runs every test.

use anyhow::Result;

use crate::setup;
use crate::util::{cargo, sh, Steps};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Skip installing/checking dependencies; tests whose tools are missing
    /// then print "skipped: needs …" instead of failing.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run_all(args: &TestArgs, steps: &mut Steps) -> Result<()> {
    if !args.no_setup {
        steps.step("setup: Debian packages, Rust targets, python-tuf", || {
            setup::run().map(|_| ())
        })?;
    }
    // With everything installed, a test that would skip is a failure.
    let require = if args.no_setup { "0" } else { "1" };
    steps.step("cargo fmt --check", || {
        sh(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.step("cargo clippy (all targets, -D warnings)", || {
        sh(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.step("cargo test (workspace)", || {
        sh(cargo()
            .args(["test", "--workspace", "--locked"])
            .env("RACKLET_REQUIRE_ALL", require))
    })?;
    Ok(())
}

pub fn run(args: TestArgs) -> Result<()> {
    let mut steps = Steps::default();
    let r = run_all(&args, &mut steps);
    steps.summary();
    r
}
