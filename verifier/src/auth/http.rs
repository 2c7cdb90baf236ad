//! The platform's logins and ACL over HTTP, for an external MQTT broker
//! in the secure mode (docs/SECURITY.md, *HTTP authentication for an
//! external broker*). The same decisions as the embedded broker's
//! ([`Auth`]), asked of any [`EnrollmentStore`].
//!
//! - `POST /emqx/auth`: EMQX ≥ 5.8 HTTP authentication. One call per
//!   CONNECT: the reply carries the client's ACL (`acl`, from
//!   [`acl::emqx_rules`]) and when its login expires (`expire_at`).
//! - `POST /emqx/disconnected`: optional, from an EMQX rule on client
//!   disconnections: ends an onboarding device's hold on its UUID.
//! - `POST /vernemq/auth_on_register`, `/vernemq/auth_on_subscribe`,
//!   `/vernemq/auth_on_publish` (and their `_m5` twins): VerneMQ's
//!   webhooks, one call per CONNECT, SUBSCRIBE and PUBLISH, each answered
//!   by the in-process decision, payload checks included.
//! - `POST /vernemq/on_client_offline`, `/vernemq/on_client_gone`: end an
//!   onboarding device's hold.
//!
//! Every request must prove it comes from the broker: it carries the
//! endpoint's shared secret ([`CallerSecret`]) in its `Authorization`
//! header, as `Bearer SECRET` (EMQX's `headers`) or as the password of
//! `Basic` (VerneMQ, whose webhooks send no custom header but pass an
//! endpoint URL's `user:SECRET@` on as `Basic`). A request without it, or
//! with a wrong one, is answered 401 from its head alone: its body is not
//! read, no store is asked, and no login token, onboarding hold or rate
//! is spent.
//!
//! Bodies are bounded ([`BODY_LIMIT`]; [`PUBLISH_BODY_LIMIT`] for a
//! publish, which carries the message), a request is answered within
//! [`REQUEST_TIMEOUT`] or not at all (503), and no password is logged.
//! Requests cross the network in clear: serve it on loopback, or a network
//! only the broker reaches.

use super::acl::{self, EmqxRule, Request, Who};
use super::login::{Admitted, Auth, Credentials, Refusal, RefusalKind};
use super::ONBOARDING_HOLD;
use crate::store::EnrollmentStore;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use protocol::crypto::{ct_eq, sha256_hex};
use protocol::DecodeError;
use registry::GatewayLogins;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub const EMQX_AUTH_PATH: &str = "/emqx/auth";
pub const EMQX_DISCONNECTED_PATH: &str = "/emqx/disconnected";
pub const VERNEMQ_REGISTER_PATH: &str = "/vernemq/auth_on_register";
pub const VERNEMQ_SUBSCRIBE_PATH: &str = "/vernemq/auth_on_subscribe";
pub const VERNEMQ_PUBLISH_PATH: &str = "/vernemq/auth_on_publish";
pub const VERNEMQ_REGISTER_M5_PATH: &str = "/vernemq/auth_on_register_m5";
pub const VERNEMQ_SUBSCRIBE_M5_PATH: &str = "/vernemq/auth_on_subscribe_m5";
pub const VERNEMQ_PUBLISH_M5_PATH: &str = "/vernemq/auth_on_publish_m5";
pub const VERNEMQ_OFFLINE_PATH: &str = "/vernemq/on_client_offline";
pub const VERNEMQ_GONE_PATH: &str = "/vernemq/on_client_gone";

/// The largest request body, but a publish's.
pub const BODY_LIMIT: usize = 16 * 1024;
/// The largest `auth_on_publish` body: it carries the message, base64,
/// and the platform broker takes messages of up to 256 KiB (an admin's
/// import batch is up to 192 KiB).
pub const PUBLISH_BODY_LIMIT: usize = 512 * 1024;
/// How long a request (its body included) may take, unless
/// [`HttpAuth::with_request_timeout`] says otherwise: under the 5 s EMQX
/// waits by default, so that it hears why.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// How long an admitted client's EMQX login lasts (`expire_at`) before
/// EMQX disconnects it and it logs in again, against the records as they
/// are then: an AP's SSIDs, a removed identity, a revoked device key.
pub const SESSION_TTL: Duration = Duration::from_secs(3600);
/// How long requests in progress at shutdown get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The fewest characters a [`CallerSecret`] may have: a secret an operator
/// chose must be as hard to guess as 128 random bits written in hex.
pub const MIN_SECRET_LEN: usize = 32;

