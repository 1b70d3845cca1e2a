//! `cargo xtask bench`: benchmarks, each against a peer measured in the same
//! run on the same files, reported as ratios (the machines are shared and
//! noisy: absolute numbers vary, ratios much less).
//!
//! Wall time and peak RSS of every command come from GNU time (`/usr/bin/time
//! -f "%e %M"`); each measurement is the median of several runs.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{cargo, root, sh};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which benchmark: imgsign, bootd, stage1 or all.
    #[arg(default_value = "all")]
    pub which: String,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Largest image size in MiB (the target is 1024).
    #[arg(long, default_value_t = 1024)]
    pub big_mib: u64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !Path::new("/usr/bin/time").exists() {
        bail!("/usr/bin/time (Debian package `time`) is needed: run `cargo xtask setup`");
    }
    match args.which.as_str() {
        "imgsign" => imgsign(&args),
        "bootd" => bootd(),
        "stage1" => stage1(&args),
        "all" => {
            imgsign(&args)?;
            bootd()?;
            stage1(&args)
        }
        other => bail!("unknown benchmark `{other}` (want imgsign, bootd, stage1 or all)"),
    }
}

/// stage1's install throughput from bootd on loopback vs `curl | tee |
/// sha256sum`, and against the hash and disk limits (stage1's own harness).
fn stage1(args: &BenchArgs) -> Result<()> {
    eprintln!("building stage1, bootd and stage1-bench (release)…");
    sh(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "stage1",
        "-p",
        "bootd",
        "-p",
        "racklet-bench",
    ]))?;
    sh(
        Command::new(root().join("target/release/stage1-bench")).args([
            "--size-mib",
            &args.big_mib.to_string(),
            "--small-mib",
            "64",
        ]),
    )
}

/// bootd vs nginx: bootd's own harness (`bootd-bench`) starts both on the
/// same files, certificate and TLS version and prints the table.
fn bootd() -> Result<()> {
    eprintln!("building bootd and bootd-bench (release)…");
    sh(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "bootd",
        "-p",
        "racklet-bench",
    ]))?;
    sh(&mut Command::new(root().join("target/release/bootd-bench")))
}

/// One timed run: wall seconds and peak RSS in KiB.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: f64,
    rss_kib: u64,
}

fn timed(cmd: &[&str], cwd: &Path) -> Result<Sample> {
    // Start each run with no dirty pages from the one before, so that a
    // run does not pay for its predecessor's writeback.
    Command::new("sync").status().context("running sync")?;
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .args(cmd)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    let mut it = last.split_whitespace();
    let secs: f64 = it.next().unwrap_or("").parse().context("GNU time output")?;
    let rss_kib: u64 = it.next().unwrap_or("").parse().context("GNU time output")?;
    Ok(Sample { secs, rss_kib })
}

fn median(mut v: Vec<Sample>) -> Sample {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let secs = v[v.len() / 2].secs;
    let rss_kib = v.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    Sample { secs, rss_kib }
}

/// Writes `mib` MiB of incompressible pseudo-random bytes (xorshift).
fn make_image(path: &Path, mib: u64) -> Result<()> {
    if path
        .metadata()
        .map(|m| m.len() == mib << 20)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let mut f = std::io::BufWriter::new(File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ mib;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf)?;
    }
    f.into_inner()?.sync_all()?;
    Ok(())
}

