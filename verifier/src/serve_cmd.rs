//! `verifier serve`: one verifier worker as its own process, and, with
//! `--auth-listen`, the platform's login and ACL decisions over HTTP for an
//! external broker's hook (EMQX ≥ 5.8 HTTP authentication, VerneMQ
//! webhooks: docs/SECURITY.md).

use cli::ConnectArgs;
use registry::GatewayLogins;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use verifier::auth::http::{self, HttpAuth};
use verifier::{EnrollmentStore, PgStore, VerifierConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the sled database lives (DATA_DIR/verifier); only one verifier
    /// may use it. With a PostgreSQL --store, where the pass_tmp sealing
    /// key is looked for (DATA_DIR/verifier.key) unless --store-key says.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// Where enrollments are kept: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`,
    /// shared by every instance (the schema is migrated on start).
    /// Default: sled in DATA_DIR/verifier.
    #[arg(long, env = "VERIFIER_STORE", value_name = "URL")]
    store: Option<String>,
    /// The key pass_tmps are sealed with at rest (made if missing). Every
    /// instance on one store needs a copy of the same file.
    #[arg(long, value_name = "FILE")]
    store_key: Option<PathBuf>,
    /// Share the APs' requests with the other instances through shared
    /// subscriptions whose group names start with NAME.
    #[arg(long, value_name = "NAME", default_value = "verifier")]
    share_group: String,
    /// Subscribe plainly instead (one instance only).
    #[arg(long)]
    no_share: bool,
    /// This instance's name, in its MQTT client id `verifier.NAME`; each
    /// instance needs its own [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// Serve the platform's login and ACL decisions over HTTP on ADDR, for
    /// an external broker's hook: POST /emqx/auth (EMQX ≥ 5.8 HTTP
    /// authentication, with the client's ACL in the reply) and
    /// /vernemq/auth_on_register, …_subscribe, …_publish. Keep it on
    /// loopback or a private network: passwords cross it.
    #[arg(long, value_name = "ADDR")]
    auth_listen: Option<String>,
    /// An admin the HTTP endpoint admits: NAME=SHA256 (hex SHA-256 of the
    /// password, `printf %s PASSWORD | sha256sum`); repeat for several.
    #[arg(long = "admin", value_name = "NAME=SHA256", value_parser = parse_admin)]
    admins: Vec<(String, String)>,
    /// Secure mode: the platform's signing key (made by the platform on its
    /// first start), which seals pass_tmp to APs and signs answers. Every
    /// instance needs the same key. Not read with --walkthrough.
    #[arg(long, value_name = "FILE", default_value = "./data/platform.key")]
    signing_key: PathBuf,
    /// Secure mode: failed releases or proofs before a UUID is locked out.
    #[arg(long, default_value_t = 5)]
    max_failures: u32,
    /// Secure mode: how long a lockout lasts, in seconds.
    #[arg(long, default_value_t = 300)]
    lockout_secs: u64,
    /// Secure mode: verification requests each AP may make per second.
    #[arg(long, default_value_t = 500)]
    ap_rate_per_sec: u32,
    /// Secure mode: a device onboarding again with a new key (after a
    /// factory reset) gets it by its proof of pass_tmp (`proof`), or once
    /// an admin runs `verifier approve-key` (`admin`).
    #[arg(long, value_name = "POLICY", default_value_t = verifier::Rekey::Proof)]
    rekey: verifier::Rekey,
}