/// The random bytes of a secret [`CallerSecret::generate`] makes.
const GENERATED_SECRET_BYTES: usize = 32;

/// The shared secret an external broker's hook proves itself with, so that
/// nobody else who reaches the endpoint can ask it about logins (an oracle
/// for credentials) or spend what its checks spend: a device's one-time
/// login token, an onboarding UUID's hold, an onboarding client's rate.
///
/// Only its SHA-256 is kept, compared in constant time with that of the
/// secret presented. No `Debug`, no `Display`.
pub struct CallerSecret {
    sha256: String,
}

/// A [`CallerSecret`] that cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the HTTP auth secret {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the HTTP auth secret {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the HTTP auth secret {} is not usable: {reason}", path.display())]
    Invalid { path: PathBuf, reason: &'static str },
}

/// Where [`CallerSecret::load`] found its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// In the file, as it was.
    Read,
    /// Made by this call, and written to the file.
    Created,
}

impl CallerSecret {
    /// `text` as the secret: at least [`MIN_SECRET_LEN`] characters, each
    /// of `A-Z a-z 0-9 - . _ ~`, which an HTTP header and a URL's
    /// userinfo both take as they are (`openssl rand -hex 32` makes one).
    pub fn new(text: &str) -> Result<Self, &'static str> {
        if text.len() < MIN_SECRET_LEN {
            return Err("shorter than 32 characters");
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err("a character other than A-Z a-z 0-9 - . _ ~");
        }
        Ok(CallerSecret {
            sha256: sha256_hex(text),
        })
    }

    /// A new secret of 32 bytes from the OS's random number generator, in
    /// hex, and that text, for the broker's configuration.
    pub fn generate() -> (Self, String) {
        use rand_core::{OsRng, RngCore};
        let mut bytes = [0u8; GENERATED_SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        (
            CallerSecret {
                sha256: sha256_hex(&text),
            },
            text,
        )
    }

    /// The secret in the file at `path` (one line; surrounding whitespace
    /// is not part of it). With `create`, a missing file is made, with a
    /// [`generate`](Self::generate)d secret, mode 0600, written whole or
    /// not at all; of several processes making it at once, the first
    /// wins and the others read its secret.
    pub fn load(path: &Path, create: bool) -> Result<(Self, SecretSource), SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::new(text.trim())
                .map(|secret| (secret, SecretSource::Read))
                .map_err(|reason| SecretError::Invalid {
                    path: path.to_owned(),
                    reason,
                }),
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                let (secret, text) = Self::generate();
                let written =
                    storage::create_secret(path, &format!("{text}\n")).map_err(|source| {
                        SecretError::Write {
                            path: path.to_owned(),
                            source,
                        }
                    })?;
                if written {
                    Ok((secret, SecretSource::Created))
                } else {
                    Self::load(path, false)
                }
            }
            Err(source) => Err(SecretError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Whether `headers` carry this secret: `Authorization: Bearer
    /// SECRET`, or `Basic` with SECRET as the password (any user).
    fn admits(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or("no Authorization header")?;
        let value = value.to_str().map_err(|_| "an unreadable Authorization")?;
        let (scheme, rest) = value
            .trim()
            .split_once(' ')
            .ok_or("an Authorization without a scheme")?;
        let rest = rest.trim();
        let presented = if scheme.eq_ignore_ascii_case("bearer") {
            rest.to_owned()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest.as_bytes())
                .map_err(|_| "a Basic Authorization that is not base64")?;
            let pair = String::from_utf8(decoded).map_err(|_| "a Basic Authorization not UTF-8")?;
            let (_user, password) = pair
                .split_once(':')
                .ok_or("a Basic Authorization without a password")?;
            password.to_owned()
        } else {
            return Err("an Authorization scheme other than Bearer or Basic");
        };
        if ct_eq(&sha256_hex(&presented), &self.sha256) {
            Ok(())
        } else {
            Err("a wrong secret")
        }
    }
}

/// The HTTP endpoint's state: the store it reads identities from, the
/// secret its callers prove themselves with, and the decisions ([`Auth`])
/// with what they remember (seen login tokens, onboarding holds), in this
/// process only.
pub struct HttpAuth<S> {
    store: Arc<S>,
    auth: Auth,
    secret: Arc<CallerSecret>,
    request_timeout: Duration,
}