fn imgsign(args: &BenchArgs) -> Result<()> {
    eprintln!("building imgsign (release)…");
    sh(cargo().args(["build", "--release", "--locked", "-p", "imgsign"]))?;
    let bin = root().join("target/release/imgsign");
    let bin = bin.to_str().context("path")?;
    // Inside target/ so images and repository share one filesystem.
    let dir: PathBuf = root().join("target/bench/imgsign");
    if dir.join("repo").exists() {
        std::fs::remove_dir_all(dir.join("repo"))?;
    }
    std::fs::create_dir_all(dir.join("keys"))?;
    for k in ["root", "targets", "snapshot", "timestamp"] {
        let p = dir.join(format!("keys/{k}.pem"));
        if !p.exists() {
            sh(Command::new(bin).args(["key", "generate"]).arg(&p))?;
        }
    }
    sh(Command::new(bin).current_dir(&dir).args([
        "init",
        "--repo",
        "repo",
        "--root-key",
        "keys/root.pem",
        "--targets-key",
        "keys/targets.pem",
        "--snapshot-key",
        "keys/snapshot.pem",
        "--timestamp-key",
        "keys/timestamp.pem",
    ]))?;

    let mut rows = Vec::new();
    let mut peers = Vec::new();
    for mib in [64, args.big_mib] {
        let name = format!("image-{mib}m.img");
        eprintln!("making a {mib} MiB image…");
        make_image(&dir.join(&name), mib)?;
        let sign = |link: bool| -> Vec<String> {
            let mut v: Vec<String> = [
                bin,
                "sign",
                "release",
                "--repo",
                "repo",
                "--key",
                "keys/targets.pem",
                "--key",
                "keys/snapshot.pem",
                "--key",
                "keys/timestamp.pem",
                "--kind",
                "os",
                "--version",
                "1.0.0",
                "--security-version",
                "1",
                "--arch",
                "x86_64",
                "--channel",
                "bench",
                "--all-nodes",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if link {
                v.push("--link".into());
            }
            v.push(name.clone());
            v
        };
        // Warm the page cache so every contender reads from memory.
        timed(&["sha256sum", &name], &dir)?;
        let mut sha = Vec::new();
        let mut ossl = Vec::new();
        let mut dd = Vec::new();
        let mut copy = Vec::new();
        let mut link = Vec::new();
        let dd_of = format!("of={name}.dd");
        let dd_if = format!("if={name}");
        for _ in 0..args.runs {
            sha.push(timed(&["sha256sum", &name], &dir)?);
            ossl.push(timed(&["openssl", "dgst", "-sha256", &name], &dir)?);
            dd.push(timed(
                &["dd", &dd_if, &dd_of, "bs=1M", "conv=fsync", "status=none"],
                &dir,
            )?);
            let c = sign(false);
            copy.push(timed(
                &c.iter().map(String::as_str).collect::<Vec<_>>(),
                &dir,
            )?);
            let l = sign(true);
            link.push(timed(
                &l.iter().map(String::as_str).collect::<Vec<_>>(),
                &dir,
            )?);
        }
        std::fs::remove_file(dir.join(format!("{name}.dd")))?;
        rows.push((mib, median(sha), median(copy), median(link)));
        peers.push((mib, median(ossl), median(dd)));
    }

    println!(
        "\nimgsign sign release vs sha256sum (median of {} runs, page cache warm)",
        args.runs
    );
    println!(
        "| image | sha256sum | imgsign (copy + fsync) | ratio | imgsign --link | ratio | imgsign peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (mib, sha, copy, link) in &rows {
        println!(
            "| {mib} MiB | {:.2} s | {:.2} s | {:.2}× | {:.2} s | {:.2}× | {:.1} MiB |",
            sha.secs,
            copy.secs,
            copy.secs / sha.secs.max(0.01),
            link.secs,
            link.secs / sha.secs.max(0.01),
            copy.rss_kib.max(link.rss_kib) as f64 / 1024.0
        );
    }
    println!("\nother peers in the same run (what bounds each mode):");
    println!("| image | openssl dgst -sha256 (SHA-NI) | dd copy + fsync (disk) |");
    println!("|---|---|---|");
    for (mib, ossl, dd) in &peers {
        println!(
            "| {mib} MiB | {:.2} s ({:.0} MB/s) | {:.2} s ({:.0} MB/s) |",
            ossl.secs,
            (*mib as f64 * 1.048576) / ossl.secs.max(0.001),
            dd.secs,
            (*mib as f64 * 1.048576) / dd.secs.max(0.001)
        );
    }
    if let [(_, _, small_c, small_l), (_, _, big_c, big_l)] = rows.as_slice() {
        let small = small_c.rss_kib.max(small_l.rss_kib) as f64;
        let big = big_c.rss_kib.max(big_l.rss_kib) as f64;
        println!(
            "\npeak RSS {} MiB vs 64 MiB image: {:.1} MiB vs {:.1} MiB ({:+.1}%)",
            args.big_mib,
            big / 1024.0,
            small / 1024.0,
            (big / small - 1.0) * 100.0
        );
    }
    Ok(())
}
