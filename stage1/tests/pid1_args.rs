//! stage1 as a real PID 1 (in a PID namespace of its own) whose
//! `/etc/stage1/args` is missing or unreadable: the console must name the
//! file and say why, not a clap complaint about `--disk`. Needs root
//! (`unshare --pid --mount`); prints "skipped: needs root" otherwise.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs stage1 as PID 1 after `prepare` (shell, in a private mount
/// namespace with a tmpfs over /etc) and returns its first console line.
fn first_line_as_pid1(prepare: &str) -> String {
    let stage1 = assert_cmd::cargo::cargo_bin("stage1");
    let script = format!(
        "mount -t tmpfs racklet-test /etc && {prepare} && exec {}",
        stage1.display()
    );
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--kill-child", "sh", "-c"])
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("stage1:") && tx.send(line).is_err() {
                return;
            }
        }
    });
    // PID 1 never exits: it says why and waits; a hang fails here.
    let line = rx.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    line.expect("stage1 as PID 1 said nothing within 60 s")
}

#[test]
fn a_missing_args_file_is_named_with_the_reason() {
    if !common::have(is_root(), "root") {
        return;
    }
    let line = first_line_as_pid1("true");
    assert!(
        line.contains("/etc/stage1/args") && line.contains("No such file"),
        "{line}"
    );
    assert!(!line.contains("--disk"), "not a clap complaint: {line}");
}

#[test]
fn an_unreadable_args_file_is_named_with_the_reason() {
    if !common::have(is_root(), "root") {
        return;
    }
    // A directory where the file should be: read(2) fails with EISDIR.
    let line = first_line_as_pid1("mkdir -p /etc/stage1/args");
    assert!(
        line.contains("/etc/stage1/args") && line.contains("directory"),
        "{line}"
    );
}

#[test]
fn a_readable_args_file_with_a_bad_flag_is_still_named() {
    if !common::have(is_root(), "root") {
        return;
    }
    let line = first_line_as_pid1("mkdir -p /etc/stage1 && echo --no-such-flag > /etc/stage1/args");
    assert!(
        line.contains("bad /etc/stage1/args") && line.contains("--no-such-flag"),
        "{line}"
    );
}
