//! `bootd serve`.

use anyhow::Context;

/// Arguments of `bootd serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Serving threads (overrides `workers` in the config; default one per CPU).
    #[arg(long)]
    workers: Option<usize>,
}

pub fn run(mut config: bootd::Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(n) = args.workers {
        anyhow::ensure!(n >= 1, "--workers must be at least 1");
        config.workers = n;
    }
    // This runtime runs the background loops (reload, verification); the
    // serving threads have their own runtimes (see bootd::run).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
