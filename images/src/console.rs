//! A virtual machine's serial console, line by line: QEMU started with its
//! output piped, and a thread per stream turning what it prints into clean
//! lines. Firmware ends its lines with `\r` as often as with `\n`, and a
//! Linux console is a terminal (colours, cursor moves), so lines are split
//! on both and stripped of escapes. Used by the QEMU tests (`images`,
//! `stage1`) and by `cargo xtask e2e`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running VM and the lines of its console.
#[derive(Debug)]
pub struct Console {
    child: Child,
    rx: Receiver<String>,
}

/// What [`Console::next_line`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A line (without its ending or terminal escapes).
    Line(String),
    /// Nothing within the wait.
    Quiet,
    /// The VM closed its output: it stopped.
    Closed,
}

impl Console {
    /// Starts `cmd` with stdin closed and stdout and stderr piped. Console
    /// lines come as they are; stderr lines (QEMU's own complaints) come
    /// prefixed with `qemu: `. Every line is also appended to `log`.
    pub fn spawn(cmd: &mut Command, log: Option<File>) -> io::Result<Console> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx2.send(format!("qemu: {line}")).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            let mut log = log;
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&buf);
                for part in text.split(['\r', '\n']) {
                    let clean = strip_ansi(part);
                    if clean.trim().is_empty() {
                        continue;
                    }
                    if let Some(f) = log.as_mut() {
                        let _ = writeln!(f, "{clean}");
                    }
                    if tx.send(clean).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Console { child, rx })
    }

    /// The next console line, waiting at most `wait`.
    pub fn next_line(&self, wait: Duration) -> Next {
        match self.rx.recv_timeout(wait) {
            Ok(l) => Next::Line(l),
            Err(RecvTimeoutError::Timeout) => Next::Quiet,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// Reads lines into `seen` until `done` says so (true), the VM stops or
    /// `deadline` passes (false).
    pub fn read_until(
        &mut self,
        deadline: Instant,
        seen: &mut Vec<String>,
        mut done: impl FnMut(&str) -> bool,
    ) -> bool {
        // Once the VM has stopped, what it printed before is still queued:
        // read on without waiting until nothing is left.
        let mut stopped = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let wait = if stopped {
                Duration::ZERO
            } else {
                left.min(Duration::from_secs(1))
            };
            match self.next_line(wait) {
                Next::Line(l) => {
                    let hit = done(&l);
                    seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Next::Quiet if stopped => return false,
                Next::Quiet => stopped = self.exited(),
                Next::Closed => return false,
            }
        }
    }

    /// The exit status, if the VM stopped.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Whether the VM stopped.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the VM (at once: it is a test machine).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A console line without terminal escapes (colours, cursor moves) or
/// other control characters.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                // CSI: parameters and intermediates, then one final byte.
                for d in it.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_control_characters_go() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m ok\u{7}"),
            "2026  INFO ok"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn lines_split_on_cr_and_lf_and_the_end_is_seen() {
        // A shell stands in for QEMU: firmware-style \r endings, a blank
        // line, stderr, then exit.
        let mut c = Console::spawn(
            Command::new("sh").args([
                "-c",
                "printf 'one\\rtwo\\n\\n\\033[1mthree\\033[0m\\n'; echo oops >&2",
            ]),
            None,
        )
        .unwrap();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        assert!(c.read_until(deadline, &mut seen, |l| l == "three"));
        assert!(!c.read_until(deadline, &mut seen, |_| false), "it ended");
        let console: Vec<&String> = seen.iter().filter(|l| !l.starts_with("qemu: ")).collect();
        assert_eq!(console, ["one", "two", "three"]);
        assert!(seen.iter().any(|l| l == "qemu: oops"), "{seen:?}");
    }
}
