//! The HTTP authentication endpoint an external broker asks
//! (`verifier::auth::http`), over a real socket and a sled store, with
//! requests shaped as EMQX's and VerneMQ's documentation shows them.
//! Neither broker runs here.
//!
//! EMQX ≥ 5.8 (docs.emqx.com, *Use HTTP Service*): a POST whose JSON body
//! is the configured template with its placeholders rendered, e.g.
//! `body { clientid = "${clientid}", username = "${username}", password =
//! "${password}", peerhost = "${peerhost}" }`; the reply is 200 with
//! `{"result": "allow" | "deny" | "ignore", "is_superuser": …, "acl": […],
//! "expire_at": …}`.
//!
//! VerneMQ (vmq_webhooks, *Webhooks*): `auth_on_register` gets
//! `{"peer_addr", "peer_port", "username", "password", "mountpoint",
//! "client_id", "clean_session"}`, `auth_on_subscribe` `{"client_id",
//! "mountpoint", "username", "topics": [{"topic", "qos"}]}`,
//! `auth_on_publish` `{"username", "client_id", "mountpoint", "qos",
//! "topic", "payload" (base64), "retain"}`; the replies are
//! `{"result": "ok"}`, `{"result": "next"}` or `{"result": {"error":
//! "not_allowed"}}`.
//!
//! Every request carries the endpoint's secret, as each broker sends it:
//! EMQX as a configured header, `Authorization: Bearer SECRET`; VerneMQ,
//! whose webhooks take no custom header, from the endpoint URL's userinfo
//! (`http://vernemq:SECRET@host/…`), which its HTTP client (hackney) sends
//! as `Authorization: Basic base64(vernemq:SECRET)`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use protocol::crypto::{device_login_token, login_nonce, sha256_hex, DeviceKey};
use protocol::DeviceUuid;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use verifier::auth::http::CallerSecret;
use verifier::auth::HttpAuth;
use verifier::{ApRecord, EnrollmentStore, Store};

const DEVICE: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";
const NEW_DEVICE: &str = "00000000-0000-4000-8000-000000000002";
const OTHER: &str = "00000000-0000-4000-8000-000000000001";
/// Onboarding sessions of those two: `UUID.SESSION`.
const NEW_SESSION: &str = "00000000-0000-4000-8000-000000000002.s1";
const OTHER_SESSION: &str = "00000000-0000-4000-8000-000000000001.s1";
const TIMEOUT: Duration = Duration::from_millis(500);
/// The endpoint's secret, shared with the broker.
const SECRET: &str = "3f6c0e1a9b7d45e2a8c4f0d6b2e9a7c15d3b8f4e6a2c0d9b";

struct Endpoint {
    addr: SocketAddr,
    device_key: DeviceKey,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A store with an onboarded device, a device not onboarded yet and AP
/// `ap-1` for SSID `home`; gateway `gw-1`; admin `admin`.
async fn endpoint() -> Endpoint {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("verifier")).unwrap();
    let device_key = DeviceKey::generate();
    let device = DeviceUuid::parse(DEVICE).unwrap();
    store.enroll(&device, "pass-1", false).await.unwrap();
    store
        .set_device_key(&device, &device_key.public_hex())
        .await
        .unwrap();
    let new_device = DeviceUuid::parse(NEW_DEVICE).unwrap();
    store.enroll(&new_device, "pass-2", false).await.unwrap();
    store
        .put_ap(
            "ap-1",
            &ApRecord {
                ssids: vec!["home".into()],
                credential_sha256: sha256_hex("ap-secret"),
                registered_ms: 0,
            },
        )
        .await
        .unwrap();
    store.flush().await.unwrap();
    let gateways = Arc::new(registry::GatewayLogins::default());
    gateways.set("gw-1", Some(&sha256_hex("gw-secret")));
    let admins = HashMap::from([("admin".to_owned(), sha256_hex("admin-token"))]);
    let secret = CallerSecret::new(SECRET).unwrap();
    let auth =
        HttpAuth::new(Arc::new(store), admins, gateways, secret).with_request_timeout(TIMEOUT);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(verifier::auth::serve(
        listener,
        Arc::new(auth),
        shutdown.clone(),
    ));
    Endpoint {
        addr,
        device_key,
        shutdown,
        _dir: dir,
    }
}

