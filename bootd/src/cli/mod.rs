//! Command-line interface: one module per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod client;
mod nodes;
mod pki;
mod serve;

/// Racklet boot server.
#[derive(Debug, Parser)]
#[command(name = "bootd", version, about)]
pub struct Program {
    /// bootd's configuration file.
    #[arg(
        long,
        short,
        env = "BOOTD_CONFIG",
        default_value = "/etc/bootd/bootd.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the verified repository, enrollment and metrics.
    Serve(serve::ServeArgs),
    /// The rack certificate authority.
    #[command(subcommand)]
    Pki(pki::PkiCommand),
    /// Node enrollment and state.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),
    /// Validate the configuration and the rack file, then exit.
    CheckConfig,
    /// The node side: enroll, report (what stage1 does, by hand).
    #[command(subcommand)]
    Client(client::ClientCommand),
}

impl Program {
    pub fn run(self) -> anyhow::Result<()> {
        let config = || bootd::Config::load(&self.config);
        match self.command {
            Command::Serve(a) => serve::run(config()?, a),
            Command::Pki(c) => pki::run(config()?, c),
            Command::Nodes(c) => nodes::run(config()?, c),
            Command::Client(c) => client::run(c),
            Command::CheckConfig => {
                let c = config()?;
                let rack = racklet_hardware::Rack::load(&c.rack_file)?;
                println!(
                    "ok: {} (rack {}, {} nodes)",
                    self.config.display(),
                    rack.id,
                    rack.nodes.len()
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Program::command().debug_assert();
    }
}
