//! Progress output: one line per event, with the time since the demo
//! started, so a class can follow every node live.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Shared by the scenario and every node thread.
#[derive(Clone, Debug)]
pub struct Ui {
    start: Instant,
    out: Arc<Mutex<()>>,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            start: Instant::now(),
            out: Arc::new(Mutex::new(())),
        }
    }
}

impl Ui {
    fn line(&self, who: &str, msg: &str) {
        let _g = self.out.lock();
        let t = self.start.elapsed().as_secs_f64();
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "  {t:>6.1}s  {who:<8} {msg}");
        let _ = o.flush();
    }

    /// A numbered step's heading and what it shows.
    pub fn step(&self, n: u32, total: u32, title: &str, why: &str) {
        let _g = self.out.lock();
        println!("\n[{n}/{total}] {title}");
        for l in why.lines() {
            println!("        {l}");
        }
    }

    /// Something a node did.
    pub fn node(&self, node: &str, msg: &str) {
        self.line(node, msg);
    }

    /// Something the operator (the demo) did.
    pub fn op(&self, msg: &str) {
        self.line("operator", msg);
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
