//! What the demo refuses before it starts anything: a working directory it
//! did not make, one from an earlier run (unless `--reset`), one from an
//! older demo, one in use; and ports that are taken.

use racklet_demo::rack::Ports;
use racklet_demo::work::{Workdir, FORMAT};

fn err(r: anyhow::Result<Workdir>) -> String {
    format!("{:#}", r.unwrap_err())
}

#[test]
fn a_directory_the_demo_did_not_make_is_never_touched() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("thesis.tex"), "precious").unwrap();
    let e = err(Workdir::prepare(t.path(), true));
    assert!(e.contains("was not made by the demo"), "{e}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("thesis.tex")).unwrap(),
        "precious"
    );
}

#[test]
fn an_earlier_run_is_kept_unless_reset_and_a_running_one_never_wiped() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("demo");
    let w = Workdir::prepare(&dir, false).unwrap();
    std::fs::write(w.join("nodes.txt"), "state of the class").unwrap();
    // In use: refused, even with --reset.
    let e = err(Workdir::prepare(&dir, true));
    assert!(e.contains("is running in"), "{e}");
    w.set_state("complete").unwrap();
    drop(w);
    // Finished: kept, and the error says how to reset.
    let e = err(Workdir::prepare(&dir, false));
    assert!(e.contains("earlier run") && e.contains("--reset"), "{e}");
    assert!(e.contains("complete"), "{e}");
    assert!(dir.join("nodes.txt").exists());
    // --reset: wiped and fresh.
    let w = Workdir::prepare(&dir, true).unwrap();
    assert!(!w.join("nodes.txt").exists());
}

#[test]
fn a_workdir_from_an_older_demo_is_named_as_such() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("demo");
    drop(Workdir::prepare(&dir, false).unwrap());
    let marker = dir.join("RACKLET-DEMO");
    let old = std::fs::read_to_string(&marker)
        .unwrap()
        .replace(&format!("format={FORMAT}"), "format=0");
    std::fs::write(&marker, old).unwrap();
    let e = err(Workdir::prepare(&dir, false));
    assert!(e.contains("older demo (layout 0"), "{e}");
    Workdir::prepare(&dir, true).unwrap();
}

#[test]
fn a_taken_port_is_named_with_what_it_is_for() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Move the demo's ports so that bootd's lands on the taken one.
    let offset = port
        .checked_sub(8443)
        .expect("ephemeral ports are above 8443");
    let e = Ports::new(offset).unwrap().check_free(5).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains(&format!("127.0.0.1:{port} (bootd HTTPS) is taken")),
        "{e}"
    );
    assert!(e.contains("--port-offset"), "{e}");
    assert!(Ports::new(u16::MAX).is_err());
}
