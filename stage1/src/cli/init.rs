//! `stage1 init` (and `/init` as PID 1): mount the kernel filesystems, load
//! the listed modules, reap children, boot; on failure retry with backoff
//! and fall back through the BMC; never exit.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::NodeArgs;

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Kernel modules to load, in order (paths to .ko files).
    #[arg(long, value_delimiter = ',')]
    pub modules: Vec<PathBuf>,
}

/// Where PID 1 reads its arguments (one per line) when started without any.
pub const ARGS_FILE: &str = "/etc/stage1/args";

/// PID 1's command line from `path` (one argument a line, blank lines
/// skipped; a first line that is not a flag names the subcommand, an OS
/// image's init runs `confirm`; otherwise it is `init`). A file that is
/// missing or unreadable is an error naming it and why: an empty command
/// line would only fail later with clap's words about a missing `--disk`.
pub fn pid1_argv(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (as PID 1, stage1 takes its arguments from this file, one a line)",
            path.display()
        )
    })?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let sub = match lines.first() {
        Some(l) if !l.starts_with('-') => None,
        _ => Some("init".to_owned()),
    };
    Ok(std::iter::once("stage1".to_owned())
        .chain(sub)
        .chain(lines)
        .collect())
}

pub fn console(msg: &str) {
    eprintln!("stage1: {msg}");
}

/// As PID 1: mounts /proc, /sys and /dev; then loads `modules` in order
/// and says what the platform enforces (Secure Boot, lockdown).
/// Each step says on the console what happened; none is fatal (the boot
/// then fails with its own reason, which is retried).
pub fn setup(pid1: bool, modules: &[PathBuf]) {
    if pid1 {
        for (src, dst, fs) in [
            ("proc", "/proc", "proc"),
            ("sysfs", "/sys", "sysfs"),
            ("devtmpfs", "/dev", "devtmpfs"),
        ] {
            let _ = std::fs::create_dir_all(dst);
            match stage1::sys::mount(src, dst, fs) {
                Ok(()) => console(&format!("mounted {dst}")),
                Err(e) => console(&format!("mount {dst}: {e}")),
            }
        }
        // Temporary files (the offline re-verification writes some) and
        // the default state directory live in the initramfs's own RAM.
        for dir in ["/tmp", "/run"] {
            if let Err(e) = std::fs::create_dir_all(dir) {
                console(&format!("mkdir {dir}: {e}"));
            }
        }
    }
    for m in modules {
        match stage1::sys::load_module(m) {
            Ok(()) => console(&format!("loaded {}", m.display())),
            Err(e) => console(&format!("module {}: {e}", m.display())),
        }
    }
    if pid1 {
        // After the modules: efivarfs may be one of them.
        console(&format!("platform: {}", stage1::sys::platform_security()));
    }
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let pid1 = std::process::id() == 1;
    setup(pid1, &args.modules);
    std::thread::spawn(|| loop {
        stage1::sys::reap_children();
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut wait = Duration::from_secs(1);
    let mut network_up = false;
    loop {
        if !network_up {
            match args.node.network() {
                Ok(()) => network_up = true,
                Err(e) => {
                    console(&format!(
                        "network: {}",
                        bootd_client::display_chain(e.as_ref())
                    ));
                    if !pid1 {
                        return Err(e);
                    }
                    console(&format!("retrying in {wait:?}"));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
        }
        match args.node.config(pid1) {
            Ok(cfg) => {
                let res = super::runtime().and_then(|rt| {
                    Ok(rt.block_on(stage1::boot::run(&cfg, 3, Duration::from_millis(500)))?)
                });
                match &res {
                    Ok(rec) => console(&format!("handed off to {} (simulation)", rec.image)),
                    Err(e) => console(&format!(
                        "boot failed: {}",
                        bootd_client::display_chain(e.as_ref())
                    )),
                }
                if !pid1 {
                    // Outside PID 1 (a test, a shell) one round is enough,
                    // and a failure is the exit status.
                    return res.map(drop);
                }
            }
            Err(e) => console(&format!(
                "bad configuration: {}",
                bootd_client::display_chain(e.as_ref())
            )),
        }
        console(&format!("retrying in {wait:?}"));
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}