fn parse_admin(s: &str) -> Result<(String, String), String> {
    let (name, hash) = s
        .split_once('=')
        .ok_or("expected NAME=SHA256 (hex SHA-256 of the password)")?;
    if name.is_empty() || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected NAME=SHA256: a name, and 64 hex digits".into());
    }
    Ok((name.to_owned(), hash.to_ascii_lowercase()))
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(connect: &ConnectArgs, args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let mut config = VerifierConfig::new(connect.broker(), args.data_dir.join("verifier"));
    if let Some(url) = &args.store {
        if !storage::pg::is_postgres_url(url) {
            anyhow::bail!("--store takes a postgres:// URL (sled is the default, in --data-dir)");
        }
        config.store_url = Some(url.clone());
    }
    config.store_key_file = args.store_key.clone();
    config.share_group = (!args.no_share).then(|| args.share_group.clone());
    config.client_id = format!("verifier.{}", cli::instance_name(args.instance.as_deref()));
    config.tls = connect
        .tls()
        .map_err(anyhow::Error::msg)?
        .map(|t| t.config());
    config.username = connect.username_or("verifier");
    config.password = connect.mqtt_password.clone();
    // Secure mode unless told otherwise: never plaintext pass_tmps to APs
    // because a flag was forgotten.
    if !connect.walkthrough {
        let key = cli::read_signing_key(&args.signing_key).map_err(anyhow::Error::msg)?;
        config.secure = Some(verifier::SecureVerify {
            key: Arc::new(key),
            max_failures: args.max_failures,
            lockout: Duration::from_secs(args.lockout_secs),
            ap_rate_per_sec: args.ap_rate_per_sec,
            rekey: args.rekey,
        });
    }
    let key_file = config.store_key_path();
    let store_url = config.store_url.clone();
    let worker = verifier::start(config, shutdown.clone(), Some(Duration::from_secs(30))).await?;
    if let Some(addr) = &args.auth_listen {
        let admins: HashMap<String, String> = args.admins.iter().cloned().collect();
        let gateways = Arc::new(GatewayLogins::default());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for HTTP auth: {e}"))?;
        info!(addr = %listener.local_addr()?, admins = admins.len(), "HTTP auth serving");
        match (&store_url, worker.store()) {
            (Some(url), _) => {
                let store = Arc::new(PgStore::connect(url, &key_file).await?);
                tokio::spawn(follow_gateways(
                    url.clone(),
                    gateways.clone(),
                    shutdown.clone(),
                ));
                spawn_http(listener, store, admins, gateways, shutdown.clone());
            }
            (None, Some(store)) => spawn_http(listener, store, admins, gateways, shutdown.clone()),
            (None, None) => anyhow::bail!("no store to serve HTTP auth from"),
        }
    }
    worker.join().await?;
    Ok(())
}

fn spawn_http<S: EnrollmentStore>(
    listener: tokio::net::TcpListener,
    store: Arc<S>,
    admins: HashMap<String, String>,
    gateways: Arc<GatewayLogins>,
    shutdown: CancellationToken,
) {
    let auth = Arc::new(HttpAuth::new(store, admins, gateways));
    tokio::spawn(async move {
        if let Err(e) = http::serve(listener, auth, shutdown).await {
            warn!(error = %e, "HTTP auth stopped");
        }
    });
}

/// How often the registered gateways' credentials are read back from the
/// registry's tables in a shared store.
const GATEWAYS_REFRESH: Duration = Duration::from_secs(5);

/// Keeps `logins` current with the gateways registered in the registry's
/// tables of the PostgreSQL store at `url`.
async fn follow_gateways(url: String, logins: Arc<GatewayLogins>, shutdown: CancellationToken) {
    use registry::RegistryStore;
    let mut store = None;
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        if store.is_none() {
            store = registry::PgStore::connect(&url).await.ok();
        }
        if let Some(s) = &store {
            match s.gateways().await {
                Ok(gateways) => {
                    let now: std::collections::HashSet<String> =
                        gateways.iter().map(|(id, _)| id.clone()).collect();
                    for gone in known.difference(&now) {
                        logins.set(gone, None);
                    }
                    for (id, record) in gateways {
                        logins.set(
                            &id,
                            record
                                .credential_sha256
                                .as_deref()
                                .filter(|_| record.registered),
                        );
                    }
                    known = now;
                }
                Err(e) => warn!(error = %e, "cannot read the registered gateways"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GATEWAYS_REFRESH) => {}
        }
    }
}
