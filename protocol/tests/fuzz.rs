//! T9: the decoders and identifier checks under random and hostile input.
//!
//! Every payload type some worker decodes from the wire is listed in
//! [`WIRE`] with the size limit its receiver passes. For each of them:
//! random bytes, mutated valid messages and random JSON never panic;
//! deep nesting is an error, not a stack overflow; a payload over the
//! limit is refused before it is parsed; and random valid values survive
//! encode -> decode. The identifier checks that guard topic strings, and
//! the parsers of the cryptographic fields peers send, never panic, and
//! what the identifier checks accept is safe to splice into a topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use protocol::admin::{
    AdminOk, AdminOp, AdminOutcome, AdminReply, AdminRequest, ImportReport, ImportRow, RejectedRow,
    MAX_ADMIN_PAYLOAD,
};
use protocol::codes::{AccessErrorCode, AdminErrorCode, ErrorBody};
use protocol::crypto::{
    b64, device_login_token, seal_enrollment, seal_to_ap, unb64, verifier_handshake,
    verify_device_login, ApKey, DeviceHandshake, DeviceKey, PlatformKey, PlatformPublicKey,
};
use protocol::decode::{decode, decode_limited, encode, peek_str_field, DecodeError, MAX_PAYLOAD};
use protocol::gateway::{
    check_device_id, AssignUpdate, GatewayAnswer, GatewayAssigned, GatewayErrorCode, GatewayQuery,
    GatewayRefused, GatewayStatus, Presence, PresenceReport, Redirect, RedirectBatch,
    RedirectReason, SyncRequest, GATEWAY_AGENT_CLIENT_ID, MAX_ASSIGN_PAYLOAD,
};
use protocol::gateway_login::GatewayLogin;
use protocol::ids::{check_segment, MAX_SEGMENT_LEN};
use protocol::onboarding::{
    check_pass_tmp, check_ssid, check_wifi_password, open_wifi_key, AccessChallenge, AccessDenied,
    AccessGranted, AccessOutcome, AccessProof, AccessRequest, AccessResponse, ApConfirm, ApPrompt,
    Confirm, OutcomeReport, SealedFor, Ticket, TicketFor, VerifyOutcome, VerifyRequest,
    VerifyResponse, MAX_SSID_LEN,
};
use protocol::registry_admin::{
    AssignmentView, AuditEntry, DrainReport, GatewayView, LastSeen, RegistryErrorCode, RegistryOk,
    RegistryOp, RegistryOutcome, RegistryReply, RegistryRequest,
};
use protocol::{check_client_id, topics, DeviceUuid, Segment};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::sync::OnceLock;

/// What `registry::RegistryClient` passes as the limit of a registry
/// admin reply (`MAX_REPLY` in registry/src/client.rs, private there).
const REGISTRY_MAX_REPLY: usize = 1024 * 1024;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // A failure prints its minimal input; no regression files are
        // written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------
// Every payload type decoded from the wire, and the limit it is decoded
// with (grep `decode::<` and `decode_limited::<` across the workspace).
// ---------------------------------------------------------------------

struct Wire {
    name: &'static str,
    limit: usize,
    decode: fn(&[u8]) -> Result<(), DecodeError>,
    /// Every field has a default, so an object of unknown fields only
    /// (however deeply nested they are) decodes, as the empty message.
    all_default: bool,
}

/// `decode::<T>`, as the receivers call it.
fn plain<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), DecodeError> {
    decode::<T>(bytes).map(drop)
}

/// `decode_limited::<T>(bytes, LIMIT)`, as the receivers call it.
fn limited<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<(), DecodeError> {
    decode_limited::<T>(bytes, LIMIT).map(drop)
}

const fn wire(
    name: &'static str,
    limit: usize,
    decode: fn(&[u8]) -> Result<(), DecodeError>,
) -> Wire {
    Wire {
        name,
        limit,
        decode,
        all_default: false,
    }
}

const fn all_default(w: Wire) -> Wire {
    Wire {
        all_default: true,
        ..w
    }
}

const WIRE: &[Wire] = &[
    // ap-sim
    wire("AccessRequest", MAX_PAYLOAD, plain::<AccessRequest>),
    wire("AccessProof", MAX_PAYLOAD, plain::<AccessProof>),
    wire("VerifyResponse", MAX_PAYLOAD, plain::<VerifyResponse>),
    wire("ApConfirm", MAX_PAYLOAD, plain::<ApConfirm>),
    // device-sim
    wire("AccessChallenge", MAX_PAYLOAD, plain::<AccessChallenge>),
    wire("AccessResponse", MAX_PAYLOAD, plain::<AccessResponse>),
    wire("Confirm", MAX_PAYLOAD, plain::<Confirm>),
    wire("GatewayAnswer", MAX_PAYLOAD, plain::<GatewayAnswer>),
    wire("Redirect", MAX_PAYLOAD, plain::<Redirect>),
    // verifier
    wire("VerifyRequest", MAX_PAYLOAD, plain::<VerifyRequest>),
    wire("OutcomeReport", MAX_PAYLOAD, plain::<OutcomeReport>),
    wire(
        "AdminRequest",
        MAX_ADMIN_PAYLOAD,
        limited::<AdminRequest, MAX_ADMIN_PAYLOAD>,
    ),
    wire(
        "serde_json::Value (verifier peek_request_id)",
        MAX_ADMIN_PAYLOAD,
        limited::<serde_json::Value, MAX_ADMIN_PAYLOAD>,
    ),
    // verifier CLI (bus::RpcClient)
    wire(
        "AdminReply",
        MAX_ADMIN_PAYLOAD,
        limited::<AdminReply, MAX_ADMIN_PAYLOAD>,
    ),
    // registry
    wire("GatewayQuery", MAX_PAYLOAD, plain::<GatewayQuery>),
    wire("GatewayStatus", MAX_PAYLOAD, plain::<GatewayStatus>),
    wire("SyncRequest", MAX_PAYLOAD, plain::<SyncRequest>),
    all_default(wire(
        "PresenceReport",
        MAX_ASSIGN_PAYLOAD,
        limited::<PresenceReport, MAX_ASSIGN_PAYLOAD>,
    )),
    wire("RegistryRequest", MAX_PAYLOAD, plain::<RegistryRequest>),
    // registry CLI (bus::RpcClient)
    wire(
        "RegistryReply",
        REGISTRY_MAX_REPLY,
        limited::<RegistryReply, REGISTRY_MAX_REPLY>,
    ),
    // gateway agent (broker/src/gateway.rs)
    all_default(wire(
        "AssignUpdate",
        MAX_ASSIGN_PAYLOAD,
        limited::<AssignUpdate, MAX_ASSIGN_PAYLOAD>,
    )),
    all_default(wire(
        "RedirectBatch",
        MAX_ASSIGN_PAYLOAD,
        limited::<RedirectBatch, MAX_ASSIGN_PAYLOAD>,
    )),
    wire("Presence", MAX_PAYLOAD, plain::<Presence>),
    // gateway broker's auth handler: a device's MQTT password is its
    // signed assignment and a token of its key
    // (broker/src/gateway/admitted.rs).
    wire("GatewayAssigned", MAX_PAYLOAD, plain::<GatewayAssigned>),
    wire("GatewayLogin", MAX_PAYLOAD, plain::<GatewayLogin>),
    // Published for the AP's user; no worker decodes it, but it is a
    // wire type like the others.
    wire("ApPrompt", MAX_PAYLOAD, plain::<ApPrompt>),
];

