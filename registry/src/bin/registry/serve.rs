//! `registry serve`: one registry worker as its own process. Its sled
//! store is private, as `broker`'s data dir is: the process's
//! file-creation mask is 077, and the store's dir is made 0700 (files
//! 0600) at start.

use clap::Args;
use cli::ConnectArgs;
use registry::{Policy, RegistryConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where assignments are kept: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`
    /// (shared by every instance; the schema is migrated on start), or a
    /// directory for an embedded sled database (one instance only).
    #[arg(
        long,
        env = "REGISTRY_STORE",
        value_name = "URL|DIR",
        default_value = "./data/registry"
    )]
    pub store: String,
    /// Share requests with the other instances through shared
    /// subscriptions whose group names start with NAME. Gateway status
    /// and presence are subscribed by every instance.
    #[arg(long, value_name = "NAME", default_value = "registry")]
    pub share_group: String,
    /// Subscribe plainly instead: every instance would take every request
    /// (use with one instance only).
    #[arg(long)]
    pub no_share: bool,
    /// This instance's name, in its MQTT client id `registry.NAME`; each
    /// instance needs its own [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// How a device without a live assignment gets a gateway.
    #[arg(long, value_enum, default_value_t = Policy::Hashed)]
    pub policy: Policy,
    /// Refuse devices the registry has never seen (`unassigned`) instead
    /// of allocating them by policy.
    #[arg(long)]
    pub deny_unknown: bool,
    /// Secure mode: the platform's signing key (made by the platform on its
    /// first start), which signs every answer. Every instance needs the
    /// same key. Ignored with --walkthrough.
    #[arg(long, value_name = "FILE", default_value = "./data/platform.key")]
    pub signing_key: PathBuf,
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(connect: &ConnectArgs, args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let (store_url, db_dir) = if storage::pg::is_postgres_url(&args.store) {
        // Nothing of the store on disk, but whatever the process writes
        // is still its owner's only.
        cli::private_files();
        (Some(args.store.clone()), PathBuf::new())
    } else {
        let dir = PathBuf::from(&args.store);
        cli::private_data_dir(&dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot make the store {} private (--store): {e}",
                dir.display()
            )
        })?;
        (None, dir)
    };
    let mut config = RegistryConfig::new(connect.broker(), db_dir);
    config.store_url = store_url;
    config.share_group = (!args.no_share).then(|| args.share_group.clone());
    config.client_id = format!("registry.{}", cli::instance_name(args.instance.as_deref()));
    config.tls = connect
        .tls()
        .map_err(anyhow::Error::msg)?
        .map(|t| t.config());
    config.username = connect.username_or("registry");
    config.password = connect.password_for("admin").map_err(anyhow::Error::msg)?;
    config.policy = args.policy;
    config.allow_unknown = !args.deny_unknown;
    if !connect.walkthrough {
        let key = cli::read_signing_key(&args.signing_key).map_err(anyhow::Error::msg)?;
        config.signing_key = Some(Arc::new(key));
        config.registration_required = true;
    }
    info!(client_id = %config.client_id, broker = %config.broker, "registry instance starting");
    let worker = registry::start(config, shutdown, Some(Duration::from_secs(30))).await?;
    worker.join().await?;
    Ok(())
}
