//! `cargo xtask tuf-conformance`: the upstream TUF client conformance
//! suite (`../shared/vendor/tuf-conformance-*.tar.gz`, used from there as
//! published) against stage1's TUF client, through
//! `stage1/src/bin/tuf_conformance_client.rs`.
//!
//! The suite is unpacked into `target/tuf-conformance/`, its pinned Python
//! packages go into a venv there, and pytest runs it with
//! `--entrypoint target/tuf-conformance/client`. The tests stage1 does not
//! pass yet are listed in `stage1/tests/tuf-conformance.xfails`, which the
//! suite reads as *strict* expected failures: a listed test that starts to
//! pass fails the run as surely as a new failure does, so the list is
//! always exactly what is missing (issue 15 brings it to empty).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{cargo, root, sh};

/// The suite's commit, as vendored.
const SUITE: &str = "tuf-conformance-eec841c.tar.gz";

/// The Python packages the suite pins in its `pyproject.toml`.
const PINNED: &[&str] = &[
    "securesystemslib[crypto]==1.4.0",
    "tuf==7.0.0",
    "pytest==9.1.1",
    "pytest-json-report==1.5.0",
];

#[derive(Debug, Default, clap::Args)]
pub struct ConformanceArgs {
    /// Only the tests whose name matches (pytest `-k`).
    #[arg(short = 'k', long)]
    pub only: Option<String>,
}

/// Where the vendored suite is, if it is there.
pub fn suite() -> Option<PathBuf> {
    let p = root().join("../shared/vendor").join(SUITE);
    p.is_file().then_some(p)
}

/// The counts of one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Score {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (a listed expected failure that passed counts here).
    pub failed: u64,
    /// Expected failures that failed.
    pub xfailed: u64,
    /// Every test collected.
    pub total: u64,
}

impl Score {
    /// Reads pytest-json-report's `summary`.
    pub fn from_report(json: &[u8]) -> Result<Score> {
        let v: serde_json::Value =
            serde_json::from_slice(json).context("the pytest JSON report")?;
        let s = &v["summary"];
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        Ok(Score {
            passed: n("passed"),
            failed: n("failed") + n("error"),
            xfailed: n("xfailed"),
            total: n("total"),
        })
    }
}

pub fn run(args: &ConformanceArgs) -> Result<()> {
    let Some(tarball) = suite() else {
        println!("skipped: needs the TUF conformance suite (../shared/vendor/{SUITE})");
        return Ok(());
    };
    let work = root().join("target/tuf-conformance");
    let src = unpack(&tarball, &work)?;
    let python = venv(&work)?;
    // The client in the profile the tests use (built once, reused).
    sh(cargo().args([
        "build",
        "--locked",
        "-p",
        "stage1",
        "--bin",
        "tuf-conformance-client",
    ]))?;
    let built = root().join("target/debug/tuf-conformance-client");
    // The suite reads `<entrypoint>.xfails` beside the entrypoint.
    let client = work.join("client");
    std::fs::copy(&built, &client).with_context(|| built.display().to_string())?;
    let xfails = root().join("stage1/tests/tuf-conformance.xfails");
    std::fs::copy(&xfails, work.join("client.xfails"))
        .with_context(|| xfails.display().to_string())?;
    let report = work.join("report.json");
    let _ = std::fs::remove_file(&report);
    let started = Instant::now();
    let mut cmd = Command::new(&python);
    cmd.current_dir(&src)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tuf_conformance",
        ])
        .arg("--entrypoint")
        .arg(&client)
        .arg("--json-report")
        .arg(format!("--json-report-file={}", report.display()));
    if let Some(k) = &args.only {
        cmd.args(["-k", k]);
    }
    let status = cmd.status().context("cannot start pytest")?;
    let secs = started.elapsed().as_secs_f64();
    let score =
        Score::from_report(&std::fs::read(&report).with_context(|| report.display().to_string())?)?;
    println!(
        "tuf-conformance: {} passed, {} failed, {} expected failures (stage1/tests/tuf-conformance.xfails) of {} tests in {secs:.0} s",
        score.passed, score.failed, score.xfailed, score.total
    );
    if !status.success() || score.failed > 0 {
        bail!(
            "the TUF conformance suite: {} unexpected results (a new failure, or a listed \
             expected failure that now passes: take it off the list)",
            score.failed
        );
    }
    Ok(())
}

/// Unpacks the suite once; returns its directory.
fn unpack(tarball: &Path, work: &Path) -> Result<PathBuf> {
    let src = work.join("tuf-conformance");
    let stamp = work.join(format!("{SUITE}.unpacked"));
    if !stamp.exists() {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(work)?;
        sh(Command::new("tar")
            .arg("-xzf")
            .arg(tarball)
            .arg("-C")
            .arg(work))?;
        std::fs::write(&stamp, b"")?;
    }
    Ok(src)
}

/// A venv with the suite's pinned packages; returns its python.
fn venv(work: &Path) -> Result<PathBuf> {
    let env = work.join("env");
    let python = env.join("bin/python");
    let stamp = env.join("racklet-pinned");
    let want = PINNED.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let _ = std::fs::remove_dir_all(&env);
        sh(Command::new("python3").arg("-m").arg("venv").arg(&env))?;
        sh(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(PINNED))?;
        std::fs::write(&stamp, want)?;
    }
    Ok(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_comes_from_the_reports_summary() {
        let r = br#"{"summary": {"passed": 90, "failed": 2, "xfailed": 21, "total": 113, "collected": 113}}"#;
        assert_eq!(
            Score::from_report(r).unwrap(),
            Score {
                passed: 90,
                failed: 2,
                xfailed: 21,
                total: 113
            }
        );
        assert!(Score::from_report(b"not json").is_err());
    }
}