/// One raw HTTP/1.1 exchange: the status code and the body.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The endpoint may answer (413) and close before it has read all of
    // an over-size body: what it answered is what counts.
    let _ = stream.write_all(raw).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the endpoint answers");
    if out.is_empty() {
        read.unwrap();
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The `Authorization` header line EMQX sends (`headers` in its
/// authenticator's config).
fn bearer() -> String {
    format!("Authorization: Bearer {SECRET}\r\n")
}

/// The `Authorization` header line VerneMQ's HTTP client makes of an
/// endpoint URL's `vernemq:SECRET@`.
fn basic() -> String {
    format!(
        "Authorization: Basic {}\r\n",
        STANDARD.encode(format!("vernemq:{SECRET}"))
    )
}

/// The header line the broker that calls `path` sends.
fn caller_of(path: &str) -> String {
    if path.starts_with("/vernemq/") {
        basic()
    } else {
        bearer()
    }
}

/// A POST as EMQX's HTTP authenticator (or VerneMQ's webhooks) sends it,
/// with the secret.
async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    post_with(addr, path, &caller_of(path), body).await
}

/// A POST with `auth`: header lines, each ending in CRLF, or none.
async fn post_with(addr: SocketAddr, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Request-Source: EMQX\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw).await
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = post(addr, path, body.to_string().as_bytes()).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

/// EMQX's rendering of `{clientid, username, password, peerhost}`.
async fn emqx(addr: SocketAddr, clientid: &str, username: &str, password: &str) -> Value {
    let (status, reply) = post_json(
        addr,
        "/emqx/auth",
        &json!({
            "clientid": clientid,
            "username": username,
            "password": password,
            "peerhost": "192.0.2.7",
        }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

fn rules(reply: &Value) -> &Vec<Value> {
    reply["acl"].as_array().expect("an acl list")
}

fn now_secs() -> u64 {
    protocol::now_ms() / 1000
}

fn token(key: &DeviceKey) -> String {
    device_login_token(key, DEVICE, protocol::now_ms(), &login_nonce())
}

#[tokio::test]
async fn emqx_an_ap_is_admitted_with_its_credential_and_gets_its_acl() {
    let e = endpoint().await;
    let reply = emqx(e.addr, "ap.ap-1", "ap.ap-1", "ap-secret").await;
    assert_eq!(reply["result"], "allow");
    assert_eq!(reply["is_superuser"], false);
    let expire_at = reply["expire_at"].as_u64().unwrap();
    assert!((now_secs() + 3590..=now_secs() + 3610).contains(&expire_at));
    let acl = rules(&reply);
    for rule in [
        json!({"permission": "allow", "action": "subscribe", "topic": "eq wlan/home/access/request"}),
        json!({"permission": "allow", "action": "subscribe", "topic": "eq wlan/home/access/proof"}),
        json!({"permission": "allow", "action": "subscribe", "topic": "eq ap/ap-1/verify/response"}),
        json!({"permission": "allow", "action": "subscribe", "topic": "eq ap/ap-1/confirm"}),
        json!({"permission": "allow", "action": "publish", "topic": "eq verifier/verify/request", "retain": false}),
        json!({"permission": "allow", "action": "publish", "topic": "device/+/access/challenge", "retain": false}),
        json!({"permission": "allow", "action": "publish", "topic": "device/+/access/response", "retain": false}),
        json!({"permission": "allow", "action": "publish", "topic": "eq ap/ap-1/outcome", "retain": false}),
        json!({"permission": "deny", "action": "publish", "topic": "eq device//access/challenge"}),
    ] {
        assert!(acl.contains(&rule), "{rule} not in {acl:?}");
    }
    assert_eq!(
        acl.last(),
        Some(&json!({"permission": "deny", "action": "all", "topic": "#"}))
    );
    let text = reply.to_string();
    assert!(!text.contains("office") && !text.contains("ap-2"), "{text}");

    // Its named sessions too; never another AP's client id or a wrong
    // credential.
    let phone = emqx(e.addr, "ap.ap-1.phone", "ap.ap-1", "ap-secret").await;
    assert_eq!(phone["result"], "allow");
    assert_eq!(
        emqx(e.addr, "ap.ap-1", "ap.ap-1", "wrong").await,
        json!({"result": "deny"})
    );
    assert_eq!(
        emqx(e.addr, "ap.ap-2", "ap.ap-1", "ap-secret").await,
        json!({"result": "deny"})
    );
    assert_eq!(
        emqx(e.addr, "ap.ap-9", "ap.ap-9", "ap-secret").await,
        json!({"result": "deny"}),
        "no such AP"
    );
}

#[tokio::test]
async fn emqx_an_admin_is_a_superuser_and_a_gateway_gets_its_own_topics() {
    let e = endpoint().await;
    let admin = emqx(e.addr, "admin-cli-1", "admin", "admin-token").await;
    assert_eq!(admin["result"], "allow");
    assert_eq!(admin["is_superuser"], true);
    assert!(admin.get("acl").is_none(), "{admin}");
    assert!(admin["expire_at"].as_u64().unwrap() > now_secs());
    assert_eq!(
        emqx(e.addr, "admin-cli-1", "admin", "guess").await,
        json!({"result": "deny"})
    );
    assert_eq!(
        emqx(e.addr, DEVICE, "admin", "admin-token").await,
        json!({"result": "deny"}),
        "an admin may not take a device's client id"
    );

    let gateway = emqx(e.addr, "gateway.gw-1", "gateway.gw-1", "gw-secret").await;
    assert_eq!(gateway["result"], "allow");
    assert_eq!(gateway["is_superuser"], false);
    let acl = rules(&gateway);
    for rule in [
        json!({"permission": "allow", "action": "subscribe", "topic": "eq gateway/gw-1/assign"}),
        json!({"permission": "allow", "action": "subscribe", "topic": "eq gateway/gw-1/notify"}),
        json!({"permission": "allow", "action": "publish", "topic": "eq gateway/gw-1/status", "retain": false}),
        json!({"permission": "allow", "action": "publish", "topic": "eq registry/sync", "retain": false}),
    ] {
        assert!(acl.contains(&rule), "{rule} not in {acl:?}");
    }
    assert_eq!(
        emqx(e.addr, "gateway.gw-1", "gateway.gw-1", "x").await,
        json!({"result": "deny"})
    );

    // A username that is none of the platform's: the next authenticator
    // of EMQX's chain decides. No username at all is refused.
    assert_eq!(
        emqx(e.addr, "ops-1", "mallory", "x").await,
        json!({"result": "ignore"})
    );
    assert_eq!(
        emqx(e.addr, "anon", "", "").await,
        json!({"result": "deny"})
    );
}

#[tokio::test]
async fn emqx_a_device_token_logs_in_once_and_a_replay_is_refused() {
    let e = endpoint().await;
    let token = token(&e.device_key);
    let reply = emqx(e.addr, DEVICE, DEVICE, &token).await;
    assert_eq!(reply["result"], "allow", "{reply}");
    assert_eq!(reply["is_superuser"], false);
    let acl = rules(&reply);
    for rule in [
        json!({"permission": "allow", "action": "subscribe", "topic": format!("eq device/{DEVICE}/gateway")}),
        json!({"permission": "allow", "action": "subscribe", "topic": format!("eq device/{DEVICE}/access/response")}),
        json!({"permission": "allow", "action": "publish", "topic": "eq registry/query", "retain": false}),
        json!({"permission": "allow", "action": "publish", "topic": "wlan/+/access/request", "retain": false}),
        json!({"permission": "deny", "action": "publish", "topic": "eq wlan//access/request"}),
    ] {
        assert!(acl.contains(&rule), "{rule} not in {acl:?}");
    }
    let text = reply.to_string();
    assert!(!text.contains(OTHER), "{text}");
    assert!(
        !acl.iter().any(|r| r["action"] == "subscribe"
            && r["permission"] == "allow"
            && r["topic"].as_str().unwrap().contains('+')),
        "no wildcard subscription: {acl:?}"
    );

    assert_eq!(
        emqx(e.addr, DEVICE, DEVICE, &token).await,
        json!({"result": "deny"}),
        "the same token again"
    );
    let other_key = DeviceKey::generate();
    assert_eq!(
        emqx(e.addr, DEVICE, DEVICE, &self::token(&other_key)).await,
        json!({"result": "deny"}),
        "signed by another key"
    );
    assert_eq!(
        emqx(e.addr, "someone", DEVICE, &self::token(&e.device_key)).await,
        json!({"result": "deny"}),
        "another client id"
    );
    assert_eq!(
        emqx(e.addr, NEW_DEVICE, NEW_DEVICE, "dk1.1.2.3").await,
        json!({"result": "deny"}),
        "no key yet"
    );
}

#[tokio::test]
async fn emqx_an_onboarding_session_is_confined_and_holds_its_client_id() {
    let e = endpoint().await;
    let reply = emqx(e.addr, NEW_SESSION, "onboarding", "").await;
    assert_eq!(reply["result"], "allow", "{reply}");
    let expire_at = reply["expire_at"].as_u64().unwrap();
    assert!(
        (now_secs() + 85..=now_secs() + 95).contains(&expire_at),
        "as long as its hold: {expire_at}"
    );
    let acl = rules(&reply);
    let allowed: Vec<&str> = acl
        .iter()
        .filter(|r| r["permission"] == "allow")
        .map(|r| r["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        allowed,
        [
            format!("eq device/{NEW_DEVICE}/access/response").as_str(),
            &format!("eq device/{NEW_DEVICE}/access/challenge"),
            &format!("eq device/{NEW_DEVICE}/confirm"),
            "wlan/+/access/request",
            "wlan/+/access/proof",
        ]
    );

    // A second connection while the first onboards is refused; once
    // EMQX reports the first gone, the device may connect again.
    assert_eq!(
        emqx(e.addr, NEW_SESSION, "onboarding", "").await,
        json!({"result": "deny"})
    );
    let (status, _) = post_json(
        e.addr,
        "/emqx/disconnected",
        &json!({"clientid": NEW_SESSION, "username": "onboarding", "reason": "normal"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        emqx(e.addr, NEW_SESSION, "onboarding", "").await["result"],
        "allow"
    );
    // Not enrolled: admitted all the same (nobody learns which UUIDs
    // are enrolled); the bare UUID is no onboarding session's client id.
    assert_eq!(
        emqx(e.addr, OTHER_SESSION, "onboarding", "").await["result"],
        "allow",
        "not enrolled"
    );
    assert_eq!(
        emqx(e.addr, OTHER, "onboarding", "").await,
        json!({"result": "deny"}),
        "the bare UUID"
    );
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_and_the_endpoint_keeps_serving() {
    let e = endpoint().await;
    for garbage in [
        &b"{not json"[..],
        b"",
        b"[]",
        b"{\"username\":\"admin\",\"password\":\"admin-token\"}",
        b"{\"clientid\":\"c\",\"username\":\"admin\",\"password\":123456789}",
        &[0xff, 0xfe, 0x00][..],
    ] {
        let (status, body) = post(e.addr, "/emqx/auth", garbage).await;
        assert_eq!(status, 400, "{garbage:?}: {body}");
        assert!(!body.contains("123456789"), "a password echoed: {body}");
    }
    let huge = format!(
        r#"{{"clientid":"c","username":"admin","password":"{}"}}"#,
        "x".repeat(20 * 1024)
    );
    let (status, _) = post(e.addr, "/emqx/auth", huge.as_bytes()).await;
    assert_eq!(status, 413, "over the 16 KiB bound");
    let (status, _) = post(e.addr, "/vernemq/auth_on_register", huge.as_bytes()).await;
    assert_eq!(status, 413);
    // Sent without a length (chunked): cut off at the bound all the same.
    let mut chunked = format!("POST /emqx/auth HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", bearer()).into_bytes();
    chunked.extend_from_slice(format!("{:x}\r\n{huge}\r\n0\r\n\r\n", huge.len()).as_bytes());
    let (status, _) = exchange(e.addr, &chunked).await;
    assert_eq!(status, 413, "chunked, over the bound");
    // Announced, not sent: refused on its length alone.
    let (status, _) = exchange(
        e.addr,
        format!(
            "POST /vernemq/auth_on_publish HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            basic(),
            600 * 1024
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 413, "a publish's bound is larger, not unbounded");

    let (status, _) = exchange(
        e.addr,
        format!(
            "GET /emqx/auth HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
            bearer()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status, 405);
    let (status, _) = post(e.addr, "/elsewhere", b"{}").await;
    assert_eq!(status, 404);

    // A body that never comes is given up on.
    let started = std::time::Instant::now();
    let (status, _) = exchange(
        e.addr,
        format!("POST /emqx/auth HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"clientid\":", bearer()).as_bytes(),
    )
    .await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < TIMEOUT * 10, "{:?}", started.elapsed());

    assert_eq!(
        emqx(e.addr, "admin-cli", "admin", "admin-token").await["result"],
        "allow"
    );
}

// --- VerneMQ ---

/// `auth_on_register`, as vmq_webhooks sends it.
async fn register(addr: SocketAddr, client_id: &str, username: Value, password: Value) -> Value {
    let (status, reply) = post_json(
        addr,
        "/vernemq/auth_on_register",
        &json!({
            "peer_addr": "127.0.0.1",
            "peer_port": 8888,
            "username": username,
            "password": password,
            "mountpoint": "",
            "client_id": client_id,
            "clean_session": false,
        }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn subscribe(addr: SocketAddr, client_id: &str, username: &str, topics: &[&str]) -> Value {
    let topics: Vec<Value> = topics
        .iter()
        .map(|t| json!({"topic": t, "qos": 1}))
        .collect();
    let (status, reply) = post_json(
        addr,
        "/vernemq/auth_on_subscribe",
        &json!({
            "client_id": client_id,
            "mountpoint": "",
            "username": username,
            "topics": topics,
        }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn publish(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    topic: &str,
    payload: &[u8],
    retain: bool,
) -> Value {
    let (status, reply) = post_json(
        addr,
        "/vernemq/auth_on_publish",
        &json!({
            "username": username,
            "client_id": client_id,
            "mountpoint": "",
            "qos": 1,
            "topic": topic,
            "payload": STANDARD.encode(payload),
            "retain": retain,
        }),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

fn ok() -> Value {
    json!({"result": "ok"})
}

fn not_allowed() -> Value {
    json!({"result": {"error": "not_allowed"}})
}

#[tokio::test]
async fn vernemq_register_admits_the_platforms_identities_only() {
    let e = endpoint().await;
    let token = token(&e.device_key);
    assert_eq!(
        register(e.addr, DEVICE, json!(DEVICE), json!(token)).await,
        ok()
    );
    assert_eq!(
        register(e.addr, DEVICE, json!(DEVICE), json!(token)).await,
        not_allowed(),
        "a replayed token"
    );
    assert_eq!(
        register(e.addr, "ap.ap-1", json!("ap.ap-1"), json!("ap-secret")).await,
        ok()
    );
    assert_eq!(
        register(e.addr, "ap.ap-1", json!("ap.ap-1"), json!("wrong")).await,
        not_allowed()
    );
    assert_eq!(
        register(
            e.addr,
            "gateway.gw-1",
            json!("gateway.gw-1"),
            json!("gw-secret")
        )
        .await,
        ok()
    );
    assert_eq!(
        register(e.addr, "x", Value::Null, Value::Null).await,
        not_allowed(),
        "no login"
    );
    assert_eq!(
        register(e.addr, "ops-1", json!("mallory"), json!("x")).await,
        json!({"result": "next"})
    );
    // MQTT 5's hook takes the same body, with properties.
    let (status, reply) = post_json(
        e.addr,
        "/vernemq/auth_on_register_m5",
        &json!({
            "peer_addr": "127.0.0.1", "peer_port": 8888, "mountpoint": "",
            "client_id": "admin-1", "username": "admin", "password": "admin-token",
            "clean_start": true, "properties": {},
        }),
    )
    .await;
    assert_eq!((status, reply), (200, ok()));

    // An onboarding device holds its UUID until VerneMQ says it is gone.
    let onboard = || register(e.addr, NEW_SESSION, json!("onboarding"), Value::Null);
    assert_eq!(onboard().await, ok());
    assert_eq!(onboard().await, not_allowed());
    let (status, reply) = post_json(
        e.addr,
        "/vernemq/on_client_gone",
        &json!({"client_id": NEW_SESSION, "mountpoint": ""}),
    )
    .await;
    assert_eq!((status, reply), (200, json!({})));
    assert_eq!(onboard().await, ok());
}

#[tokio::test]
async fn vernemq_subscribe_and_publish_are_the_in_process_acl() {
    let e = endpoint().await;
    // An AP reads its SSID's requests, not another's.
    assert_eq!(
        subscribe(
            e.addr,
            "ap.ap-1",
            "ap.ap-1",
            &["wlan/home/access/request", "ap/ap-1/verify/response"]
        )
        .await,
        ok()
    );
    assert_eq!(
        subscribe(
            e.addr,
            "ap.ap-1",
            "ap.ap-1",
            &["ap/ap-1/confirm", "wlan/office/access/request"]
        )
        .await,
        not_allowed(),
        "one refused filter refuses the SUBSCRIBE"
    );
    // A device reads its own topics only.
    assert_eq!(
        subscribe(
            e.addr,
            DEVICE,
            DEVICE,
            &[&format!("device/{DEVICE}/gateway")]
        )
        .await,
        ok()
    );
    assert_eq!(
        subscribe(
            e.addr,
            DEVICE,
            DEVICE,
            &[&format!("device/{OTHER}/gateway")]
        )
        .await,
        not_allowed()
    );
    assert_eq!(
        subscribe(e.addr, DEVICE, DEVICE, &["#"]).await,
        not_allowed()
    );

    // A device speaks for itself, in the payload too: VerneMQ checks what
    // EMQX's rules cannot.
    let own = format!(r#"{{"device_id":"{DEVICE}"}}"#);
    let claimed = format!(r#"{{"device_id":"{OTHER}"}}"#);
    assert_eq!(
        publish(
            e.addr,
            DEVICE,
            DEVICE,
            "registry/query",
            own.as_bytes(),
            false
        )
        .await,
        ok()
    );
    assert_eq!(
        publish(
            e.addr,
            DEVICE,
            DEVICE,
            "registry/query",
            claimed.as_bytes(),
            false
        )
        .await,
        not_allowed()
    );
    assert_eq!(
        publish(
            e.addr,
            DEVICE,
            DEVICE,
            "registry/query",
            own.as_bytes(),
            true
        )
        .await,
        not_allowed(),
        "only an admin retains"
    );
    assert_eq!(
        publish(
            e.addr,
            DEVICE,
            DEVICE,
            &format!("device/{OTHER}/access/response"),
            b"{}",
            false
        )
        .await,
        not_allowed(),
        "another device's topic"
    );
    assert_eq!(
        publish(
            e.addr,
            DEVICE,
            DEVICE,
            &format!("device/{DEVICE}/gateway"),
            b"{}",
            false
        )
        .await,
        not_allowed(),
        "its own answers come from the registry"
    );
    // The AP answers devices.
    assert_eq!(
        publish(
            e.addr,
            "ap.ap-1",
            "ap.ap-1",
            &format!("device/{DEVICE}/access/challenge"),
            b"{}",
            false
        )
        .await,
        ok()
    );
    // A payload that is not base64 (vmq_webhooks' default) is refused.
    let (status, reply) = post_json(
        e.addr,
        "/vernemq/auth_on_publish",
        &json!({
            "username": DEVICE, "client_id": DEVICE, "mountpoint": "", "qos": 1,
            "topic": "registry/query", "payload": own, "retain": false,
        }),
    )
    .await;
    assert_eq!((status, reply), (200, not_allowed()));

    // An onboarding device's publishes are rate-limited, as on the
    // embedded broker: a burst of 10, then refused.
    let request = format!(r#"{{"uuid":"{NEW_DEVICE}","ssid":"home"}}"#);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(
            publish(
                e.addr,
                NEW_SESSION,
                "onboarding",
                "wlan/home/access/request",
                request.as_bytes(),
                false,
            )
            .await,
        );
    }
    assert!(answers[..10].iter().all(|a| *a == ok()), "{answers:?}");
    assert_eq!(answers[11], not_allowed());

    // An admin may publish an import batch's size.
    let batch = vec![b'x'; 200 * 1024];
    assert_eq!(
        publish(
            e.addr,
            "admin-1",
            "admin",
            "verifier/admin/request",
            &batch,
            false
        )
        .await,
        ok()
    );
}

// --- The caller ---

/// What a caller that does not have the secret may send instead.
fn impostors() -> Vec<String> {
    let basic = |pair: &str| format!("Authorization: Basic {}\r\n", STANDARD.encode(pair));
    vec![
        String::new(),
        "Authorization: Bearer 0000000000000000000000000000000000000000\r\n".into(),
        format!("Authorization: Bearer {}\r\n", &SECRET[..SECRET.len() - 1]),
        format!("Authorization: Bearer {SECRET}x\r\n"),
        format!("Authorization: {SECRET}\r\n"),
        format!("X-Secret: {SECRET}\r\n"),
        basic("vernemq:guess"),
        basic(SECRET),
        basic(&format!("{SECRET}:")),
    ]
}

const ROUTES: [&str; 11] = [
    "/emqx/auth",
    "/emqx/disconnected",
    "/vernemq/auth_on_register",
    "/vernemq/auth_on_register_m5",
    "/vernemq/auth_on_subscribe",
    "/vernemq/auth_on_subscribe_m5",
    "/vernemq/auth_on_publish",
    "/vernemq/auth_on_publish_m5",
    "/vernemq/on_client_offline",
    "/vernemq/on_client_gone",
    "/elsewhere",
];

/// `body` to `path` with each impostor's header: every one 401.
async fn refused_to_all(addr: SocketAddr, path: &str, body: &Value) {
    for auth in impostors() {
        let (status, reply) = post_with(addr, path, &auth, body.to_string().as_bytes()).await;
        assert_eq!(status, 401, "{path} with {auth:?}: {reply}");
        assert_eq!(
            serde_json::from_str::<Value>(&reply).unwrap(),
            json!({"error": "unauthorized"})
        );
    }
}

#[tokio::test]
async fn a_caller_without_the_secret_gets_401_on_every_path_before_its_body_is_read() {
    let e = endpoint().await;
    let admin = json!({"clientid": "c", "username": "admin", "password": "admin-token"});
    for path in ROUTES {
        refused_to_all(e.addr, path, &admin).await;
    }
    // The body is not read: one announced over the bound, or one that
    // never comes, is 401 at once, not 413 or 503 after the timeout.
    let started = std::time::Instant::now();
    for head in [
        "POST /emqx/auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"clientid\":",
        "POST /vernemq/auth_on_publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    ] {
        let (status, _) = exchange(e.addr, head.as_bytes()).await;
        assert_eq!(status, 401, "{head}");
    }
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    // The right secret, in the other broker's form, is the secret.
    let (status, _) = post_with(e.addr, "/emqx/auth", &basic(), admin.to_string().as_bytes()).await;
    assert_eq!(status, 200);
    let (status, _) = post_with(
        e.addr,
        "/vernemq/on_client_gone",
        &bearer(),
        br#"{"client_id":"c","mountpoint":""}"#,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_caller_without_the_secret_spends_no_token_hold_or_rate_and_releases_no_hold() {
    let e = endpoint().await;
    // A device's one-time login token, offered by impostors to both
    // brokers' routes: still good for the broker's own request after.
    let token = token(&e.device_key);
    refused_to_all(
        e.addr,
        "/emqx/auth",
        &json!({"clientid": DEVICE, "username": DEVICE, "password": token}),
    )
    .await;
    refused_to_all(
        e.addr,
        "/vernemq/auth_on_register",
        &json!({"client_id": DEVICE, "username": DEVICE, "password": token, "peer_addr": "192.0.2.7"}),
    )
    .await;
    assert_eq!(
        emqx(e.addr, DEVICE, DEVICE, &token).await["result"],
        "allow",
        "the token was not spent"
    );
    assert_eq!(
        emqx(e.addr, DEVICE, DEVICE, &token).await,
        json!({"result": "deny"}),
        "the broker's own request spent it"
    );

    // An onboarding UUID: impostors take no hold on it...
    refused_to_all(
        e.addr,
        "/emqx/auth",
        &json!({"clientid": NEW_SESSION, "username": "onboarding", "password": ""}),
    )
    .await;
    refused_to_all(
        e.addr,
        "/vernemq/auth_on_register",
        &json!({"client_id": NEW_SESSION, "username": "onboarding", "password": null}),
    )
    .await;
    assert_eq!(
        emqx(e.addr, NEW_SESSION, "onboarding", "").await["result"],
        "allow",
        "no hold was taken"
    );
    // ...and release none: the device's hold stands.
    refused_to_all(
        e.addr,
        "/emqx/disconnected",
        &json!({"clientid": NEW_SESSION}),
    )
    .await;
    refused_to_all(
        e.addr,
        "/vernemq/on_client_gone",
        &json!({"client_id": NEW_SESSION, "mountpoint": ""}),
    )
    .await;
    assert_eq!(
        emqx(e.addr, NEW_SESSION, "onboarding", "").await,
        json!({"result": "deny"}),
        "the hold was not released"
    );

    // An onboarding client's publish allowance (a burst of 10): spent by
    // none of the impostors' publishes.
    let request = format!(r#"{{"uuid":"{OTHER}","ssid":"home"}}"#);
    let body = json!({
        "username": "onboarding", "client_id": OTHER_SESSION, "mountpoint": "", "qos": 1,
        "topic": "wlan/home/access/request", "payload": STANDARD.encode(&request),
        "retain": false,
    });
    for _ in 0..2 {
        refused_to_all(e.addr, "/vernemq/auth_on_publish", &body).await;
    }
    for n in 0..10 {
        assert_eq!(
            publish(
                e.addr,
                OTHER_SESSION,
                "onboarding",
                "wlan/home/access/request",
                request.as_bytes(),
                false
            )
            .await,
            ok(),
            "publish {n} of the burst"
        );
    }
}
