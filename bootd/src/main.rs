//! `bootd`: thin shell over the library. Parses arguments, sets up tracing,
//! binds sockets and calls `bootd::run`.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let program = cli::Program::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BOOTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match program.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain.
            eprintln!("bootd: {}", bootd_client::display_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
