//! `stage1-bench`: stage1's install against `curl … | tee slot | sha256sum`
//! in the same run, for `cargo xtask bench`.
//!
//! It signs a repository with a large and a small image (imgsign, fresh
//! keys), serves it with bootd (a process, on loopback, over TLS), and
//! measures:
//! - install throughput of the large image with `stage1 slots install`
//!   (refresh, stream, hash, write into the inactive slot, fsync, commit) —
//!   the `stage1` binary beside this one, a child process;
//! - the same bytes through `curl --cacert … | tee FILE | sha256sum`;
//! - the limits: SHA-256 over memory, and sequential write + fdatasync;
//! - stage1's peak RSS (VmHWM) for the small and the large image.
//!
//! Prints a Markdown table; `--json FILE` writes the numbers. Needs `curl`,
//! `tee`, `sha256sum` on PATH and the `stage1` and `bootd` binaries beside
//! this one (`cargo build --release -p stage1 -p bootd -p racklet-bench`).
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use racklet_bench::{need, sibling, write_image, Bootd, SignedRepo};
use sha2::Digest;

/// stage1 install benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Size of the large image, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Size of the small image (for the RSS comparison), MiB.
    #[arg(long, default_value_t = 64)]
    small_mib: u64,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, serde::Deserialize)]
struct InstallOut {
    bytes: u64,
    seconds: f64,
    peak_rss_kib: u64,
}

fn install(
    stage1: &Path,
    d: &Path,
    port: u16,
    slot: &str,
    target: &str,
) -> Result<(InstallOut, f64)> {
    let start = Instant::now();
    let out = Command::new(stage1)
        .args(["slots", "install", "--slot", slot, "--target", target])
        .arg("--disk")
        .arg(d.join("disk.img"))
        .arg("--repo")
        .arg(format!("https://localhost:{port}/"))
        .arg("--ca")
        .arg(d.join("pki/ca.pem"))
        .arg("--root")
        .arg(d.join("root.json"))
        .arg("--state")
        .arg(d.join("stage1-state"))
        .env("RUST_LOG", "warn")
        .output()?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "stage1 slots install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((serde_json::from_slice(&out.stdout)?, wall))
}

fn main() -> Result<()> {
    let a = Args::parse();
    for t in ["curl", "tee", "sha256sum"] {
        need(t)?;
    }
    let stage1 = sibling("stage1", "stage1")?;
    let bootd_bin = sibling("bootd", "bootd")?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("STAGE1_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let d = dir.path();
    eprintln!(
        "preparing {} MiB and {} MiB images in {}",
        a.size_mib,
        a.small_mib,
        d.display()
    );
    let big = d.join("big.img");
    let small = d.join("small.img");
    write_image(&big, a.size_mib, a.size_mib)?;
    write_image(&small, a.small_mib, a.small_mib)?;
    let repo = SignedRepo::create(d, &[("big.img", &big), ("small.img", &small)])?;
    let big_path = repo.target_path("big.img")?;
    let b = Bootd::start(&bootd_bin, d, &repo, "", &[], &big_path)?;
    let (port, ca) = (b.server.port, b.ca.clone());
    let url = format!("https://localhost:{port}{big_path}");
    let big_digest = repo.images[0].1.clone();

    // The slot disk.
    let size_mib = ((a.size_mib.max(a.small_mib) * 2 + 2) + 1).to_string();
    let out = Command::new(&stage1)
        .args(["slots", "format", "--size-mib", &size_mib, "--disk"])
        .arg(d.join("disk.img"))
        .output()?;
    if !out.status.success() {
        bail!(
            "stage1 slots format: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Limits: SHA-256 over memory, sequential write + fdatasync.
    let buf = vec![0x5au8; 64 << 20];
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..8 {
        h.update(&buf);
    }
    let _ = h.finalize();
    let sha_mb_s = (8.0 * 64.0 * 1.048_576) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(d.join("write-test"))?;
        for _ in 0..(a.size_mib / 64).max(1) {
            f.write_all(&buf)?;
        }
        f.sync_data()?;
    }
    let disk_mb_s =
        ((a.size_mib / 64).max(1) as f64 * 64.0 * 1.048_576) / t.elapsed().as_secs_f64();
    std::fs::remove_file(d.join("write-test"))?;

    // stage1: small into A, then large into B (A is then active).
    let (small_out, _) = install(&stage1, d, port, "a", "small.img")?;
    let (big_out, big_wall) = install(&stage1, d, port, "b", "big.img")?;
    let mb = |bytes: u64, s: f64| bytes as f64 / 1e6 / s;
    let stage1_mb_s = mb(big_out.bytes, big_out.seconds);

    // curl | tee | sha256sum, same bytes, same server.
    let t = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sf --connect-timeout 10 --speed-limit 1 --speed-time 30 --max-time 600 \
             --cacert '{}' '{url}' | tee '{}' | sha256sum",
            ca.display(),
            d.join("curl-slot").display()
        ))
        .output()?;
    let curl_s = t.elapsed().as_secs_f64();
    let curl_hash = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !curl_hash.starts_with(&big_digest) {
        bail!("curl pipeline failed or hashed wrong: {curl_hash}");
    }
    let curl_mb_s = mb(a.size_mib << 20, curl_s);
    let limit = sha_mb_s.min(disk_mb_s);
    let rss_ratio = big_out.peak_rss_kib as f64 / small_out.peak_rss_kib.max(1) as f64;

    println!("| measure | value |\n|---|---|");
    println!("| stage1 install, {} MiB (stream+hash+write+fsync+commit) | {stage1_mb_s:.0} MB/s ({:.2} s; {big_wall:.2} s with refresh and start-up) |", a.size_mib, big_out.seconds);
    println!("| curl \\| tee \\| sha256sum, same bytes | {curl_mb_s:.0} MB/s ({curl_s:.2} s) |");
    println!("| SHA-256 limit (memory) | {sha_mb_s:.0} MB/s |");
    println!("| write + fdatasync limit | {disk_mb_s:.0} MB/s |");
    println!("| stage1 / min(limits) | {:.2} |", stage1_mb_s / limit);
    println!(
        "| stage1 / curl pipeline | {:.2} |",
        stage1_mb_s / curl_mb_s
    );
    println!(
        "| peak RSS, {} MiB image | {} KiB |",
        a.small_mib, small_out.peak_rss_kib
    );
    println!(
        "| peak RSS, {} MiB image | {} KiB (×{rss_ratio:.2}) |",
        a.size_mib, big_out.peak_rss_kib
    );
    if let Some(p) = a.json {
        std::fs::write(
            p,
            serde_json::to_vec_pretty(&serde_json::json!({
                "size_mib": a.size_mib,
                "stage1_mb_s": stage1_mb_s,
                "curl_pipeline_mb_s": curl_mb_s,
                "sha256_limit_mb_s": sha_mb_s,
                "write_limit_mb_s": disk_mb_s,
                "stage1_vs_limit": stage1_mb_s / limit,
                "stage1_vs_curl": stage1_mb_s / curl_mb_s,
                "peak_rss_small_kib": small_out.peak_rss_kib,
                "peak_rss_large_kib": big_out.peak_rss_kib,
                "peak_rss_ratio": rss_ratio,
            }))?,
        )?;
    }
    Ok(())
}
