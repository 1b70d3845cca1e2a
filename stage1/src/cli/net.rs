//! `stage1 net dhcp IFACE`: the DHCP client on its own — link up, lease,
//! address and default route — printing the lease and the exchange as JSON.

use std::time::Duration;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Get a lease from the LAN's DHCP server and configure the interface.
    Dhcp {
        /// The interface (e.g. eth0).
        iface: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
    },
}

pub fn run(cmd: NetCommand) -> anyhow::Result<()> {
    match cmd {
        NetCommand::Dhcp { iface, timeout_s } => {
            let mut cfg = stage1::net::DhcpConfig::new(&iface);
            cfg.timeout = Duration::from_secs(timeout_s);
            let applied = stage1::net::configure(&cfg)?;
            println!("{}", serde_json::to_string(&applied)?);
        }
    }
    Ok(())
}