/// Runs every decoder on `bytes`; each must return, Ok or Err. A payload
/// over a decoder's limit must be refused as too large, an empty one as
/// empty.
fn decode_everything(bytes: &[u8]) {
    for w in WIRE {
        let result = (w.decode)(bytes);
        if bytes.len() > w.limit {
            assert!(
                matches!(result, Err(DecodeError::TooLarge { .. })),
                "{}: {} bytes over the {} limit not refused: {result:?}",
                w.name,
                bytes.len(),
                w.limit
            );
        }
        if bytes.is_empty() {
            assert!(matches!(result, Err(DecodeError::Empty)), "{}", w.name);
        }
    }
    let _ = peek_str_field(bytes, "uuid");
    let _ = peek_str_field(bytes, "request_id");
}

// ---------------------------------------------------------------------
// Strategies for valid values.
// ---------------------------------------------------------------------

/// Any characters, control characters and quotes included; short.
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,24}"
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..6)
}

fn access_code() -> impl Strategy<Value = AccessErrorCode> {
    prop::sample::select(AccessErrorCode::ALL.to_vec())
}

fn admin_code() -> impl Strategy<Value = AdminErrorCode> {
    prop::sample::select(vec![
        AdminErrorCode::BadRequest,
        AdminErrorCode::NotFound,
        AdminErrorCode::AlreadyEnrolled,
        AdminErrorCode::Internal,
    ])
}

fn gateway_code() -> impl Strategy<Value = GatewayErrorCode> {
    prop::sample::select(vec![
        GatewayErrorCode::Unassigned,
        GatewayErrorCode::NoGateway,
        GatewayErrorCode::BadRequest,
    ])
}

fn registry_code() -> impl Strategy<Value = RegistryErrorCode> {
    prop::sample::select(vec![
        RegistryErrorCode::BadRequest,
        RegistryErrorCode::NotFound,
        RegistryErrorCode::UnknownGateway,
        RegistryErrorCode::GatewayDead,
        RegistryErrorCode::AlreadyAssigned,
        RegistryErrorCode::NoGateway,
        RegistryErrorCode::Internal,
    ])
}

fn error_body<C: Debug + Clone>(
    code: impl Strategy<Value = C>,
) -> impl Strategy<Value = ErrorBody<C>> {
    (code, text(), any::<Option<u64>>()).prop_map(|(code, message, retry_after_ms)| ErrorBody {
        code,
        message,
        retry_after_ms,
    })
}

fn access_request() -> impl Strategy<Value = AccessRequest> {
    (
        (text(), text(), text()),
        (prop::option::of(text()), prop::option::of(text())),
    )
        .prop_map(|((uuid, ssid, pass_tmp), (spake2, commit))| AccessRequest {
            uuid,
            ssid,
            pass_tmp,
            spake2,
            commit,
        })
}

fn ticket() -> impl Strategy<Value = Ticket> {
    (text(), any::<u64>(), text()).prop_map(|(ap_id, expires_ms, sig)| Ticket {
        ap_id,
        expires_ms,
        sig,
    })
}

fn access_challenge() -> impl Strategy<Value = AccessChallenge> {
    (
        (text(), text(), text(), text(), text()),
        prop::option::of(ticket()),
    )
        .prop_map(
            |((uuid, ssid, request, session, spake2), ticket)| AccessChallenge {
                uuid,
                ssid,
                request,
                session,
                spake2,
                ticket,
            },
        )
}

fn access_proof() -> impl Strategy<Value = AccessProof> {
    (
        (text(), text(), text()),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |((uuid, session, proof), (request, enroll, opening))| AccessProof {
                uuid,
                session,
                proof,
                request,
                enroll,
                opening,
            },
        )
}

fn access_response() -> impl Strategy<Value = AccessResponse> {
    prop_oneof![
        (
            (text(), text(), text()),
            (prop::option::of(text()), prop::option::of(text()))
        )
            .prop_map(|((uuid, ssid, password), (session, sealed))| {
                AccessResponse::Granted(AccessGranted {
                    uuid,
                    ssid,
                    password,
                    session,
                    sealed,
                })
            }),
        (
            (text(), error_body(access_code())),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text())
            )
        )
            .prop_map(|((uuid, error), (request, session, sig, mac))| {
                AccessResponse::Denied(AccessDenied {
                    uuid,
                    error,
                    request,
                    session,
                    sig,
                    mac,
                })
            }),
    ]
}

fn confirm() -> impl Strategy<Value = Confirm> {
    any::<bool>().prop_map(|accept| Confirm { accept })
}

fn verify_request() -> impl Strategy<Value = VerifyRequest> {
    (
        (text(), text(), text()),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |((request_id, ap_id, uuid), (ap_key, ssid, request))| VerifyRequest {
                request_id,
                ap_id,
                uuid,
                ap_key,
                ssid,
                request,
            },
        )
}

fn verify_response() -> impl Strategy<Value = VerifyResponse> {
    let outcome = prop_oneof![
        text().prop_map(|pass_tmp| VerifyOutcome::Found { pass_tmp }),
        (text(), text(), ticket()).prop_map(|(session, spake2, ticket)| {
            VerifyOutcome::Challenge {
                session,
                spake2,
                ticket,
            }
        }),
        (text(), text(), text()).prop_map(|(session, sealed_key, sig)| {
            VerifyOutcome::Proved {
                session,
                sealed_key,
                sig,
            }
        }),
        error_body(access_code()).prop_map(|error| VerifyOutcome::Failed {
            error,
            denial: None
        }),
    ];
    (text(), text(), outcome).prop_map(|(request_id, uuid, outcome)| VerifyResponse {
        request_id,
        uuid,
        outcome,
    })
}

fn ap_prompt() -> impl Strategy<Value = ApPrompt> {
    (text(), text(), any::<u64>()).prop_map(|(uuid, ssid, expires_in_secs)| ApPrompt {
        uuid,
        ssid,
        expires_in_secs,
    })
}

fn ap_confirm() -> impl Strategy<Value = ApConfirm> {
    (text(), any::<bool>()).prop_map(|(uuid, accept)| ApConfirm { uuid, accept })
}

fn outcome_report() -> impl Strategy<Value = OutcomeReport> {
    let outcome = prop_oneof![
        Just(AccessOutcome::Granted),
        access_code().prop_map(AccessOutcome::Refused),
    ];
    (text(), outcome, any::<u64>()).prop_map(|(uuid, outcome, latency_ms)| OutcomeReport {
        uuid,
        outcome,
        latency_ms,
    })
}

fn gateway_query() -> impl Strategy<Value = GatewayQuery> {
    (text(), prop::option::of(text())).prop_map(|(device_id, device_key)| GatewayQuery {
        device_id,
        device_key,
    })
}

