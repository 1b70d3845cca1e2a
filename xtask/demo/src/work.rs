//! The demo's working directory and the tools it runs.
//!
//! Everything the demo makes lives in one directory (`target/demo` by
//! default) so a student can explore it afterwards and a teacher can wipe
//! it for the next class. A marker file says which demo made it; a lock
//! says whether one is running in it now.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Bumped when the layout of the working directory changes: an older one is
/// refused rather than half reused.
pub const FORMAT: u32 = 1;
const MARKER: &str = "RACKLET-DEMO";

/// The working directory, locked for this run.
#[derive(Debug)]
pub struct Workdir {
    path: PathBuf,
    _lock: File,
    /// An earlier run was wiped (`--reset`).
    pub wiped: bool,
}

fn read_marker(path: &Path) -> Option<String> {
    std::fs::read_to_string(path.join(MARKER)).ok()
}

fn marker_field<'a>(marker: &'a str, key: &str) -> Option<&'a str> {
    marker
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

impl Workdir {
    /// Creates `path` for a fresh run. An existing demo directory is wiped
    /// only with `reset`; anything else there is never touched.
    pub fn prepare(path: &Path, reset: bool) -> Result<Workdir> {
        let nonempty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        let wiped = nonempty;
        if nonempty {
            let Some(marker) = read_marker(path) else {
                bail!(
                    "{} exists and was not made by the demo; refusing to touch it \
                     (choose another --workdir)",
                    path.display()
                );
            };
            let lock = File::open(path.join("lock"))
                .with_context(|| format!("{}: lock file missing", path.display()))?;
            if lock.try_lock().is_err() {
                bail!(
                    "a demo is running in {} now (pid {}); stop it (Ctrl-C) or choose another --workdir",
                    path.display(),
                    marker_field(&marker, "pid").unwrap_or("?")
                );
            }
            drop(lock);
            let format = marker_field(&marker, "format").unwrap_or("?");
            if format != FORMAT.to_string() {
                if !reset {
                    bail!(
                        "{} is from an older demo (layout {format}, this one is {FORMAT}); \
                         `cargo xtask demo --reset` wipes it and starts afresh",
                        path.display()
                    );
                }
            } else if !reset {
                bail!(
                    "{} holds the rack of an earlier run (started {}, {}); explore it \
                     (docs/src/demo.md says how), or `cargo xtask demo --reset` wipes it for a fresh \
                     run — the class reset: fresh PKI, node identities, disks and BMC counters",
                    path.display(),
                    marker_field(&marker, "started").unwrap_or("?"),
                    match marker_field(&marker, "state") {
                        // Not locked, yet never finished: stopped half-way.
                        Some("running") | None => "interrupted",
                        Some(s) => s,
                    },
                );
            }
            std::fs::remove_dir_all(path).with_context(|| format!("wiping {}", path.display()))?;
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .context("creating the lock file")?;
        lock.try_lock()
            .map_err(|_| anyhow::anyhow!("another demo took {} just now", path.display()))?;
        let w = Workdir {
            path: path.to_owned(),
            _lock: lock,
            wiped,
        };
        w.set_state("running")?;
        Ok(w)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(p)`.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// Records how the run is going (`running`, `complete`, `failed`).
    pub fn set_state(&self, state: &str) -> Result<()> {
        let started = read_marker(&self.path)
            .and_then(|m| marker_field(&m, "started").map(str::to_owned))
            .unwrap_or_else(now_utc);
        write_atomic(
            &self.path.join(MARKER),
            format!(
                "format={FORMAT}\nstarted={started}\nstate={state}\npid={}\n",
                std::process::id()
            )
            .as_bytes(),
        )
    }
}

/// Now, as RFC 3339 UTC to the second.
pub fn now_utc() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}

/// write-temp, fsync, rename (the tree's one implementation).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    racklet_fsio::write_atomic(path, bytes, racklet_fsio::Mode::Public)?;
    Ok(())
}

/// The project's binaries, and a log of every command run with them (so a
/// student can replay any step by hand).
#[derive(Debug)]
pub struct Tools {
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: Mutex<File>,
    cwd: PathBuf,
}

impl Tools {
    /// Tools from `bin` (e.g. `target/debug`), run in `cwd`, logging to
    /// `cwd/commands.log`.
    pub fn new(bin: &Path, cwd: &Path, env: Vec<(String, String)>) -> Result<Tools> {
        for b in ["imgsign", "bootd", "bmc-sim", "stage1"] {
            if !bin.join(b).is_file() {
                bail!(
                    "{} missing: build it first (`cargo xtask demo` does)",
                    bin.join(b).display()
                );
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(cwd.join("commands.log"))
            .context("opening commands.log")?;
        // Replayable as a script from the working directory.
        writeln!(
            log,
            "# Every command the demo ran, in order. To replay one by hand:\n\
             # cd {}; then set what the demo set:",
            cwd.display()
        )?;
        writeln!(log, "export PATH=\"{}:$PATH\"", bin.display())?;
        for (k, v) in &env {
            writeln!(log, "export {k}='{v}'")?;
        }
        Ok(Tools {
            bin: bin.to_owned(),
            env,
            log: Mutex::new(log),
            cwd: cwd.to_owned(),
        })
    }

    /// A command for one of the project's binaries, with the demo's
    /// environment, run in the working directory.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.current_dir(&self.cwd).env("NO_COLOR", "1");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Appends the command line to `commands.log`.
    pub fn note(&self, cmd: &Command) {
        let mut line = cmd
            .get_program()
            .to_string_lossy()
            .replace(&format!("{}/", self.bin.display()), "");
        for a in cmd.get_args() {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains([' ', '"', '\'', '$']) {
                line.push_str(&format!(" '{a}'"));
            } else {
                line.push(' ');
                line.push_str(&a);
            }
        }
        if let Ok(mut f) = self.log.lock() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Runs to completion; a failure names the command and its output.
    pub fn run(&self, mut cmd: Command) -> Result<Output> {
        self.note(&cmd);
        let shown = format!("{:?}", cmd.get_program());
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot start {shown}"))?;
        if !out.status.success() {
            bail!(
                "{shown} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Where the binaries are.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}
