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
//! beside this one (build both with `cargo build --release -p bootd`).
//! Run as root (nginx is started with `user root` so it can read the
//! private temporary directory).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn need(tool: &str) -> Result<()> {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("needs {tool} on PATH");
    }
    Ok(())
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

struct Server {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(ca: &Path, port: u16, path: &str, extra: &[&str]) -> Result<String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--max-time",
            "300",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(ca)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "--tlsv1.3",
        ])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .output()?;
    if !out.status.success() {
        bail!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_ready(ca: &Path, port: u16, path: &str) -> Result<()> {
    let start = Instant::now();
    while curl(ca, port, path, &[]).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("server on port {port} never served {path}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
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
    let bootd_bin = std::env::current_exe()?.with_file_name("bootd");
    if !bootd_bin.exists() {
        bail!(
            "{} is missing: cargo build --release -p bootd",
            bootd_bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    eprintln!(
        "preparing a signed repository with a {} MiB image in {}",
        a.size_mib,
        d.display()
    );

    // A repository signed with imgsign, fresh keys.
    let k = || imgsign::keys::SigningKeyPair::generate();
    let (root, targets, snapshot, timestamp) = (k(), k(), k(), k());
    let spec = imgsign::init::RootSpec::one_key_each(
        root.public(),
        targets.public(),
        snapshot.public(),
        timestamp.public(),
    );
    let repo = d.join("repo");
    let expiries = imgsign::repo::Expiries::default();
    imgsign::init::init(
        &repo,
        &spec,
        &[&root, &targets, &snapshot, &timestamp],
        jiff::Timestamp::now(),
        &expiries,
    )?;
    let big_path = d.join("big.img");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big_path)?);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..a.size_mib {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            f.write_all(&block)?;
        }
    }
    let small_path = d.join("small.bin");
    std::fs::write(&small_path, vec![0x5au8; 1024])?;
    let info: imgsign::release::ReleaseInfo = serde_json::from_value(serde_json::json!({
        "kind": "os", "version": "1.0.0", "security_version": 1, "arch": "x86_64",
        "channel": "bench", "assign": {"all": true},
    }))?;
    let images = [
        imgsign::sign::ImageSpec {
            path: big_path,
            name: imgsign::release::ImageName::new("big.img")?,
            info: info.clone(),
        },
        imgsign::sign::ImageSpec {
            path: small_path,
            name: imgsign::release::ImageName::new("small.bin")?,
            info,
        },
    ];
    let report = imgsign::sign::sign_release(
        &repo,
        &images,
        imgsign::sign::Placement::Link,
        &[&targets, &snapshot, &timestamp],
        jiff::Timestamp::now(),
        &expiries,
        &mut |_| {},
    )?;
    let file_of = |name: &str| -> Result<String> {
        let (_, digest) = report
            .images
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .context("image missing from release")?;
        Ok(format!("/targets/{}.{name}", digest.hex()))
    };
    let (big, small) = (file_of("big.img")?, file_of("small.bin")?);
    let size = (a.size_mib as u64) << 20;

    // bootd.
    std::fs::copy(repo.join("metadata/1.root.json"), d.join("root.json"))?;
    std::fs::write(
        d.join("rack.yaml"),
        include_str!("../../../hardware/rack.yaml"),
    )?;
    let bport = free_port()?;
    let config = format!(
        "rack_file: rack.yaml\nstate_dir: state\nlisten:\n  https: [\"127.0.0.1:{bport}\"]\n\
         tls:\n  ca_cert: pki/ca.pem\n  ca_key: pki/ca.key\n  server_cert: pki/server.pem\n  server_key: pki/server.key\n  server_names: [localhost]\n\
         repository:\n  trusted_root: root.json\n  local: repo\nlimits:\n  max_connections_per_address: 4096\n"
    );
    std::fs::write(d.join("bootd.yaml"), config)?;
    let cfg = bootd::Config::load(&d.join("bootd.yaml"))?;
    bootd::pki::init(
        &cfg.pki,
        "bench",
        &cfg.server_names,
        30,
        chrono::Utc::now(),
        false,
    )?;
    let ca = cfg.pki.ca_cert.clone();
    let bootd = Server {
        name: "bootd",
        port: bport,
        child: Command::new(&bootd_bin)
            .arg("--config")
            .arg(d.join("bootd.yaml"))
            .arg("serve")
            .args(a.bootd_workers.map(|n| format!("--workers={n}")))
            .env("BOOTD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    };
    wait_ready(&ca, bport, &big)?;

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
        cert = cfg.pki.server_cert.display(),
        key = cfg.pki.server_key.display(),
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
    wait_ready(&ca, nport, &big)?;

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
