//! `bootd-bench`: bootd against nginx, in the same run, on the same files,
//! certificate and TLS version (1.3), for `cargo xtask bench`.
//!
//! Measures, for each server:
//! - single-stream MB/s for one large image (`curl`, median of 5),
//! - requests/s for a 1 KiB file with `wrk` at 64 connections (median of 3 rounds),
//! - server CPU seconds per GB served during the single-stream runs.
//!
//! The two servers are measured in alternation, so that load from
//! elsewhere on the machine falls on both alike. Prints a Markdown table with bootd/nginx ratios; `--json FILE` writes the
//! numbers too. Needs `nginx`, `curl`, `wrk` on PATH and the `bootd` binary
//! beside this one (`cargo build --release -p bootd -p racklet-bench`).
//! Run as root (nginx is started with `user root` so it can read the
//! private temporary directory).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::Parser;
use racklet_bench::{
    curl, free_port, median, need, sibling, wait_ready, write_image, Bootd, Server, SignedRepo,
};

/// bootd vs nginx benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Size of the large image, MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: usize,
    /// Single-stream downloads per server (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// wrk duration per server, seconds (in three alternating rounds; median reported).
    #[arg(long, default_value_t = 15)]
    wrk_seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// Worker threads for bootd (default: one per CPU, like nginx's `auto`).
    #[arg(long)]
    bootd_workers: Option<usize>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Numbers {
    single_stream_mb_s: f64,
    requests_per_s: f64,
    cpu_s_per_gb: f64,
    cpu_us_per_request: f64,
}

/// utime + stime of a process and its direct children, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let read = |p: &Path| -> Option<(u32, f64)> {
        let s = std::fs::read_to_string(p).ok()?;
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = f.get(1)?.parse().ok()?;
        let ut: f64 = f.get(11)?.parse().ok()?;
        let st: f64 = f.get(12)?.parse().ok()?;
        Some((ppid, (ut + st) / ticks))
    };
    let mut total = read(&PathBuf::from(format!("/proc/{pid}/stat")))
        .map(|x| x.1)
        .unwrap_or(0.0);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some((ppid, cpu)) = read(&e.path().join("stat")) {
                if ppid == pid {
                    total += cpu;
                }
            }
        }
    }
    total
}

fn single_stream(s: &Server, ca: &Path, big: &str) -> Result<(f64, f64)> {
    let cpu0 = cpu_seconds(s.child.id());
    let speed: f64 = curl(ca, s.port, big, &["-w", "%{speed_download}"])?
        .trim()
        .parse()?;
    Ok((speed, cpu_seconds(s.child.id()) - cpu0))
}

fn wrk(s: &Server, small: &str, a: &Args, seconds: u64) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &a.wrk_threads.to_string(),
            "-c",
            &a.connections.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .arg(format!("https://localhost:{}{small}", s.port))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("{}: wrk saw non-2xx answers:\n{text}", s.name);
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))
}

/// Measures both servers in alternation (nginx, bootd, nginx, bootd, …) so
/// that load from elsewhere on the machine hits both alike.
fn measure(
    servers: [&Server; 2],
    ca: &Path,
    big: &str,
    small: &str,
    size: u64,
    a: &Args,
) -> Result<[Numbers; 2]> {
    let mut speed = [Vec::new(), Vec::new()];
    let mut cpu = [0.0f64; 2];
    for _ in 0..a.runs {
        for (i, s) in servers.iter().enumerate() {
            let (v, c) = single_stream(s, ca, big)?;
            speed[i].push(v);
            cpu[i] += c;
        }
    }
    let rounds = 3u64;
    let per = a.wrk_seconds.div_ceil(rounds).max(1);
    let mut rps = [Vec::new(), Vec::new()];
    let mut req_cpu = [(0.0f64, 0.0f64); 2];
    for _ in 0..rounds {
        for (i, s) in servers.iter().enumerate() {
            let cpu0 = cpu_seconds(s.child.id());
            let r = wrk(s, small, a, per)?;
            req_cpu[i].0 += cpu_seconds(s.child.id()) - cpu0;
            req_cpu[i].1 += r * per as f64;
            rps[i].push(r);
        }
    }
    let gb = (size as f64 * a.runs as f64) / 1e9;
    let n = |i: usize| Numbers {
        single_stream_mb_s: median(speed[i].clone()) / 1e6,
        requests_per_s: median(rps[i].clone()),
        cpu_s_per_gb: cpu[i] / gb,
        cpu_us_per_request: req_cpu[i].0 / req_cpu[i].1 * 1e6,
    };
    Ok([n(0), n(1)])
}

