//! One simulated compute unit: whenever its BMC starts a boot, run the real
//! `stage1 boot` (simulation mode, a file-backed disk), then play the booted
//! OS — which confirms with the real `stage1 confirm`, unless its signed
//! command line says it hangs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::rack::BmcControl;
use crate::ui::Ui;
use crate::work::Tools;

/// The kernel command-line word that makes the demo's OS hang before it
/// confirms (as a kernel that panics would): it comes from the signed
/// image, so only a release can ask for it.
pub const HANG: &str = "racklet.demo=hang";

/// Who a node is and where its files are.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// As in `hardware/rack.yaml`.
    pub name: String,
    /// Its groups (from the rack file).
    pub groups: Vec<String>,
    /// `x86_64`, `aarch64`.
    pub arch: String,
    /// BMC SMBus address.
    pub smbus: u8,
    /// The BMC's protocol socket.
    pub bmc: String,
    /// `nodes/<name>` in the working directory.
    pub dir: PathBuf,
    /// stage1's `--install-deadline-s` (below the BMC's watchdog window).
    pub install_deadline_s: u64,
}

impl NodeSpec {
    /// The flags `stage1 boot` and `stage1 confirm` share.
    pub fn stage1_args(&self, bootd: &str, channel: &str) -> Vec<String> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        vec![
            "--node".into(),
            self.name.clone(),
            "--groups".into(),
            self.groups.join(","),
            "--arch".into(),
            self.arch.clone(),
            "--channel".into(),
            channel.into(),
            "--disk".into(),
            d("disk.img"),
            "--bmc".into(),
            self.bmc.clone(),
            "--smbus".into(),
            format!("0x{:02x}", self.smbus),
            "--bootd".into(),
            bootd.into(),
            "--ca".into(),
            "bootd/pki/ca.pem".into(),
            "--cert".into(),
            d("identity/node.pem"),
            "--key".into(),
            d("identity/node.key"),
            "--root".into(),
            "root.json".into(),
            "--state".into(),
            d("state"),
            "--read-timeout-s".into(),
            "3".into(),
            // Below the BMC's watchdog window, as a real rack must set it.
            "--install-deadline-s".into(),
            self.install_deadline_s.to_string(),
        ]
    }
}

/// What stage1 recorded at the hand-off (`handoff.json`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Handoff {
    /// `A` or `B`.
    pub slot: char,
    /// Target name.
    pub image: String,
    /// Its version.
    pub version: String,
    /// Its security version.
    pub security_version: u64,
    /// The kernel command line it carries.
    pub cmdline: String,
}

/// What one node has done so far (read by the scenario).
#[derive(Clone, Debug, Default)]
pub struct NodeState {
    /// Boots stage1 ran for.
    pub boots: u32,
    /// Every hand-off, in order.
    pub handoffs: Vec<Handoff>,
    /// The last hand-off was confirmed by its OS.
    pub confirmed: bool,
    /// The BMC's rollback minimum after the last confirmation.
    pub rollback_min: Option<u64>,
    /// stage1 runs that ended without a hand-off, with the last error.
    pub failures: Vec<String>,
    /// Interesting stage1 log lines (refusals, warnings), in order.
    pub notes: Vec<String>,
}

impl NodeState {
    /// The last hand-off.
    pub fn last(&self) -> Option<&Handoff> {
        self.handoffs.last()
    }
}