impl<S: EnrollmentStore> HttpAuth<S> {
    /// `admins`: admin name -> SHA-256 (hex) of its password; `gateways`:
    /// the registered gateways' credentials, kept current by whoever
    /// loads them; `secret`: what every request must carry.
    pub fn new(
        store: Arc<S>,
        admins: HashMap<String, String>,
        gateways: Arc<GatewayLogins>,
        secret: CallerSecret,
    ) -> Self {
        HttpAuth {
            store,
            auth: Auth::new(admins, gateways),
            secret: Arc::new(secret),
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Answers each request within `timeout` instead of
    /// [`REQUEST_TIMEOUT`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The decisions, as the embedded broker would make them.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// The routes above; anything else is 404. A request without the secret
/// is 401, whatever its path.
pub fn router<S: EnrollmentStore>(auth: Arc<HttpAuth<S>>) -> Router {
    let timeout = auth.request_timeout;
    let secret = auth.secret.clone();
    Router::new()
        .route(EMQX_AUTH_PATH, post(emqx_auth::<S>))
        .route(EMQX_DISCONNECTED_PATH, post(emqx_disconnected::<S>))
        .route(VERNEMQ_REGISTER_PATH, post(vernemq_register::<S>))
        .route(VERNEMQ_REGISTER_M5_PATH, post(vernemq_register::<S>))
        .route(VERNEMQ_SUBSCRIBE_PATH, post(vernemq_subscribe::<S>))
        .route(VERNEMQ_SUBSCRIBE_M5_PATH, post(vernemq_subscribe::<S>))
        .route(
            VERNEMQ_PUBLISH_PATH,
            post(vernemq_publish::<S>).layer(DefaultBodyLimit::max(PUBLISH_BODY_LIMIT)),
        )
        .route(
            VERNEMQ_PUBLISH_M5_PATH,
            post(vernemq_publish::<S>).layer(DefaultBodyLimit::max(PUBLISH_BODY_LIMIT)),
        )
        .route(VERNEMQ_OFFLINE_PATH, post(vernemq_gone::<S>))
        .route(VERNEMQ_GONE_PATH, post(vernemq_gone::<S>))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))) })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(
            move |request: axum::extract::Request, next: Next| guard(timeout, request, next),
        ))
        // Outermost, so first: nothing of a request that does not carry
        // the secret is read or acted on past its head.
        .layer(middleware::from_fn(
            move |request: axum::extract::Request, next: Next| {
                caller(secret.clone(), request, next)
            },
        ))
        .with_state(auth)
}

/// Serves [`router`] on `listener` until `shutdown`, then lets the
/// requests in progress finish, for at most a few seconds.
pub async fn serve<S: EnrollmentStore>(
    listener: TcpListener,
    auth: Arc<HttpAuth<S>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stopping = shutdown.clone();
    let app = router(auth).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            warn!("HTTP auth requests still open {SHUTDOWN_GRACE:?} after shutdown; closed");
            Ok(())
        }
    }
}

/// The largest body a request to `path` may have.
fn body_limit(path: &str) -> usize {
    if path == VERNEMQ_PUBLISH_PATH || path == VERNEMQ_PUBLISH_M5_PATH {
        PUBLISH_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// Answers 401 to a request that does not carry the secret, from its
/// head: the handler, and so any body read, store access or state change,
/// is never reached.
async fn caller(
    secret: Arc<CallerSecret>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    match secret.admits(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.to_string());
            warn!(target: "audit", path = request.uri().path(), peer, reason, "HTTP auth request refused: the caller did not prove itself with the endpoint's secret");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer, Basic")],
                Json(json!({"error": "unauthorized"})),
            )
                .into_response()
        }
    }
}

/// Answers 413 at once for a body announced over its bound (one sent
/// without a length is cut off at it: `DefaultBodyLimit`), and 503 for a
/// request (its body included) not answered in time.
async fn guard(timeout: Duration, request: axum::extract::Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > body_limit(&path) as u64) {
        warn!(
            path,
            length = announced,
            "HTTP auth request refused: its body is over the bound"
        );
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "the body is too large"})),
        )
            .into_response();
    }
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            warn!(path, ?timeout, "HTTP auth request not answered in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "not answered in time"})),
            )
                .into_response()
        }
    }
}

/// A body that is not what a route takes, in terms that quote nothing of
/// it (a password could be in it): answered 400.
struct BadBody(String);

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({"error": self.0}))).into_response()
    }
}