fn main() -> Result<()> {
    let a = Args::parse();
    for t in ["nginx", "curl", "wrk"] {
        need(t)?;
    }
    let bootd_bin = sibling("bootd", "bootd")?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    eprintln!(
        "preparing a signed repository with a {} MiB image in {}",
        a.size_mib,
        d.display()
    );
    let big_path = d.join("big.img");
    write_image(&big_path, a.size_mib as u64, 0)?;
    let small_path = d.join("small.bin");
    std::fs::write(&small_path, vec![0x5au8; 1024])?;
    let repo = SignedRepo::create(d, &[("big.img", &big_path), ("small.bin", &small_path)])?;
    let (big, small) = (repo.target_path("big.img")?, repo.target_path("small.bin")?);
    let size = (a.size_mib as u64) << 20;

    let workers: Vec<String> = a
        .bootd_workers
        .map(|n| format!("--workers={n}"))
        .into_iter()
        .collect();
    let b = Bootd::start(
        &bootd_bin,
        d,
        &repo,
        "limits:\n  max_connections_per_address: 4096\n",
        &workers,
        &big,
    )?;

    // nginx on the very snapshot bootd verified, same certificate.
    let snap = std::fs::read_dir(d.join("state/serve"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .context("bootd made no snapshot")?;
    let nport = free_port()?;
    let prefix = d.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = format!(
        "user root;\nworker_processes auto;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 8192; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  default_type application/octet-stream;\n\
           client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
           server {{\n    listen 127.0.0.1:{nport} ssl http2;\n    server_name localhost;\n\
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.3;\n    root {root};\n  }}\n}}\n",
        p = prefix.display(),
        cert = b.server_cert.display(),
        key = b.server_key.display(),
        root = snap.display(),
    );
    std::fs::write(prefix.join("nginx.conf"), conf)?;
    let nginx = Server {
        name: "nginx",
        port: nport,
        child: Command::new("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stderr(Stdio::inherit())
            .spawn()?,
    };
    let ca = b.ca.clone();
    wait_ready(&ca, nport, &big)?;
    let bootd = b.server;

    eprintln!("measuring nginx and bootd, alternating …");
    let [n, b] = measure([&nginx, &bootd], &ca, &big, &small, size, &a)?;
    drop(nginx);
    drop(bootd);

    println!(
        "| {} MiB image, TLS 1.3, same certificate and files | nginx | bootd | bootd / nginx |",
        a.size_mib
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| single stream, MB/s (curl, median of {}) | {:.0} | {:.0} | {:.2}x |",
        a.runs,
        n.single_stream_mb_s,
        b.single_stream_mb_s,
        b.single_stream_mb_s / n.single_stream_mb_s
    );
    println!(
        "| 1 KiB requests/s (wrk, {} conns, {} s) | {:.0} | {:.0} | {:.2}x |",
        a.connections,
        a.wrk_seconds,
        n.requests_per_s,
        b.requests_per_s,
        b.requests_per_s / n.requests_per_s
    );
    println!(
        "| server CPU s per GB (single stream) | {:.2} | {:.2} | {:.2}x |",
        n.cpu_s_per_gb,
        b.cpu_s_per_gb,
        b.cpu_s_per_gb / n.cpu_s_per_gb
    );
    println!(
        "| server CPU µs per 1 KiB request (wrk) | {:.1} | {:.1} | {:.2}x |",
        n.cpu_us_per_request,
        b.cpu_us_per_request,
        b.cpu_us_per_request / n.cpu_us_per_request
    );
    if let Some(p) = a.json {
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&serde_json::json!({
                "size_mib": a.size_mib, "nginx": n, "bootd": b,
                "ratio": {
                    "single_stream": b.single_stream_mb_s / n.single_stream_mb_s,
                    "requests_per_s": b.requests_per_s / n.requests_per_s,
                    "cpu_s_per_gb": b.cpu_s_per_gb / n.cpu_s_per_gb,
                    "cpu_us_per_request": b.cpu_us_per_request / n.cpu_us_per_request,
                }
            }))?,
        )?;
    }
    Ok(())
}