fn gateway_assigned() -> impl Strategy<Value = GatewayAssigned> {
    (
        (text(), text(), text(), any::<u64>()),
        (
            prop::option::of(text()),
            prop::option::of(any::<u64>()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |((device_id, gateway_id, address, epoch), (device_key, expires_ms, sig))| {
                GatewayAssigned {
                    device_id,
                    gateway_id,
                    address,
                    epoch,
                    device_key,
                    expires_ms,
                    sig,
                }
            },
        )
}

fn gateway_login() -> impl Strategy<Value = GatewayLogin> {
    (gateway_assigned(), text()).prop_map(|(assignment, token)| GatewayLogin { assignment, token })
}

fn gateway_answer() -> impl Strategy<Value = GatewayAnswer> {
    prop_oneof![
        gateway_assigned().prop_map(GatewayAnswer::Assigned),
        (text(), error_body(gateway_code())).prop_map(|(device_id, error)| {
            GatewayAnswer::Refused(GatewayRefused { device_id, error })
        }),
    ]
}

fn redirect() -> impl Strategy<Value = Redirect> {
    let reason = prop::sample::select(vec![
        RedirectReason::Remapped,
        RedirectReason::Draining,
        RedirectReason::Revoked,
    ]);
    (text(), reason, any::<u64>()).prop_map(|(device_id, reason, epoch)| Redirect {
        device_id,
        reason,
        epoch,
        assignment: None,
    })
}

fn redirect_batch() -> impl Strategy<Value = RedirectBatch> {
    prop::collection::vec(redirect(), 0..6).prop_map(|redirects| RedirectBatch { redirects })
}

fn presence() -> impl Strategy<Value = Presence> {
    any::<bool>().prop_map(|online| Presence { online })
}

fn gateway_status() -> impl Strategy<Value = GatewayStatus> {
    (
        text(),
        any::<bool>(),
        prop::option::of(text()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(gateway_id, alive, address, weight)| GatewayStatus {
            gateway_id,
            alive,
            address,
            weight,
        })
}

fn assign_update() -> impl Strategy<Value = AssignUpdate> {
    (
        any::<bool>(),
        texts(),
        texts(),
        prop::collection::vec(any::<u64>(), 0..4),
    )
        .prop_map(|(reset, add, remove, epochs)| AssignUpdate {
            reset,
            add,
            remove,
            epochs,
        })
}

fn presence_report() -> impl Strategy<Value = PresenceReport> {
    (texts(), texts()).prop_map(|(online, offline)| PresenceReport { online, offline })
}

fn sync_request() -> impl Strategy<Value = SyncRequest> {
    text().prop_map(|gateway_id| SyncRequest { gateway_id })
}

fn admin_request() -> impl Strategy<Value = AdminRequest> {
    let row = (any::<u64>(), text(), text(), texts()).prop_map(|(line, uuid, pass_tmp, ssids)| {
        ImportRow {
            line,
            uuid,
            pass_tmp,
            ssids,
        }
    });
    let op = prop_oneof![
        (text(), text(), any::<bool>(), texts()).prop_map(|(uuid, pass_tmp, replace, ssids)| {
            AdminOp::Enroll {
                uuid,
                pass_tmp,
                replace,
                ssids,
            }
        }),
        prop::collection::vec(row, 0..6).prop_map(|rows| AdminOp::Import { rows }),
        text().prop_map(|uuid| AdminOp::Remove { uuid }),
        text().prop_map(|uuid| AdminOp::ApproveKey { uuid }),
        text().prop_map(|uuid| AdminOp::Show { uuid }),
        (prop::option::of(text()), any::<usize>())
            .prop_map(|(after, limit)| AdminOp::List { after, limit }),
    ];
    (text(), op).prop_map(|(request_id, op)| AdminRequest { request_id, op })
}

fn admin_reply() -> impl Strategy<Value = AdminReply> {
    let rejected = (any::<u64>(), text(), text()).prop_map(|(line, uuid, reason)| RejectedRow {
        line,
        uuid,
        reason,
    });
    let ok = prop_oneof![
        (text(), any::<bool>()).prop_map(|(uuid, created)| AdminOk::Enrolled { uuid, created }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(rejected, 0..4)
        )
            .prop_map(|(added, added_any_ssid, unchanged, rejected)| {
                AdminOk::Imported(ImportReport {
                    added,
                    added_any_ssid,
                    unchanged,
                    rejected,
                })
            }),
        text().prop_map(|uuid| AdminOk::Removed { uuid }),
        (text(), any::<u64>(), texts(), prop::option::of(text())).prop_map(
            |(uuid, enrolled_at_ms, ssids, pending_key)| AdminOk::Device {
                uuid,
                device_key: None,
                enrolled_at_ms,
                ssids,
                pending_key,
            }
        ),
        (text(), text()).prop_map(|(uuid, device_key)| AdminOk::KeyApproved { uuid, device_key }),
        (texts(), prop::option::of(text())).prop_map(|(uuids, next)| AdminOk::List { uuids, next }),
    ];
    let outcome = prop_oneof![
        ok.prop_map(AdminOutcome::Ok),
        error_body(admin_code()).prop_map(AdminOutcome::Error),
    ];
    (text(), outcome).prop_map(|(request_id, outcome)| AdminReply {
        request_id,
        outcome,
    })
}

fn registry_request() -> impl Strategy<Value = RegistryRequest> {
    let op = prop_oneof![
        (text(), text()).prop_map(|(device_id, gateway_id)| RegistryOp::Assign {
            device_id,
            gateway_id
        }),
        (text(), text()).prop_map(|(device_id, gateway_id)| RegistryOp::Remap {
            device_id,
            gateway_id
        }),
        (text(), prop::option::of(text()), any::<usize>()).prop_map(|(gateway_id, to, limit)| {
            RegistryOp::Drain {
                gateway_id,
                to,
                limit,
            }
        }),
        text().prop_map(|gateway_id| RegistryOp::Undrain { gateway_id }),
        text().prop_map(|device_id| RegistryOp::Show { device_id }),
        Just(RegistryOp::Gateways),
        text().prop_map(|device_id| RegistryOp::History { device_id }),
    ];
    (text(), op).prop_map(|(request_id, op)| RegistryRequest { request_id, op })
}

fn registry_reply() -> impl Strategy<Value = RegistryReply> {
    let last_seen =
        (text(), any::<u64>(), any::<bool>()).prop_map(|(gateway_id, at_ms, online)| LastSeen {
            gateway_id,
            at_ms,
            online,
        });
    let assignment = (
        text(),
        text(),
        any::<u64>(),
        any::<bool>(),
        prop::option::of(last_seen),
    )
        .prop_map(
            |(device_id, gateway_id, epoch, changed, last_seen)| AssignmentView {
                device_id,
                gateway_id,
                epoch,
                changed,
                last_seen,
            },
        );
    let drained =
        (text(), any::<u64>(), any::<u64>()).prop_map(|(gateway_id, moved, remaining)| {
            DrainReport {
                gateway_id,
                moved,
                remaining,
            }
        });
    let view = (
        (text(), text(), any::<bool>(), any::<bool>()),
        (any::<u32>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |((gateway_id, address, alive, draining), (weight, assigned, connected))| GatewayView {
                gateway_id,
                address,
                alive,
                draining,
                weight,
                assigned,
                connected,
            },
        );
    let entry = (
        any::<u64>(),
        any::<u64>(),
        prop::option::of(text()),
        text(),
        text(),
    )
        .prop_map(|(at_ms, epoch, from, to, reason)| AuditEntry {
            at_ms,
            epoch,
            from,
            to,
            reason,
        });
    let ok = prop_oneof![
        assignment.prop_map(RegistryOk::Assignment),
        drained.prop_map(RegistryOk::Drained),
        text().prop_map(|gateway_id| RegistryOk::Undrained { gateway_id }),
        prop::collection::vec(view, 0..4).prop_map(|gateways| RegistryOk::Gateways { gateways }),
        (text(), prop::collection::vec(entry, 0..4))
            .prop_map(|(device_id, entries)| RegistryOk::History { device_id, entries }),
    ];
    let outcome = prop_oneof![
        ok.prop_map(RegistryOutcome::Ok),
        error_body(registry_code()).prop_map(RegistryOutcome::Error),
    ];
    (text(), outcome).prop_map(|(request_id, outcome)| RegistryReply {
        request_id,
        outcome,
    })
}

/// One valid, encoded message of any wire type.
fn any_encoded_message() -> BoxedStrategy<Vec<u8>> {
    fn enc<T: Serialize>(v: T) -> Vec<u8> {
        encode(&v)
    }
    prop_oneof![
        access_request().prop_map(enc),
        access_challenge().prop_map(enc),
        access_proof().prop_map(enc),
        access_response().prop_map(enc),
        confirm().prop_map(enc),
        verify_request().prop_map(enc),
        verify_response().prop_map(enc),
        ap_prompt().prop_map(enc),
        ap_confirm().prop_map(enc),
        outcome_report().prop_map(enc),
        gateway_query().prop_map(enc),
        gateway_answer().prop_map(enc),
        redirect().prop_map(enc),
        redirect_batch().prop_map(enc),
        presence().prop_map(enc),
        gateway_status().prop_map(enc),
        assign_update().prop_map(enc),
        presence_report().prop_map(enc),
        sync_request().prop_map(enc),
        admin_request().prop_map(enc),
        admin_reply().prop_map(enc),
        registry_request().prop_map(enc),
        registry_reply().prop_map(enc),
    ]
    .boxed()
}

// ---------------------------------------------------------------------
// Hostile input generators.
// ---------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Splices in bytes that are structurally interesting to a JSON parser.
    Splice(usize, &'static [u8]),
}

fn edit() -> impl Strategy<Value = Edit> {
    let idx = any::<usize>();
    let tokens: Vec<&'static [u8]> = vec![
        b"\"",
        b"\\",
        b"\\u",
        b"\\ud800",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"null",
        b"-",
        b"1e999999",
        b"18446744073709551616",
        b"-1",
        b"0.5",
        b"\xff",
        b"\xc3",
        b"\xed\xa0\x80",
        b"\0",
    ];
    prop_oneof![
        (idx, any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (idx, any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        idx.prop_map(Edit::Delete),
        idx.prop_map(Edit::Truncate),
        (idx, prop::sample::select(tokens)).prop_map(|(i, t)| Edit::Splice(i, t)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len();
        match *e {
            Edit::Flip(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
            Edit::Splice(i, t) => {
                let at = i % (len + 1);
                bytes.splice(at..at, t.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

/// Random JSON shaped like the protocol's: its field names and enum
/// spellings, with values of every type, so decoders meet near-misses
/// (right keys, wrong types) rather than only garbage.
fn protocol_shaped_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let keys = prop::sample::select(vec![
        "uuid",
        "ssid",
        "pass_tmp",
        "password",
        "spake2",
        "session",
        "proof",
        "sealed",
        "sealed_pass_tmp",
        "ap_key",
        "sig",
        "expires_ms",
        "error",
        "code",
        "message",
        "request_id",
        "ap_id",
        "accept",
        "outcome",
        "latency_ms",
        "expires_in_secs",
        "device_id",
        "gateway_id",
        "address",
        "epoch",
        "reason",
        "redirects",
        "online",
        "offline",
        "alive",
        "weight",
        "reset",
        "add",
        "remove",
        "op",
        "kind",
        "ok",
        "rows",
        "line",
        "after",
        "limit",
        "replace",
        "to",
        "from",
        "entries",
        "gateways",
        "last_seen",
        "uuids",
        "next",
        "rejected",
    ]);
    let words = prop::sample::select(vec![
        "granted",
        "unknown_device",
        "pass_tmp_mismatch",
        "rejected",
        "timeout",
        "bad_request",
        "too_many_attempts",
        "not_found",
        "enroll",
        "import",
        "remove",
        "show",
        "list",
        "assign",
        "remap",
        "drain",
        "undrain",
        "gateways",
        "history",
        "assignment",
        "drained",
        "undrained",
        "enrolled",
        "imported",
        "device",
        "remapped",
        "draining",
        "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        words.prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    })
}

// ---------------------------------------------------------------------
// Never panic.
// ---------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_valid_messages_never_panic_a_decoder(
        msg in any_encoded_message(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        decode_everything(&apply(msg, &edits));
    }

    #[test]
    fn protocol_shaped_json_never_panics_a_decoder(value in protocol_shaped_json()) {
        decode_everything(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn invalid_utf8_is_refused_as_such(
        prefix in "[ -~]{0,64}",
        bad in prop::sample::select(vec![
            &b"\xff"[..], b"\xfe", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80",
        ]),
        suffix in "[ -~]{0,64}",
    ) {
        let mut bytes = prefix.into_bytes();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(suffix.as_bytes());
        for w in WIRE {
            prop_assert!(
                matches!((w.decode)(&bytes), Err(DecodeError::NotUtf8)),
                "{}", w.name
            );
        }
    }
}

// ---------------------------------------------------------------------
// Deep nesting: an error, never a stack overflow.
// ---------------------------------------------------------------------

/// Openers that nest: plain containers, and containers under field names
/// the decoders look into (so the nesting reaches typed fields, flattened
/// and untagged enums, and ignored unknown fields alike).
const OPENERS: &[&str] = &[
    "[",
    "{\"a\":",
    "{\"uuid\":",
    "{\"error\":",
    "{\"request_id\":\"r\",\"op\":\"import\",\"rows\":",
    "{\"request_id\":\"r\",\"ok\":",
    "{\"redirects\":",
    "{\"add\":",
    "[{\"x\":",
];

fn nested(opener: &str, depth: usize, closed: bool) -> Vec<u8> {
    let mut s = opener.repeat(depth);
    if closed {
        s.push_str("null");
        for _ in 0..depth {
            for c in opener.chars().rev() {
                match c {
                    '[' => s.push(']'),
                    '{' => s.push('}'),
                    _ => {}
                }
            }
        }
    }
    s.into_bytes()
}

/// Unclosed nesting is refused by every decoder. Closed nesting is too,
/// except that serde_json skips an unknown field without recursing (and
/// without a depth limit), so a type whose fields all default reads
/// `{"a":{"a":…}}` as its empty message; that is allowed, and only that.
fn assert_nesting_refused(bytes: &[u8], closed: bool) {
    for w in WIRE {
        let result = (w.decode)(bytes);
        if closed && w.all_default && result.is_ok() {
            continue;
        }
        assert!(
            result.is_err(),
            "{}: {} deep bytes accepted",
            w.name,
            bytes.len()
        );
        if bytes.len() <= w.limit {
            // Within the limit the parser itself must refuse it.
            assert!(
                matches!(result, Err(DecodeError::Json(_))),
                "{}: {result:?}",
                w.name
            );
        }
    }
}

#[test]
fn ten_thousand_levels_of_nesting_are_an_error() {
    for opener in OPENERS {
        for closed in [false, true] {
            assert_nesting_refused(&nested(opener, 10_000, closed), closed);
        }
    }
}

#[test]
fn a_hundred_thousand_levels_within_the_largest_limit_are_an_error() {
    // `[` x 100_000 is 100 KB: inside the admin, assign and registry reply
    // limits, so those parsers (not the size check) must refuse it.
    for closed in [false, true] {
        assert_nesting_refused(&nested("[", 100_000, closed), closed);
    }
}

#[test]
fn deep_nesting_in_an_ignored_field_is_skipped_and_lets_nothing_in() {
    // 20_000 levels (120 KB) fit the batch limit: the parser walks them
    // without recursion and the message stays empty.
    let bytes = nested("{\"a\":", 20_000, true);
    assert!(bytes.len() <= MAX_ASSIGN_PAYLOAD);
    for result in [
        decode_limited::<PresenceReport>(&bytes, MAX_ASSIGN_PAYLOAD)
            .map(|r| r == PresenceReport::default()),
        decode_limited::<AssignUpdate>(&bytes, MAX_ASSIGN_PAYLOAD)
            .map(|r| r == AssignUpdate::default()),
        decode_limited::<RedirectBatch>(&bytes, MAX_ASSIGN_PAYLOAD)
            .map(|r| r == RedirectBatch::default()),
    ] {
        assert!(
            result.unwrap_or(true),
            "nested content leaked into the message"
        );
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn random_deep_nesting_is_an_error(
        opener in prop::sample::select(OPENERS.to_vec()),
        depth in 129usize..20_000,
        closed in any::<bool>(),
    ) {
        assert_nesting_refused(&nested(opener, depth, closed), closed);
    }

    /// A valid message that also carries a deeply nested unknown field:
    /// the decoder may accept it (unknown fields are tolerated) or refuse
    /// it, but must return.
    #[test]
    fn deep_nesting_in_an_unknown_field_returns(
        msg in any_encoded_message(),
        opener in prop::sample::select(OPENERS.to_vec()),
        depth in 129usize..2_000,
    ) {
        if msg.first() == Some(&b'{') && msg.len() > 2 {
            let mut bytes = b"{\"zz\":".to_vec();
            bytes.extend(nested(opener, depth, true));
            bytes.push(b',');
            bytes.extend_from_slice(&msg[1..]);
            decode_everything(&bytes);
        }
    }
}

// ---------------------------------------------------------------------
// Round trips and size limits, per type.
// ---------------------------------------------------------------------

/// `value` encoded and padded with trailing whitespace to `len` bytes.
fn padded<T: Serialize>(value: &T, len: usize) -> Vec<u8> {
    let mut bytes = encode(value);
    assert!(bytes.len() <= len, "{} bytes do not fit {len}", bytes.len());
    bytes.resize(len, b' ');
    bytes
}

macro_rules! wire_type {
    ($module:ident, $ty:ty, $strategy:expr, $limit:expr) => {
        mod $module {
            use super::*;

            fn decode_it(bytes: &[u8]) -> Result<$ty, DecodeError> {
                decode_limited::<$ty>(bytes, $limit)
            }

            proptest! {
                #![proptest_config(config(256))]

                #[test]
                fn roundtrips(value in $strategy) {
                    let bytes = encode(&value);
                    prop_assert_eq!(decode_it(&bytes).unwrap(), value);
                }
            }

            proptest! {
                // The size check comes first and is simple; each case
                // builds a payload of the limit's size (up to 1 MiB).
                #![proptest_config(config(64))]

                #[test]
                fn is_refused_over_its_limit(value in $strategy, over in 1usize..65_536) {
                    let limit: usize = $limit;
                    let err = decode_it(&padded(&value, limit + over)).unwrap_err();
                    prop_assert!(
                        matches!(err, DecodeError::TooLarge { len, limit: l } if len == limit + over && l == limit),
                        "{err:?}"
                    );
                }
            }

            proptest! {
                // Parsing a whole limit's worth of padding is the slow part
                // (1 MiB for a registry reply): fewer cases.
                #![proptest_config(config(16))]

                #[test]
                fn is_read_up_to_its_limit(value in $strategy) {
                    prop_assert_eq!(decode_it(&padded(&value, $limit)).unwrap(), value);
                }
            }
        }
    };
}

wire_type!(access_request, AccessRequest, access_request(), MAX_PAYLOAD);
wire_type!(
    access_challenge,
    AccessChallenge,
    access_challenge(),
    MAX_PAYLOAD
);
wire_type!(access_proof, AccessProof, access_proof(), MAX_PAYLOAD);
wire_type!(
    access_response,
    AccessResponse,
    access_response(),
    MAX_PAYLOAD
);
wire_type!(confirm, Confirm, confirm(), MAX_PAYLOAD);
wire_type!(verify_request, VerifyRequest, verify_request(), MAX_PAYLOAD);
wire_type!(
    verify_response,
    VerifyResponse,
    verify_response(),
    MAX_PAYLOAD
);
wire_type!(ap_prompt, ApPrompt, ap_prompt(), MAX_PAYLOAD);
wire_type!(ap_confirm, ApConfirm, ap_confirm(), MAX_PAYLOAD);
wire_type!(outcome_report, OutcomeReport, outcome_report(), MAX_PAYLOAD);
wire_type!(gateway_query, GatewayQuery, gateway_query(), MAX_PAYLOAD);
wire_type!(
    gateway_assigned,
    GatewayAssigned,
    gateway_assigned(),
    MAX_PAYLOAD
);
wire_type!(gateway_answer, GatewayAnswer, gateway_answer(), MAX_PAYLOAD);
wire_type!(gateway_login, GatewayLogin, gateway_login(), MAX_PAYLOAD);
wire_type!(redirect, Redirect, redirect(), MAX_PAYLOAD);
wire_type!(presence, Presence, presence(), MAX_PAYLOAD);
wire_type!(gateway_status, GatewayStatus, gateway_status(), MAX_PAYLOAD);
wire_type!(sync_request, SyncRequest, sync_request(), MAX_PAYLOAD);
wire_type!(
    registry_request,
    RegistryRequest,
    registry_request(),
    MAX_PAYLOAD
);
wire_type!(
    redirect_batch,
    RedirectBatch,
    redirect_batch(),
    MAX_ASSIGN_PAYLOAD
);
wire_type!(
    assign_update,
    AssignUpdate,
    assign_update(),
    MAX_ASSIGN_PAYLOAD
);
wire_type!(
    presence_report,
    PresenceReport,
    presence_report(),
    MAX_ASSIGN_PAYLOAD
);
wire_type!(
    admin_request,
    AdminRequest,
    admin_request(),
    MAX_ADMIN_PAYLOAD
);
wire_type!(admin_reply, AdminReply, admin_reply(), MAX_ADMIN_PAYLOAD);
wire_type!(
    registry_reply,
    RegistryReply,
    registry_reply(),
    REGISTRY_MAX_REPLY
);

#[test]
fn the_batch_limits_are_the_ones_the_receivers_use() {
    // AssignUpdate, RedirectBatch and PresenceReport are read with
    // MAX_ASSIGN_PAYLOAD; everything else device-facing with MAX_PAYLOAD.
    let limit_of = |name: &str| WIRE.iter().find(|w| w.name == name).unwrap().limit;
    for name in ["AssignUpdate", "RedirectBatch", "PresenceReport"] {
        assert_eq!(limit_of(name), MAX_ASSIGN_PAYLOAD, "{name}");
    }
    for name in ["AccessRequest", "GatewayQuery", "Presence", "Confirm"] {
        assert_eq!(limit_of(name), MAX_PAYLOAD, "{name}");
    }
    // A batch just over MAX_PAYLOAD, which the default decoder would refuse,
    // is read under the batch limit.
    let big = AssignUpdate {
        reset: false,
        add: vec!["d".repeat(100); MAX_PAYLOAD / 100],
        ..Default::default()
    };
    let bytes = encode(&big);
    assert!(bytes.len() > MAX_PAYLOAD);
    assert!(matches!(
        decode::<AssignUpdate>(&bytes),
        Err(DecodeError::TooLarge { .. })
    ));
    assert_eq!(
        decode_limited::<AssignUpdate>(&bytes, MAX_ASSIGN_PAYLOAD).unwrap(),
        big
    );
}

// ---------------------------------------------------------------------
// Identifier checks: never panic, and what they accept is topic-safe.
// ---------------------------------------------------------------------

/// Strings near the edges of the checks: wildcards, separators, `$`,
/// control and multi-byte characters, around the length limits.
fn near_miss() -> impl Strategy<Value = String> {
    let alphabet = prop::sample::select(vec![
        'a', 'F', '0', '9', '-', '_', ' ', '.', '+', '#', '/', '$', '\0', '\n', '\u{7f}', '\u{85}',
        'é', '€', '😀', '\u{202e}', '{', '}',
    ]);
    prop::collection::vec(alphabet, 0..140).prop_map(|cs| cs.into_iter().collect())
}

/// UUID-shaped strings: valid ones in random case, and damaged ones.
fn uuid_like() -> impl Strategy<Value = String> {
    (
        any::<[u8; 16]>(),
        prop::collection::vec(any::<bool>(), 36),
        prop::option::of((0usize..40, any::<char>())),
    )
        .prop_map(|(bytes, upper, damage)| {
            let s: String = uuid::Uuid::from_bytes(bytes)
                .hyphenated()
                .to_string()
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            match damage {
                None => s,
                Some((at, c)) => {
                    let mut chars: Vec<char> = s.chars().collect();
                    if at < chars.len() {
                        chars[at] = c;
                    } else {
                        chars.push(c);
                    }
                    chars.into_iter().collect()
                }
            }
        })
}

fn any_id() -> impl Strategy<Value = String> {
    prop_oneof!["(?s).{0,200}", near_miss(), uuid_like(), any::<String>(),]
}

fn topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SEGMENT_LEN
        && !s.starts_with('$')
        && !s
            .chars()
            .any(|c| matches!(c, '+' | '#' | '/') || c.is_control())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn segment_checks_never_panic_and_accept_only_topic_safe_strings(s in any_id()) {
        let segment = Segment::parse(&s);
        prop_assert_eq!(segment.is_ok(), check_segment(&s).is_ok());
        prop_assert_eq!(segment.is_ok(), topic_safe(&s), "{:?}", s);
        if let Ok(seg) = segment {
            prop_assert_eq!(seg.as_str(), s.as_str());
            prop_assert_eq!(seg.to_string(), s);
        }
    }

    #[test]
    fn client_id_checks_never_panic_and_are_stricter_than_segments(s in any_id()) {
        let ok = check_client_id(&s).is_ok();
        prop_assert_eq!(ok, topic_safe(&s) && !s.contains('$'), "{:?}", s);
        let device_ok = check_device_id(&s).is_ok();
        prop_assert_eq!(device_ok, ok && s != GATEWAY_AGENT_CLIENT_ID, "{:?}", s);
    }

    #[test]
    fn device_uuids_never_panic_and_are_topic_safe(s in any_id()) {
        match DeviceUuid::parse(&s) {
            Ok(u) => {
                prop_assert_eq!(s.len(), 36);
                prop_assert_eq!(u.as_str(), s.as_str());
                prop_assert_eq!(u.key(), s.to_ascii_lowercase());
                prop_assert!(check_client_id(u.as_str()).is_ok(), "{:?}", s);
                prop_assert!(check_client_id(u.key()).is_ok(), "{:?}", s);
            }
            Err(_) => prop_assert!(uuid::Uuid::try_parse(&s).is_err() || s.len() != 36),
        }
    }

    #[test]
    fn well_formed_uuids_in_any_case_parse(bytes in any::<[u8; 16]>(), upper in any::<bool>()) {
        let canonical = uuid::Uuid::from_bytes(bytes).hyphenated().to_string();
        let sent = if upper { canonical.to_ascii_uppercase() } else { canonical.clone() };
        let u = DeviceUuid::parse(&sent).unwrap();
        prop_assert_eq!(u.key(), canonical.as_str());
        prop_assert_eq!(u.as_str(), sent.as_str());
    }

    #[test]
    fn field_checks_never_panic(s in any_id()) {
        if check_ssid(&s).is_ok() {
            prop_assert!(s.len() <= MAX_SSID_LEN && topic_safe(&s));
        }
        if check_pass_tmp(&s).is_ok() {
            prop_assert!(!s.is_empty() && !s.chars().any(char::is_control));
        }
        if check_wifi_password(&s).is_ok() {
            prop_assert!((8..=63).contains(&s.len()));
            prop_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)));
        }
        let _ = AccessErrorCode::parse(&s);
    }

    #[test]
    fn payload_validation_never_panics(
        a in any_id(),
        b in any_id(),
        c in any_id(),
        d in prop::option::of(any_id()),
        topic_ssid in any_id(),
    ) {
        let req = AccessRequest {
            uuid: a.clone(),
            ssid: b.clone(),
            pass_tmp: c.clone(),
            spake2: d.clone(),
            commit: d.clone(),
        };
        if let Ok(u) = req.validate(&topic_ssid) {
            prop_assert_eq!(u.as_str(), a.as_str());
            prop_assert_eq!(&b, &topic_ssid);
            prop_assert!(check_ssid(&b).is_ok());
            // Exactly one of pass_tmp (walkthrough) and spake2 (secure).
            prop_assert!(d.is_some() == c.is_empty());
            prop_assert!(d.is_some() || check_pass_tmp(&c).is_ok());
        }
        let verify = VerifyRequest {
            request_id: a.clone(),
            ap_id: b.clone(),
            uuid: c.clone(),
            ap_key: d.clone(),
            ssid: d.clone(),
            request: d.clone(),
        };
        if verify.validate().is_ok() {
            prop_assert!(topic_safe(&b));
            prop_assert!(!a.is_empty() && a.len() <= 64);
            prop_assert!(DeviceUuid::parse(&c).is_ok());
            if let Some(ssid) = &d {
                prop_assert!(check_ssid(ssid).is_ok());
            }
        }
        let report = OutcomeReport { uuid: a.clone(), outcome: AccessOutcome::Granted, latency_ms: 0 };
        prop_assert_eq!(report.validate().is_ok(), DeviceUuid::parse(&a).is_ok());
        let query = GatewayQuery { device_id: b.clone(), device_key: None };
        prop_assert_eq!(query.validate().is_ok(), check_device_id(&b).is_ok());
        let challenge = AccessChallenge {
            uuid: a.clone(),
            ssid: b.clone(),
            request: c.clone(),
            session: c.clone(),
            spake2: d.clone().unwrap_or_default(),
            ticket: Some(Ticket { ap_id: b.clone(), expires_ms: 0, sig: c.clone() }),
        };
        if challenge.validate().is_ok() {
            prop_assert!(topic_safe(&b), "a ticket's ap_id is a topic segment");
        }
        let proof = AccessProof {
            uuid: a.clone(),
            session: b.clone(),
            proof: c.clone(),
            request: d.clone(),
            enroll: d.clone(),
            opening: d.clone(),
        };
        if proof.validate().is_ok() {
            prop_assert!(DeviceUuid::parse(&a).is_ok());
        }
    }

    #[test]
    fn topic_parsers_never_panic(topic in prop_oneof![
        "(?s).{0,200}",
        "(wlan|device|ap|gateway|registry)/[^ ]{0,20}(/[a-z/+#$]{0,20})?",
    ]) {
        for ssid in [topics::parse_access_request(&topic), topics::parse_access_proof(&topic)]
            .into_iter()
            .flatten()
        {
            prop_assert!(!ssid.is_empty() && !ssid.contains('/'));
        }
        for (id, _rest) in [
            topics::parse_device_topic(&topic),
            topics::parse_ap_topic(&topic),
            topics::parse_gateway_topic(&topic),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(!id.is_empty() && !id.contains('/'));
        }
        let _ = topics::parse_ap_outcome(&topic);
    }

    #[test]
    fn topic_parse_never_panics_and_names_only_clean_ids(topic in prop_oneof![
        "(?s).{0,200}",
        "(wlan|device|ap|gateway|registry|verifier)/[^ ]{0,20}(/[a-z/+#$]{0,20})?",
    ]) {
        if let Some(parsed) = topics::Topic::parse(&topic) {
            let id = match parsed.owner() {
                topics::Owner::Device(l)
                | topics::Owner::Ssid(l)
                | topics::Owner::Ap(l)
                | topics::Owner::Gateway(l) => l.id(),
                topics::Owner::Platform => None,
            };
            if let Some(id) = id {
                prop_assert!(!id.is_empty() && !id.contains(['/', '+', '#']), "{id:?}");
            }
            prop_assert!(!topic.contains('#'));
        }
    }

    #[test]
    fn topics_built_from_safe_ids_parse_back(s in "[a-zA-Z0-9._ é€-]{1,64}") {
        prop_assert!(check_client_id(&s).is_ok());
        let id = s.as_str();
        let topic = topics::device_gateway(id);
        prop_assert_eq!(topics::parse_device_topic(&topic), Some((id, "gateway")));
        let topic = topics::access_response(id);
        prop_assert_eq!(topics::parse_device_topic(&topic), Some((id, "access/response")));
        let topic = topics::access_challenge(id);
        prop_assert_eq!(topics::parse_device_topic(&topic), Some((id, "access/challenge")));
        let topic = topics::ap_confirm(id);
        prop_assert_eq!(topics::parse_ap_topic(&topic), Some((id, "confirm")));
        let topic = topics::ap_outcome(id);
        prop_assert_eq!(topics::parse_ap_outcome(&topic), Some(id));
        let topic = topics::gateway_assign(id);
        prop_assert_eq!(topics::parse_gateway_topic(&topic), Some((id, "assign")));
        let topic = topics::access_request(id);
        prop_assert_eq!(topics::parse_access_request(&topic), Some(id));
        let topic = topics::access_proof(id);
        prop_assert_eq!(topics::parse_access_proof(&topic), Some(id));
    }
}

// ---------------------------------------------------------------------
// Cryptographic fields peers send: parsed without panicking, and never
// accepted when forged.
// ---------------------------------------------------------------------

/// Base64-ish strings: valid URL-safe base64 of random bytes (of the
/// lengths keys, nonces and signatures have, and others), and near misses.
fn b64_like() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128).prop_map(|b| b64(&b)),
        prop::sample::select(vec![0usize, 1, 16, 31, 32, 33, 48, 63, 64, 65])
            .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
            .prop_map(|b| b64(&b)),
        "[A-Za-z0-9_=+/-]{0,120}",
        "(?s).{0,64}",
    ]
}

/// One platform key for the whole file: generating keys is not what is
/// under test.
fn platform() -> &'static (PlatformKey, PlatformPublicKey) {
    static KEY: OnceLock<(PlatformKey, PlatformPublicKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = PlatformKey::generate();
        let public = key.public();
        (key, public)
    })
}

proptest! {
    // Curve operations are slow in a debug build: fewer cases.
    #![proptest_config(config(64))]

    #[test]
    fn key_and_base64_parsers_never_panic(s in prop_oneof![b64_like(), any_id(), "[0-9a-fA-F ]{60,70}"]) {
        let _ = unb64(&s, "fuzz");
        let _ = PlatformPublicKey::from_hex(&s);
        let _ = PlatformKey::from_seed_hex(&s);
    }

    #[test]
    fn forged_signatures_never_verify(
        sig in b64_like(),
        assigned in gateway_assigned(),
        expires_ms in any::<u64>(),
    ) {
        let (_, public) = platform();
        prop_assert!(public.verify("assignment", &[b"a", b"b"], &sig).is_err());
        let forged = GatewayAssigned {
            expires_ms: Some(expires_ms),
            sig: Some(sig),
            ..assigned.clone()
        };
        prop_assert!(forged.verify(public, &assigned.device_id, 0).is_err());
        prop_assert!(forged
            .verify_for_gateway(public, &assigned.device_id, &assigned.gateway_id, 0)
            .is_err());
    }

}

proptest! {
    // A signature and five verifications per case, in a debug build.
    #![proptest_config(config(16))]

    #[test]
    fn a_signed_assignment_verifies_only_as_signed(assigned in gateway_assigned(), other in text()) {
        let (key, public) = platform();
        let mut signed = GatewayAssigned { expires_ms: None, sig: None, ..assigned };
        signed.sign(key, 2_000);
        prop_assert!(signed
            .verify_for_gateway(public, &signed.device_id, &signed.gateway_id, 1_000)
            .is_ok());
        prop_assert!(signed.verify(public, &signed.device_id, 2_000).is_err(), "expired");
        // Decoding what was encoded keeps it valid; changing any signed
        // field does not.
        let back: GatewayAssigned = decode(&encode(&signed)).unwrap();
        prop_assert!(back.verify(public, &signed.device_id, 1_000).is_ok());
        if other != signed.address {
            let moved = GatewayAssigned { address: other, ..signed.clone() };
            prop_assert!(moved.verify(public, &signed.device_id, 1_000).is_err());
        }
        let later = GatewayAssigned { epoch: signed.epoch.wrapping_add(1), ..signed };
        prop_assert!(later.verify(public, &later.device_id, 1_000).is_err());
    }

}

proptest! {
    // Two handshakes and several key agreements per case.
    #![proptest_config(config(24))]

    #[test]
    fn sealed_values_from_a_peer_never_panic(
        sealed in b64_like(),
        session in b64_like(),
        peer_msg in b64_like(),
        sig in b64_like(),
        ap_public in b64_like(),
        aad in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        // What an AP opens: the verifier's sealed Wi-Fi key.
        let ap = ApKey::generate();
        prop_assert!(ap.open(&sealed, &aad).is_err());
        let (_, public) = platform();
        let for_ = SealedFor { request_id: "r", uuid: "u", ap_id: "ap", session: "s" };
        prop_assert!(open_wifi_key(public, &ap, for_, &sealed, &sig).is_err());
        // What the verifier seals to: an AP key from the request.
        let _ = seal_to_ap(&ap_public, b"pass", &aad);
        // Both halves of the handshake, fed the other side's message.
        let (device, _) = DeviceHandshake::start("u", "home", "pass_tmp");
        if let Ok(keys) = device.finish(&peer_msg, &session) {
            prop_assert!(!keys.check_device_proof(&sealed));
            prop_assert!(keys.open_password(&sealed, &aad).is_err());
        }
        if let Ok((keys, _)) = verifier_handshake("u", "home", "pass_tmp", &peer_msg, &session) {
            prop_assert!(!keys.check_device_proof(&sealed));
            prop_assert!(keys.open_password(&sealed, &aad).is_err());
        }
    }
}

proptest! {
    // A few signatures and key agreements per case, in a debug build.
    #![proptest_config(config(24))]

    #[test]
    fn forged_tickets_never_check(
        ticket in ticket(),
        sig in b64_like(),
        uuid in text(),
        ssid in text(),
        request in text(),
    ) {
        let (_, public) = platform();
        let what = TicketFor { uuid: &uuid, ssid: &ssid, request: &request, session: &request, spake2: &ssid };
        let forged = Ticket { sig, expires_ms: u64::MAX, ..ticket.clone() };
        prop_assert!(forged.check(public, what, 0).is_err());
        prop_assert!(ticket.check(public, what, 0).is_err());
    }

    #[test]
    fn a_ticket_checks_only_as_issued(
        uuid in text(),
        ssid in text(),
        ap_id in text(),
        request in text(),
        other in text(),
        expires_ms in 1u64..,
    ) {
        let (key, public) = platform();
        let what = |uuid, ssid, request| TicketFor { uuid, ssid, request, session: "s", spake2: "m" };
        let t = Ticket::issue(key, what(&uuid, &ssid, &request), &ap_id, expires_ms);
        prop_assert!(t.check(public, what(&uuid, &ssid, &request), expires_ms - 1).is_ok());
        prop_assert!(t.check(public, what(&uuid, &ssid, &request), expires_ms).is_err());
        let back: Ticket = serde_json::from_slice(&encode(&t)).unwrap();
        prop_assert_eq!(&back, &t);
        if !other.eq_ignore_ascii_case(&uuid) {
            prop_assert!(t.check(public, what(&other, &ssid, &request), 0).is_err());
        }
        if other != ssid {
            prop_assert!(t.check(public, what(&uuid, &other, &request), 0).is_err());
        }
        if other != request {
            prop_assert!(t.check(public, what(&uuid, &ssid, &other), 0).is_err());
        }
        if other != ap_id {
            let moved = Ticket { ap_id: other.clone(), ..t };
            prop_assert!(moved.check(public, what(&uuid, &ssid, &request), 0).is_err());
        }
    }

    #[test]
    fn login_tokens_from_a_peer_never_panic_nor_verify(
        token in prop_oneof![
            "(?s).{0,200}",
            "dk1\\.[0-9]{0,21}\\.[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,100}",
        ],
        public in prop_oneof![b64_like(), "[0-9a-f]{64}"],
        uuid in text(),
        now_ms in any::<u64>(),
        skew in any::<u64>(),
    ) {
        let device = DeviceKey::generate();
        prop_assert!(verify_device_login(&device.public_hex(), &uuid, &token, now_ms, skew).is_err());
        let _ = verify_device_login(&public, &uuid, &token, now_ms, skew);
    }

    #[test]
    fn a_login_token_verifies_only_for_its_device_within_its_skew(
        uuid in text(),
        other in text(),
        at_ms in any::<u64>(),
        nonce in any::<[u8; 16]>(),
        skew in 0u64..1_000_000,
        offset in 0u64..2_000_000,
    ) {
        let device = DeviceKey::generate();
        let public = device.public_hex();
        let token = device_login_token(&device, &uuid, at_ms, &nonce);
        prop_assert!(token.len() < 200 && token.bytes().all(|b| b.is_ascii_graphic()));
        let later = at_ms.saturating_add(offset);
        let result = verify_device_login(&public, &uuid, &token, later, skew);
        if later - at_ms <= skew {
            prop_assert_eq!(result, Ok(nonce));
        } else {
            prop_assert!(result.is_err());
        }
        if !other.eq_ignore_ascii_case(&uuid) {
            prop_assert!(verify_device_login(&public, &other, &token, at_ms, skew).is_err());
        }
    }

    #[test]
    fn enrollments_from_a_peer_never_panic_nor_open(
        sealed in b64_like(),
        uuid in text(),
        request in text(),
    ) {
        let (key, _) = platform();
        prop_assert!(key.open_enrollment(&sealed, &uuid, &request).is_err());
    }

    #[test]
    fn an_enrollment_is_vouched_for_only_by_its_handshake(
        pass_tmp in text(),
        guess in text(),
        uuid in text(),
        request in text(),
    ) {
        let (key, public) = platform();
        let device = DeviceKey::generate();
        let (dev, msg_a) = DeviceHandshake::start(&uuid, "home", &pass_tmp);
        let (verifier, msg_b) = verifier_handshake(&uuid, "home", &pass_tmp, &msg_a, "c2Vzcw").unwrap();
        let keys = dev.finish(&msg_b, "c2Vzcw").unwrap();
        let sealed = seal_enrollment(public, &device, &uuid, &keys, &request);
        let claim = key.open_enrollment(&sealed, &uuid, &request).unwrap();
        prop_assert_eq!(claim.device_key_hex(), device.public_hex());
        prop_assert!(claim.vouched_by(&verifier, &uuid, &request));
        if guess != pass_tmp {
            let (dev, msg_a) = DeviceHandshake::start(&uuid, "home", &guess);
            let (verifier, msg_b) = verifier_handshake(&uuid, "home", &pass_tmp, &msg_a, "c2Vzcw").unwrap();
            let keys = dev.finish(&msg_b, "c2Vzcw").unwrap();
            let sealed = seal_enrollment(public, &device, &uuid, &keys, &request);
            let claim = key.open_enrollment(&sealed, &uuid, &request).unwrap();
            prop_assert!(!claim.vouched_by(&verifier, &uuid, &request));
        }
        // Nothing derived from pass_tmp is in the clear.
        prop_assert!(!sealed.contains(&b64(&claim.mac())));
    }
}