/// The body as `T`.
fn body<T: DeserializeOwned>(path: &'static str, raw: &[u8], limit: usize) -> Result<T, BadBody> {
    protocol::decode::decode_limited(raw, limit).map_err(|e| {
        let what = match &e {
            DecodeError::Json(j) => format!(
                "not the JSON this endpoint takes ({:?} error at line {}, column {})",
                j.classify(),
                j.line(),
                j.column()
            ),
            DecodeError::Empty | DecodeError::TooLarge { .. } | DecodeError::NotUtf8 => {
                e.to_string()
            }
            DecodeError::Field { field, .. } => format!("bad field `{field}`"),
        };
        warn!(path, error = %what, "HTTP auth request refused");
        BadBody(what)
    })
}

fn audit_refusal(broker: &str, login: &Credentials, peer: Option<&str>, r: &Refusal) {
    let (client_id, username) = (login.client_id, login.username);
    match r.kind {
        RefusalKind::Stranger => {
            info!(target: "audit", broker, client_id, username, peer, reason = r.reason, "external broker login is none of the platform's")
        }
        RefusalKind::BadLogin | RefusalKind::NotAuthorized => {
            warn!(target: "audit", broker, client_id, username, peer, reason = r.reason, "external broker connect refused")
        }
    }
}

// --- EMQX ---

/// What EMQX's `body` template sends (docs/SECURITY.md gives the
/// template): its placeholders rendered as strings. Other fields are
/// ignored. No `Debug`: it holds the password.
#[derive(Deserialize)]
struct EmqxAuthRequest {
    clientid: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    peerhost: Option<String>,
}

/// EMQX's authentication reply.
#[derive(Serialize)]
struct EmqxReply {
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_superuser: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acl: Option<Vec<EmqxRule>>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_at: Option<u64>,
}

impl EmqxReply {
    fn only(result: &'static str) -> Json<Self> {
        Json(EmqxReply {
            result,
            is_superuser: None,
            acl: None,
            expire_at: None,
        })
    }
}

