//! `stage1`: parse arguments, set up logging, call the library.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;
use cli::{Command, Program};

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // As PID 1 the kernel passes no arguments: read them from a file.
    let program = if std::process::id() == 1 && std::env::args().len() <= 1 {
        let file = std::path::Path::new(cli::init::ARGS_FILE);
        let parsed = cli::init::pid1_argv(file).and_then(|argv| {
            Program::try_parse_from(argv).map_err(|e| format!("bad {}: {e}", file.display()))
        });
        match parsed {
            Ok(p) => p,
            Err(e) => loop {
                // PID 1 never exits: say why, and wait for the BMC watchdog.
                eprintln!("stage1: {e}");
                std::thread::sleep(std::time::Duration::from_secs(60));
            },
        }
    } else {
        Program::parse()
    };
    let res = match program.command {
        Command::Boot(a) => cli::boot::run(a),
        Command::Confirm(a) => cli::confirm::run(a),
        Command::Init(a) => cli::init::run(a),
        Command::Tuf(c) => cli::tuf::run(c),
        Command::Slots(c) => cli::slots::run(c),
        Command::Net(c) => cli::net::run(c),
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stage1: error: {}", bootd_client::display_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Program::command().debug_assert();
    }

    #[test]
    fn groups_with_rack_is_refused_not_ignored() {
        use clap::Parser;
        // With --rack the rack file names the node's groups; a --groups
        // beside it used to be parsed and silently dropped.
        let e = super::Program::try_parse_from([
            "stage1",
            "boot",
            "--rack",
            "rack.yaml",
            "--dhcp",
            "eth0",
            "--groups",
            "workers",
            "--disk",
            "d",
            "--bmc",
            "b:1",
            "--root",
            "r",
            "--state",
            "s",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        let msg = e.to_string();
        assert!(msg.contains("--groups") && msg.contains("--rack"), "{msg}");
    }

    #[test]
    fn the_trusted_state_is_kept_on_the_disk_by_default() {
        use clap::Parser;
        let base = [
            "stage1",
            "boot",
            "--node",
            "unit-2",
            "--smbus",
            "0x21",
            "--disk",
            "d",
            "--bmc",
            "b:1",
            "--root",
            "r",
            "--state",
            "/run/stage1",
        ];
        let cfg = |extra: &[&str]| {
            let p = super::Program::try_parse_from(base.iter().chain(extra)).unwrap();
            let super::cli::Command::Boot(a) = p.command else {
                unreachable!()
            };
            a.node.config(false).unwrap()
        };
        assert!(cfg(&[]).state_on_disk);
        assert!(cfg(&["--state-on-disk"]).state_on_disk);
        assert!(!cfg(&["--no-state-on-disk"]).state_on_disk);
    }
}
