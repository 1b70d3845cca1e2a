//! `bootd serve`.

use anyhow::Context;

/// Arguments of `bootd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
}

pub fn run(config: bootd::Config, args: ServeArgs) -> anyhow::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.workers {
        rt.worker_threads(n);
    }
    let rt = rt.build().context("starting the async runtime")?;
    rt.block_on(async move {
        let listeners = bootd::Listeners::bind(&config).await?;
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch SIGTERM; use SIGINT");
                        let _ignored = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
            }
        };
        bootd::run(config, listeners, shutdown).await?;
        Ok(())
    })
}