async fn emqx_auth<S: EnrollmentStore>(State(h): State<Arc<HttpAuth<S>>>, raw: Bytes) -> Response {
    let req: EmqxAuthRequest = match body(EMQX_AUTH_PATH, &raw, BODY_LIMIT) {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    let login = Credentials {
        client_id: &req.clientid,
        username: &req.username,
        password: &req.password,
    };
    let peer = req.peerhost.as_deref();
    if req.username.is_empty() {
        warn!(target: "audit", broker = "emqx", client_id = login.client_id, peer, reason = "no login", "external broker connect refused");
        return EmqxReply::only("deny").into_response();
    }
    match h.auth.admit_async(&login, &*h.store).await {
        Ok(admitted) => {
            info!(target: "audit", broker = "emqx", client_id = login.client_id, username = login.username, peer, "connected");
            Json(emqx_allow(&admitted, login.client_id)).into_response()
        }
        Err(r) => {
            audit_refusal("emqx", &login, peer, &r);
            // A username that is none of ours: EMQX asks the next
            // authenticator of its chain, and refuses if there is none.
            let result = if r.kind == RefusalKind::Stranger {
                "ignore"
            } else {
                "deny"
            };
            EmqxReply::only(result).into_response()
        }
    }
}

/// The reply that admits `admitted`: an admin is a superuser (no ACL);
/// everyone else gets its rules. The login lasts [`SESSION_TTL`], an
/// onboarding one as long as its hold ([`ONBOARDING_HOLD`]).
fn emqx_allow(admitted: &Admitted, client_id: &str) -> EmqxReply {
    let ttl = match admitted {
        Admitted::Onboarding(_) => ONBOARDING_HOLD,
        _ => SESSION_TTL,
    };
    let expire_at = protocol::now_ms() / 1000 + ttl.as_secs();
    let who = admitted.who();
    let superuser = who == Who::Admin;
    EmqxReply {
        result: "allow",
        is_superuser: Some(superuser),
        acl: (!superuser).then(|| acl::emqx_rules(&who, client_id, admitted.ssids())),
        expire_at: Some(expire_at),
    }
}

/// What an EMQX rule on client disconnections sends: at least the client
/// id.
#[derive(Deserialize)]
struct EmqxDisconnected {
    clientid: String,
}

async fn emqx_disconnected<S: EnrollmentStore>(
    State(h): State<Arc<HttpAuth<S>>>,
    raw: Bytes,
) -> Response {
    match body::<EmqxDisconnected>(EMQX_DISCONNECTED_PATH, &raw, BODY_LIMIT) {
        Ok(event) => {
            h.auth.disconnected(&event.clientid);
            Json(json!({})).into_response()
        }
        Err(bad) => bad.into_response(),
    }
}

// --- VerneMQ ---

/// `auth_on_register` (and `_m5`): VerneMQ sends a null username or
/// password when the CONNECT had none. No `Debug`: it holds the password.
#[derive(Deserialize)]
struct VmqRegister {
    client_id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    peer_addr: Option<String>,
}

#[derive(Deserialize)]
struct VmqSubscribe {
    client_id: String,
    #[serde(default)]
    username: Option<String>,
    topics: Vec<VmqTopic>,
}

#[derive(Deserialize)]
struct VmqTopic {
    topic: String,
}

/// `auth_on_publish` (and `_m5`): the payload is base64, VerneMQ's
/// default (`base64encode`).
#[derive(Deserialize)]
struct VmqPublish {
    client_id: String,
    #[serde(default)]
    username: Option<String>,
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    retain: bool,
}

#[derive(Deserialize)]
struct VmqClient {
    client_id: String,
}

fn vmq_ok() -> Response {
    Json(json!({"result": "ok"})).into_response()
}

fn vmq_next() -> Response {
    Json(json!({"result": "next"})).into_response()
}

/// VerneMQ's refusal. Its webhooks plugin passes the error on as a
/// string, so the embedded broker's distinction between a wrong login
/// (CONNACK 4) and a policy refusal (5) does not reach the client.
fn vmq_refuse() -> Response {
    Json(json!({"result": {"error": "not_allowed"}})).into_response()
}

async fn vernemq_register<S: EnrollmentStore>(
    State(h): State<Arc<HttpAuth<S>>>,
    raw: Bytes,
) -> Response {
    let req: VmqRegister = match body(VERNEMQ_REGISTER_PATH, &raw, BODY_LIMIT) {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    let peer = req.peer_addr.as_deref();
    let Some(username) = req.username.as_deref().filter(|u| !u.is_empty()) else {
        warn!(target: "audit", broker = "vernemq", client_id = req.client_id, peer, reason = "no login", "external broker connect refused");
        return vmq_refuse();
    };
    let login = Credentials {
        client_id: &req.client_id,
        username,
        password: req.password.as_deref().unwrap_or(""),
    };
    match h.auth.admit_async(&login, &*h.store).await {
        Ok(_) => {
            info!(target: "audit", broker = "vernemq", client_id = login.client_id, username, peer, "connected");
            vmq_ok()
        }
        Err(r) => {
            audit_refusal("vernemq", &login, peer, &r);
            if r.kind == RefusalKind::Stranger {
                vmq_next()
            } else {
                vmq_refuse()
            }
        }
    }
}

/// The SSIDs `who` serves, if it is an AP (read once per request).
async fn ssids_of<S: EnrollmentStore>(store: &S, who: &Who<'_>) -> Vec<String> {
    let Who::Ap(ap_id) = *who else {
        return Vec::new();
    };
    match store.ap(ap_id).await {
        Ok(record) => record.map(|r| r.ssids).unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, ap_id, "cannot read the verifier store for an AP");
            Vec::new()
        }
    }
}

