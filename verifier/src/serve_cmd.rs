//! `verifier serve`: one verifier worker as its own process, and, with
//! `--auth-listen`, the platform's login and ACL decisions over HTTP for an
//! external broker's hook (EMQX ≥ 5.8 HTTP authentication, VerneMQ
//! webhooks: docs/SECURITY.md), for a caller that proves itself with the
//! endpoint's shared secret, on loopback unless the operator says
//! otherwise.
//!
//! Its data dir is private, as `broker`'s is: the process's file-creation
//! mask is 077, and the dir is made 0700 (files 0600) at start.

use anyhow::{anyhow, bail};
use cli::ConnectArgs;
use registry::GatewayLogins;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use verifier::auth::http::{self, CallerSecret, HttpAuth, SecretSource};
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
    /// /vernemq/auth_on_register, …_subscribe, …_publish. Every request
    /// must carry the secret of --auth-secret-file. Loopback only, unless
    /// --auth-listen-public: passwords cross it in clear.
    #[arg(long, value_name = "ADDR")]
    auth_listen: Option<String>,
    /// Let --auth-listen be an address that is not loopback (a private
    /// network only the broker reaches, or behind a TLS proxy).
    #[arg(long, requires = "auth_listen")]
    auth_listen_public: bool,
    /// The secret the broker's hook sends with every request to
    /// --auth-listen, one line (32 or more of A-Z a-z 0-9 - . _ ~), as
    /// `Authorization: Bearer SECRET` or as the password of Basic
    /// [default: DATA_DIR/http-auth.secret, made on first start].
    #[arg(long, value_name = "FILE", requires = "auth_listen")]
    auth_secret_file: Option<PathBuf>,
    /// An admin the HTTP endpoint admits: NAME=SHA256 (hex SHA-256 of the
    /// password, `printf %s PASSWORD | sha256sum`); repeat for several.
    #[arg(long = "admin", value_name = "NAME=SHA256", value_parser = parse_admin)]
    admins: Vec<(String, String)>,
    /// Secure mode: the platform's signing key (made by the platform on its
    /// first start), which seals pass_tmp to APs and signs answers. Every
    /// instance needs the same key. Not read with --walkthrough.
    #[arg(long, value_name = "FILE", default_value = "./data/platform.key")]
    signing_key: PathBuf,
    /// Secure mode: wrong proofs of a UUID's pass_tmp before its attempts
    /// are paced (nobody is locked out).
    #[arg(long, default_value_t = 5)]
    max_failures: u32,
    /// Secure mode: the longest step of a paced UUID's attempts, in
    /// seconds (the pace doubles from 1 s up to it).
    #[arg(long, default_value_t = 8)]
    lockout_secs: u64,
    /// Secure mode: verification requests each AP may make per second.
    #[arg(long, default_value_t = 500)]
    ap_rate_per_sec: u32,
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

/// The HTTP auth secret's file in the data dir, unless --auth-secret-file.
const HTTP_SECRET_FILE: &str = "http-auth.secret";

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(connect: &ConnectArgs, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.store {
        if !storage::pg::is_postgres_url(url) {
            bail!("--store takes a postgres:// URL (sled is the default, in --data-dir)");
        }
    }
    // First, before anything is written: the store key, sled's files and
    // the HTTP auth secret are the owner's only.
    cli::private_data_dir(&args.data_dir).map_err(|e| {
        anyhow!(
            "cannot make the data dir {} private (--data-dir): {e}",
            args.data_dir.display()
        )
    })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let mut config = VerifierConfig::new(connect.broker(), args.data_dir.join("verifier"));
    config.store_url = args.store.clone();
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
        });
    }
    let key_file = config.store_key_path();
    let store_url = config.store_url.clone();
    // Before the worker starts, so that a refused address, a port in use
    // or an unusable secret fails at once.
    let endpoint = match &args.auth_listen {
        Some(addr) => Some(http_endpoint(&args, addr).await?),
        None => None,
    };
    let worker = verifier::start(config, shutdown.clone(), Some(Duration::from_secs(30))).await?;
    if let Some((listener, secret)) = endpoint {
        let admins: HashMap<String, String> = args.admins.iter().cloned().collect();
        let gateways = Arc::new(GatewayLogins::default());
        info!(addr = %listener.local_addr()?, admins = admins.len(), "HTTP auth serving");
        let http = Http {
            listener,
            secret,
            admins,
            gateways: gateways.clone(),
            shutdown: shutdown.clone(),
        };
        match (&store_url, worker.store()) {
            (Some(url), _) => {
                let store = Arc::new(PgStore::connect(url, &key_file).await?);
                tokio::spawn(follow_gateways(url.clone(), gateways, shutdown.clone()));
                http.spawn(store);
            }
            (None, Some(store)) => http.spawn(store),
            (None, None) => bail!("no store to serve HTTP auth from"),
        }
    }
    worker.join().await?;
    Ok(())
}

/// Resolves `addr` (--auth-listen), refuses it off loopback without
/// --auth-listen-public, reads (or makes) the secret, and binds.
async fn http_endpoint(
    args: &ServeArgs,
    addr: &str,
) -> anyhow::Result<(tokio::net::TcpListener, CallerSecret)> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| anyhow!("--auth-listen {addr}: {e}"))?
        .collect();
    let off_loopback = addrs.iter().find(|a| !a.ip().is_loopback());
    match (off_loopback, args.auth_listen_public) {
        (Some(a), false) => bail!(
            "--auth-listen {addr} is not a loopback address ({}): the endpoint decides the \
             broker's logins, and each request carries a client's password or token in clear. \
             Keep it on 127.0.0.1 or [::1], or pass --auth-listen-public to serve it there \
             anyway (a network only the broker reaches, or behind a TLS proxy)",
            a.ip()
        ),
        (Some(a), true) => {
            warn!(addr, ip = %a.ip(), "HTTP auth served off loopback (--auth-listen-public): passwords cross that network in clear")
        }
        (None, _) => {}
    }
    let (path, create) = match &args.auth_secret_file {
        Some(path) => (path.clone(), false),
        None => (args.data_dir.join(HTTP_SECRET_FILE), true),
    };
    let (secret, source) = CallerSecret::load(&path, create).map_err(|e| {
        if create {
            anyhow!(e)
        } else {
            anyhow!("{e} (--auth-secret-file; without it, one is made in --data-dir)")
        }
    })?;
    match source {
        SecretSource::Created => info!(
            path = %path.display(),
            "HTTP auth secret created: the broker's hook must send it with every request (Authorization: Bearer SECRET)"
        ),
        SecretSource::Read => info!(path = %path.display(), "HTTP auth secret read"),
    }
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| anyhow!("cannot listen on {addr} for HTTP auth: {e}"))?;
    Ok((listener, secret))
}

/// The HTTP auth endpoint, bound, waiting for its store.
struct Http {
    listener: tokio::net::TcpListener,
    secret: CallerSecret,
    admins: HashMap<String, String>,
    gateways: Arc<GatewayLogins>,
    shutdown: CancellationToken,
}

impl Http {
    fn spawn<S: EnrollmentStore>(self, store: Arc<S>) {
        let Http {
            listener,
            secret,
            admins,
            gateways,
            shutdown,
        } = self;
        let auth = Arc::new(HttpAuth::new(store, admins, gateways, secret));
        tokio::spawn(async move {
            if let Err(e) = http::serve(listener, auth, shutdown).await {
                warn!(error = %e, "HTTP auth stopped");
            }
        });
    }
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
