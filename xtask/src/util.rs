//! Running commands with their output shown, and timing steps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// Runs a command in the workspace root, failing with its exit status.
pub fn sh(cmd: &mut Command) -> Result<()> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

/// `cargo` with the toolchain that runs xtask.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// True if a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when running as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Times named steps and prints a table at the end.
#[derive(Debug, Default)]
pub struct Steps {
    done: Vec<(String, f64)>,
}

impl Steps {
    /// Runs one step, printing a header and its time.
    pub fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        self.done.push((name.to_owned(), secs));
        eprintln!(
            "<== {name}: {} in {secs:.1} s",
            if r.is_ok() { "ok" } else { "FAILED" }
        );
        r.with_context(|| format!("step `{name}`"))
    }

    /// Prints every step's time.
    pub fn summary(&self) {
        eprintln!("\nstep times:");
        let mut total = 0.0;
        for (n, s) in &self.done {
            eprintln!("  {s:>8.1} s  {n}");
            total += s;
        }
        eprintln!("  {total:>8.1} s  total");
    }
}