/// Every filter of one SUBSCRIBE, or none: one the ACL refuses refuses
/// the SUBSCRIBE, as on the embedded broker.
async fn vernemq_subscribe<S: EnrollmentStore>(
    State(h): State<Arc<HttpAuth<S>>>,
    raw: Bytes,
) -> Response {
    let req: VmqSubscribe = match body(VERNEMQ_SUBSCRIBE_PATH, &raw, BODY_LIMIT) {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    let Some(username) = req.username.as_deref() else {
        return vmq_refuse();
    };
    let ssids = ssids_of(&*h.store, &h.auth.who(username)).await;
    let all = req.topics.iter().all(|t| {
        let request = Request {
            action: acl::Action::Subscribe,
            topic: &t.topic,
            payload: b"",
            retain: false,
        };
        h.auth
            .allow(&req.client_id, username, &request, |_| ssids.clone())
    });
    if all {
        vmq_ok()
    } else {
        vmq_refuse()
    }
}

async fn vernemq_publish<S: EnrollmentStore>(
    State(h): State<Arc<HttpAuth<S>>>,
    raw: Bytes,
) -> Response {
    let req: VmqPublish = match body(VERNEMQ_PUBLISH_PATH, &raw, body_limit(VERNEMQ_PUBLISH_PATH)) {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    let Some(username) = req.username.as_deref() else {
        return vmq_refuse();
    };
    let Ok(payload) = STANDARD.decode(req.payload.as_bytes()) else {
        warn!(target: "audit", client_id = req.client_id, username, topic = req.topic, "publish refused: its payload is not base64 (keep vmq_webhooks' base64encode on)");
        return vmq_refuse();
    };
    let request = Request {
        action: acl::Action::Publish,
        topic: &req.topic,
        payload: &payload,
        retain: req.retain,
    };
    if h.auth
        .allow(&req.client_id, username, &request, |_| Vec::new())
    {
        vmq_ok()
    } else {
        vmq_refuse()
    }
}

async fn vernemq_gone<S: EnrollmentStore>(
    State(h): State<Arc<HttpAuth<S>>>,
    raw: Bytes,
) -> Response {
    match body::<VmqClient>(VERNEMQ_GONE_PATH, &raw, BODY_LIMIT) {
        Ok(client) => {
            h.auth.disconnected(&client.client_id);
            Json(json!({})).into_response()
        }
        Err(bad) => bad.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn a_secret_is_long_and_plain_enough_for_a_header_and_a_url() {
        assert!(CallerSecret::new(SECRET).is_ok());
        assert!(CallerSecret::new(&SECRET[1..]).is_err(), "31 characters");
        assert!(CallerSecret::new(&format!("{SECRET}:")).is_err());
        assert!(CallerSecret::new(&format!("{SECRET} x")).is_err());
        assert!(CallerSecret::new(&format!("{SECRET}@")).is_err());
        let (secret, text) = CallerSecret::generate();
        assert_eq!(text.len(), 64);
        assert!(CallerSecret::new(&text).is_ok());
        assert!(secret.admits(&with(&format!("Bearer {text}"))).is_ok());
        let (_, other) = CallerSecret::generate();
        assert_ne!(text, other);
    }

    #[test]
    fn the_secret_is_taken_as_bearer_or_as_basics_password_and_nothing_else() {
        let secret = CallerSecret::new(SECRET).unwrap();
        let basic = |pair: &str| format!("Basic {}", STANDARD.encode(pair));
        for ok in [
            format!("Bearer {SECRET}"),
            format!("bearer  {SECRET} "),
            basic(&format!("vernemq:{SECRET}")),
            basic(&format!(":{SECRET}")),
        ] {
            assert!(secret.admits(&with(&ok)).is_ok(), "{ok}");
        }
        for wrong in [
            format!("Bearer {}", &SECRET[..31]),
            format!("Bearer {SECRET}0"),
            format!("Bearer{SECRET}"),
            SECRET.to_owned(),
            format!("Token {SECRET}"),
            basic(SECRET),
            basic(&format!("{SECRET}:x")),
            format!("Basic {SECRET}"),
            "Bearer ".to_owned(),
        ] {
            assert!(secret.admits(&with(&wrong)).is_err(), "{wrong}");
        }
        assert!(secret.admits(&HeaderMap::new()).is_err());
    }

    #[test]
    fn a_missing_secret_file_is_made_private_once_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("http-auth.secret");
        assert!(matches!(
            CallerSecret::load(&path, false),
            Err(SecretError::Read { .. })
        ));
        let (first, source) = CallerSecret::load(&path, true).unwrap();
        assert_eq!(source, SecretSource::Created);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(first
            .admits(&with(&format!("Bearer {}", text.trim())))
            .is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = CallerSecret::load(&path, true).unwrap();
        assert_eq!(source, SecretSource::Read);
        assert_eq!(again.sha256, first.sha256, "not made again");
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            CallerSecret::load(&path, true),
            Err(SecretError::Invalid { .. })
        ));
    }

    #[test]
    fn an_admin_is_a_superuser_and_an_onboarding_login_lasts_its_hold() {
        let admin = emqx_allow(&Admitted::Admin, "cli");
        assert_eq!(admin.is_superuser, Some(true));
        assert!(admin.acl.is_none());
        let now = protocol::now_ms() / 1000;
        let onboarding = emqx_allow(&Admitted::Onboarding("u".into()), "u");
        let expire_at = onboarding.expire_at.unwrap();
        assert!((now + 89..=now + 91).contains(&expire_at), "{expire_at}");
        assert_eq!(onboarding.is_superuser, Some(false));
        let json = serde_json::to_value(EmqxReply::only("deny").0).unwrap();
        assert_eq!(json, json!({"result": "deny"}));
    }
}