/// A running node: its thread and its state.
#[derive(Debug)]
pub struct Node {
    /// Who.
    pub spec: NodeSpec,
    /// What it did (shared with its thread).
    pub state: Arc<Mutex<NodeState>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Shared settings of every node runner.
#[derive(Clone, Debug)]
pub struct Runner {
    /// The binaries.
    pub tools: Arc<Tools>,
    /// The BMC simulator.
    pub bmc: BmcControl,
    /// bootd's URL (as nodes are configured with it).
    pub bootd: String,
    /// Release channel.
    pub channel: String,
    /// Progress output.
    pub ui: Ui,
    /// Set to stop every runner.
    pub stop: Arc<AtomicBool>,
    /// The BMCs' confirmation window (for the hint when it was too short).
    pub watchdog: Duration,
}

impl Node {
    /// Starts watching the node's BMC.
    pub fn start(spec: NodeSpec, r: Runner) -> Node {
        let state = Arc::new(Mutex::new(NodeState::default()));
        let (s, st) = (spec.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name(spec.name.clone())
            .spawn(move || run(s, r, st))
            .expect("spawning a node thread");
        Node {
            spec,
            state,
            thread: Some(thread),
        }
    }

    /// A copy of the state.
    pub fn state(&self) -> NodeState {
        self.state.lock().expect("node state").clone()
    }

    /// Waits for the thread (after `stop` is set).
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(spec: NodeSpec, r: Runner, state: Arc<Mutex<NodeState>>) {
    let mut seen = 0u64;
    let mut shown = std::collections::BTreeSet::new();
    while !r.stop.load(Ordering::Relaxed) {
        let st = match r.bmc.unit(&spec.name) {
            Ok(s) => s,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let count = st.num("boot_count");
        if !st.running() || count <= seen {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        // The BMC released the CPU for a new boot: stage1 starts. `seen`
        // becomes the count when stage1 finished (its own restarts
        // included), read before the OS confirms: a reboot the operator
        // asks for after the confirmation is then always a new boot.
        seen = count;
        if let Err(e) = boot(&spec, &r, &state, &mut shown, &mut seen) {
            r.ui.node(&spec.name, &format!("demo error: {e:#}"));
            state
                .lock()
                .expect("node state")
                .failures
                .push(format!("{e:#}"));
        }
    }
}

/// One boot; `shown` holds lines said once already that need no repeating
/// (a target not assigned to this node).
fn boot(
    spec: &NodeSpec,
    r: &Runner,
    state: &Mutex<NodeState>,
    shown: &mut std::collections::BTreeSet<String>,
    seen: &mut u64,
) -> Result<()> {
    state.lock().expect("node state").boots += 1;
    let handoff = spec.dir.join("handoff.json");
    let _ = std::fs::remove_file(&handoff);
    let mut cmd = r.tools.cmd("stage1");
    cmd.arg("boot")
        .args(spec.stage1_args(&r.bootd, &r.channel))
        .arg("--simulate")
        .arg(&handoff);
    r.tools.note(&cmd);
    let log_path = spec.dir.join("stage1.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting stage1")?;
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let mut last_error = String::new();
    for line in BufReader::new(child.stderr.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        use std::io::Write;
        let _ = writeln!(log, "{line}");
        if let Some(msg) = narrate(&line) {
            // A target that is not for this node is said once, not per boot.
            let per_target =
                msg.contains("not assigned to this node") || msg.starts_with("refused demo-");
            if per_target && !shown.insert(msg.clone()) {
                continue;
            }
            r.ui.node(&spec.name, &msg);
            if msg.starts_with("refused bootd")
                || msg.contains("not installed")
                || msg.starts_with("refused its BMC's clock")
            {
                state.lock().expect("node state").notes.push(msg.clone());
            }
        }
        if let Some(e) = field(&line, "error") {
            last_error = e;
        }
    }
    let status = child.wait()?;
    let _ = out_thread.join();
    if let Ok(st) = r.bmc.unit(&spec.name) {
        *seen = st.num("boot_count");
    }
    if !status.success() {
        r.ui.node(&spec.name, &format!("stage1 gave up: {last_error}"));
        state.lock().expect("node state").failures.push(last_error);
        return Ok(());
    }
    let h: Handoff = serde_json::from_slice(
        &std::fs::read(&handoff).with_context(|| format!("reading {}", handoff.display()))?,
    )
    .context("parsing handoff.json")?;
    {
        let mut s = state.lock().expect("node state");
        s.handoffs.push(h.clone());
        s.confirmed = false;
    }
    r.ui.node(
        &spec.name,
        &format!(
            "hand-off: slot {} → demo-os {} (security version {}), checked before it runs",
            h.slot, h.version, h.security_version
        ),
    );
    // The booted OS.
    if h.cmdline.split_whitespace().any(|w| w == HANG) {
        r.ui.node(
            &spec.name,
            &format!(
                "demo-os {} hangs before it confirms (its command line says `{HANG}`); \
                 the BMC's watchdog will power-cycle it",
                h.version
            ),
        );
        return Ok(());
    }
    // The OS's kernel command line: where stage1 left the one-shot confirm
    // token (the BMC is sealed; nothing in the OS can MAC a frame).
    let cmdline = spec.dir.join("cmdline");
    std::fs::write(&cmdline, &h.cmdline)
        .with_context(|| format!("writing {}", cmdline.display()))?;
    let mut c = r.tools.cmd("stage1");
    c.arg("confirm")
        .args(spec.stage1_args(&r.bootd, &r.channel))
        .arg("--kernel-cmdline")
        .arg(&cmdline);
    let out = r.tools.run(c).with_context(|| {
        format!(
            "stage1 confirm (if the BMC had already power-cycled the node, this boot took \
             longer than the watchdog window of {} s: on a busy machine try --watchdog-s 8)",
            r.watchdog.as_secs()
        )
    })?;
    let said = String::from_utf8_lossy(&out.stdout);
    let reported = !String::from_utf8_lossy(&out.stderr).contains("report to bootd failed");
    let min = said
        .split("rollback minimum ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse::<u64>().ok());
    {
        let mut s = state.lock().expect("node state");
        s.confirmed = true;
        s.rollback_min = min;
    }
    r.ui.node(
        &spec.name,
        &format!(
            "demo-os {} is up and confirms: the BMC stops its watchdog, rollback minimum {}; {}",
            h.version,
            min.map_or("?".into(), |m| m.to_string()),
            if reported {
                "reported to bootd over mTLS"
            } else {
                "could not report to bootd (it is down)"
            }
        ),
    );
    Ok(())
}

/// `key=value` (or `key="value"`) from a tracing line.
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"').unwrap_or(q.len());
        return Some(q[..end].to_owned());
    }
    // Unquoted: up to the next ` word=` (values such as errors contain spaces).
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for (i, _) in rest.match_indices(' ') {
        let word = &rest[i + 1..];
        let key_len = word
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if key_len > 0 && bytes.get(i + 1 + key_len) == Some(&b'=') {
            end = i;
            break;
        }
    }
    Some(rest[..end].to_owned())
}

/// The message of a tracing line (`… LEVEL target: message key=value …`).
fn message(line: &str) -> Option<&str> {
    // Past the time, the level, the spans (`boot{node=unit-2 attempt=1}:`)
    // and the target (`stage1::boot:`): the first `: ` that ends a word
    // with no span braces in it.
    let after = line
        .match_indices(": ")
        .find(|(i, _)| !line[..*i].rsplit(' ').next().unwrap_or("").contains('}'))
        .map(|(i, _)| &line[i + 2..])?;
    let end = after
        .match_indices(' ')
        .find(|(i, _)| {
            let w = &after[i + 1..];
            w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
        })
        .map_or(after.len(), |(i, _)| i);
    Some(&after[..end])
}

/// One line a student understands for a stage1 log line worth showing.
fn narrate(line: &str) -> Option<String> {
    let msg = message(line)?;
    let f = |k: &str| field(line, k).unwrap_or_default();
    Some(match msg {
        "BMC facts" => {
            let mut s = format!(
                "stage1 starts; BMC says: boot slot {} (tries left {}, rollback minimum {})",
                f("slot"),
                f("tries_left"),
                f("rollback_min")
            );
            if f("forced_b") == "true" {
                s.push_str(", slot B forced by the button");
            }
            if f("fallback") == "true" {
                s.push_str(", a fallback: the other slot never confirmed");
            }
            s
        }
        "blank disk: formatting the slot layout" => {
            "blank disk: writes the A/B slot header (two copies with CRCs)".into()
        }
        "boot plan" => {
            let p = f("plan");
            if let Some(rest) = p.strip_prefix("Install { target: ReleaseTarget { name: \"") {
                let name = rest.split('"').next().unwrap_or("?");
                let into = p.rsplit("into: ").next().unwrap_or("?");
                let into = into.split([',', ' ']).next().unwrap_or("?");
                format!(
                    "signed metadata verified (TUF, fresh from bootd); installing {name} into \
                     the inactive slot {into}, hashing as it streams"
                )
            } else if p.starts_with("BootActive") {
                "boots the BMC's slot: its image checks out against the signed metadata".into()
            } else if p.starts_with("Fallback") {
                "boots the BMC's choice after checking it against the signed metadata; \
                 installs nothing"
                    .into()
            } else if p.starts_with("Report") {
                "the other slot already holds the wanted image, verified: tells the BMC and \
                 restarts into it (no download)"
                    .into()
            } else {
                // Refuse: the "boot failed" line that follows says why.
                return None;
            }
        }
        "installed" => format!(
            "installed and verified: slot {} holds {}; told the BMC, restarting into it",
            f("slot"),
            f("image")
                .split(" (")
                .next()
                .unwrap_or("?")
                .trim_matches('"')
        ),
        "target refused" => {
            let why = f("why");
            if why.contains("not assigned") {
                format!(
                    "{}: not assigned to this node by the signed metadata",
                    f("target")
                )
            } else {
                format!("refused {}: {why}", f("target"))
            }
        }
        "metadata refresh failed; re-verifying the stored metadata (offline boot)" => format!(
            "refused bootd's metadata: {}; boots what is installed, re-verified against the \
             metadata it stored before",
            f("error")
        ),
        "update not installed; booting the installed image" => format!(
            "update not installed: {}; boots the installed image instead",
            f("error")
        ),
        "boot failed" => format!("boot attempt failed: {}", f("error")),
        "the BMC's clock was never set and there is no signed time" => format!(
            "refused its BMC's clock (never set: it counts from 1970) and got no signed time \
             ({}); installs nothing without trusted time",
            f("error")
        ),
        "the BMC's clock was never set; using bootd's signed time" => format!(
            "its BMC's clock was never set: takes bootd's signed time {} instead",
            f("time")
        ),
        "refusals reported to bootd" => {
            "told bootd and its BMC what it refused (bootd nodes show; bmc-sim status)".into()
        }
        "one slot header copy refused; using the other" => {
            format!(
                "one slot header copy is damaged ({}); uses the other",
                f("why")
            )
        }
        m if m.starts_with("no update") => {
            let why = f("why");
            if why.contains("failed to confirm") {
                why
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_lines_are_read_for_fields_and_message() {
        let l = "2026-11-25T12:20:17.027466Z  INFO stage1::boot: BMC facts slot=A tries_left=2 forced_b=false fallback=false rollback_min=0";
        assert_eq!(message(l), Some("BMC facts"));
        assert_eq!(field(l, "slot").as_deref(), Some("A"));
        assert_eq!(field(l, "rollback_min").as_deref(), Some("0"));
        let e = "2026-11-25T12:20:02.886352Z ERROR boot{node=unit-1 arch=x86_64 attempt=1}: stage1::boot: boot failed error=BMC: 1: BMC refused the request: x (0x08) failures=1";
        assert_eq!(message(e), Some("boot failed"));
        assert_eq!(
            field(e, "error").as_deref(),
            Some("BMC: 1: BMC refused the request: x (0x08)")
        );
        assert!(narrate(e).unwrap().contains("boot attempt failed"));
        let i = r#"2026-11-25T12:20:17.083593Z  INFO stage1::boot: boot plan plan=Install { target: ReleaseTarget { name: "demo-os-x86_64-1.0.0.uki", length: 1 }, into: B, otherwise: None }"#;
        let n = narrate(i).unwrap();
        assert!(n.contains("demo-os-x86_64-1.0.0.uki"), "{n}");
        assert!(n.contains("slot B"), "{n}");
        assert_eq!(narrate("random text"), None);
    }
}
