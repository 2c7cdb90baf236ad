//! The platform's Prometheus metrics, and the HTTP endpoint that serves them.
//!
//! [`Metrics`] holds one `prometheus-client` registry and every metric
//! family of the platform. There is no global registry: each platform
//! makes its own, and hands clones to its workers, so several platforms in
//! one test process keep their own counts. A worker started without one
//! records into a default [`Metrics`] that nobody serves.
//!
//! Recording is cheap: a counter increment is an atomic add, and a metric
//! with a label costs a hash-map lookup under a read lock. Series whose
//! label values are known in advance (outcomes, reasons) exist from the
//! start with value 0; per-gateway series are created when a gateway is
//! first seen, and their handles are kept by the caller.
//!
//! [`serve`] serves scrapes over HTTP/1.1 with axum ([`router`]): `GET
//! /metrics` answers the OpenMetrics text, another method 405, another
//! path 404.
//!
//! This crate is its own so that a library that only wants an MQTT client
//! (`bus`) pulls in no exporter: only the workers that count, and the
//! process that serves the count, depend on it.

#![forbid(unsafe_code)]

mod serve;

pub use serve::{router, serve, CONTENT_TYPE, METRICS_PATH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use protocol::onboarding::AccessOutcome;
use protocol::AccessErrorCode;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Per-gateway handles ([`Metrics::redirects`], [`Metrics::connected_devices`]),
/// re-exported so that callers need no direct dependency on the client.
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// Reasons an assignment changes, as the registry records them.
pub const ASSIGNMENT_REASONS: [&str; 5] = ["policy", "failover", "assign", "remap", "drain"];
/// Why the registry dropped a gateway's presence report unread: over the
/// gateway's rate, a list longer than the protocol allows, or not a report.
pub const PRESENCE_DROP_REASONS: [&str; 3] = ["rate_limited", "too_many_ids", "malformed"];
/// How the verifier answered a verification message.
pub const VERIFICATION_OUTCOMES: [&str; 4] = ["found", "unknown_device", "bad_request", "error"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabel {
    gateway: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerLabel {
    broker: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabel {
    broker: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeFailureLabel {
    broker: String,
    reason: &'static str,
}

/// Why a TLS handshake failed, as `platform_tls_handshake_failures_total`
/// labels it (`tls::HandshakeFailure::label`).
pub const HANDSHAKE_FAILURE_REASONS: [&str; 6] = [
    "timeout",
    "not_tls",
    "alert",
    "closed",
    "source_busy",
    "error",
];

/// The TLS counters of one embedded broker's listener
/// ([`Metrics::broker_tls`]). A default one counts into nothing anybody
/// serves.
#[derive(Debug, Clone, Default)]
pub struct BrokerTls {
    /// Handshakes that authenticated the server with its certificate.
    pub full: Counter,
    /// Handshakes that resumed an earlier session (a ticket).
    pub resumed: Counter,
    failures: [Counter; HANDSHAKE_FAILURE_REASONS.len()],
}

impl BrokerTls {
    /// A handshake failed for `reason`, one of [`HANDSHAKE_FAILURE_REASONS`].
    pub fn failed(&self, reason: &str) {
        if let Some(i) = HANDSHAKE_FAILURE_REASONS.iter().position(|r| *r == reason) {
            self.failures[i].inc();
        }
    }
}

/// One embedded broker's counts of subscribers it disconnected because
/// they fell behind the head of a commit log ([`Metrics::broker_lag`]).
/// A default one counts into nothing anybody serves.
#[derive(Debug, Clone, Default)]
pub struct BrokerLag {
    /// Subscribers disconnected.
    pub disconnects: Counter,
    /// Messages they had not read, dropped with their log segment.
    pub messages: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabel {
    store: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Exponential buckets, in seconds, from 100 µs doubling `n` times:
/// 18 buckets reach 13.1 s.
fn buckets(n: u16) -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, n)
}

/// Latencies of machine work: 100 µs to 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(buckets(18))
}

/// The platform's metrics. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    onboardings: Family<OutcomeLabel, Counter>,
    onboarding_duration: Histogram,
    verifications: Family<OutcomeLabel, Counter>,
    queries_assigned: Counter,
    queries_refused: Counter,
    query_duration: Histogram,
    assignments: Family<ReasonLabel, Counter>,
    remaps: Counter,
    redirects: Family<GatewayLabel, Counter>,
    connected: Family<GatewayLabel, Gauge>,
    presence_dropped: Family<ReasonLabel, Counter>,
    presence_ignored: Counter,
    store_flush: HistogramFamily<StoreLabel>,
    lagged_disconnects: Family<BrokerLabel, Counter>,
    lagged_messages: Family<BrokerLabel, Counter>,
    handshakes: Family<HandshakeLabel, Counter>,
    handshake_failures: Family<HandshakeFailureLabel, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered, prefixed `platform_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("platform");

        let onboardings = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "onboardings",
            "Access requests answered by an AP, by outcome (granted or the error code)",
            onboardings.clone(),
        );
        // A human may take up to a minute to confirm: up to 105 s.
        let onboarding_duration = Histogram::new(buckets(21));
        registry.register_with_unit(
            "onboarding_duration",
            "From an AP receiving an access request to its answer, as the AP reports it",
            Unit::Seconds,
            onboarding_duration.clone(),
        );
        let verifications = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "verifications",
            "Verification messages handled by the verifier, by outcome",
            verifications.clone(),
        );
        let queries = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "gateway_queries",
            "Gateway queries handled by the registry: assigned (answered with a gateway) or refused",
            queries.clone(),
        );
        let query_duration = latency_histogram();
        registry.register_with_unit(
            "query_duration",
            "From the registry taking a batch of gateway queries to publishing each answer",
            Unit::Seconds,
            query_duration.clone(),
        );
        let assignments = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "assignments",
            "Durable assignment changes, by reason",
            assignments.clone(),
        );
        let remaps = Counter::default();
        registry.register("remaps", "Devices moved by an admin remap", remaps.clone());
        let redirects = Family::<GatewayLabel, Counter>::default();
        registry.register(
            "redirects",
            "Redirect notices the registry asked a gateway to send to a moved device",
            redirects.clone(),
        );
        let connected = Family::<GatewayLabel, Gauge>::default();
        registry.register(
            "gateway_connected_devices",
            "Devices connected to each gateway, from the gateways' presence reports",
            connected.clone(),
        );
        let presence_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "presence_reports_dropped",
            "Gateway presence reports the registry dropped unread, by reason (rate_limited, too_many_ids, malformed)",
            presence_dropped.clone(),
        );
        let presence_ignored = Counter::default();
        registry.register(
            "presence_ids_ignored",
            "Device ids in gateway presence reports that the registry did not believe: not valid ids, or not assigned to the reporting gateway",
            presence_ignored.clone(),
        );
        let store_flush: HistogramFamily<StoreLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "store_flush_duration",
            "Time to make a store's changes durable (sled flush), by store",
            Unit::Seconds,
            store_flush.clone(),
        );

        let lagged_disconnects = Family::<BrokerLabel, Counter>::default();
        registry.register(
            "broker_lagged_disconnects",
            "Subscribers an embedded broker disconnected because they fell behind the head of a commit log, by broker",
            lagged_disconnects.clone(),
        );
        let lagged_messages = Family::<BrokerLabel, Counter>::default();
        registry.register(
            "broker_lagged_messages",
            "Messages those subscribers had not read, dropped with their log segment, by broker",
            lagged_messages.clone(),
        );

        let handshakes = Family::<HandshakeLabel, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes an embedded broker completed, by broker and kind (full: the server's certificate; resumed: a session ticket)",
            handshakes.clone(),
        );
        let handshake_failures = Family::<HandshakeFailureLabel, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes an embedded broker's listener failed, by broker and reason (timeout, not_tls, alert, closed, source_busy, error)",
            handshake_failures.clone(),
        );

        // Series with known label values exist from the start, at 0.
        for outcome in std::iter::once(AccessOutcome::Granted)
            .chain(AccessErrorCode::ALL.map(AccessOutcome::Refused))
        {
            drop(onboardings.get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            }));
        }
        for outcome in VERIFICATION_OUTCOMES {
            drop(verifications.get_or_create(&OutcomeLabel { outcome }));
        }
        for reason in ASSIGNMENT_REASONS {
            drop(assignments.get_or_create(&ReasonLabel { reason }));
        }
        for reason in PRESENCE_DROP_REASONS {
            drop(presence_dropped.get_or_create(&ReasonLabel { reason }));
        }
        for store in ["registry", "verifier"] {
            drop(store_flush.get_or_create(&StoreLabel { store }));
        }
        let queries_assigned = queries.get_or_create_owned(&OutcomeLabel {
            outcome: "assigned",
        });
        let queries_refused = queries.get_or_create_owned(&OutcomeLabel { outcome: "refused" });

        Metrics {
            inner: Arc::new(Inner {
                registry,
                onboardings,
                onboarding_duration,
                verifications,
                queries_assigned,
                queries_refused,
                query_duration,
                assignments,
                remaps,
                redirects,
                connected,
                presence_dropped,
                presence_ignored,
                store_flush,
                lagged_disconnects,
                lagged_messages,
                handshakes,
                handshake_failures,
            }),
        }
    }

    /// The lag counters of embedded broker `broker` (`platform`,
    /// `gateway-gw-1`, …), created at 0.
    pub fn broker_lag(&self, broker: &str) -> BrokerLag {
        let label = BrokerLabel {
            broker: broker.to_owned(),
        };
        BrokerLag {
            disconnects: self.inner.lagged_disconnects.get_or_create_owned(&label),
            messages: self.inner.lagged_messages.get_or_create_owned(&label),
        }
    }

    /// The TLS counters of embedded broker `broker`, created at 0.
    pub fn broker_tls(&self, broker: &str) -> BrokerTls {
        let handshake = |kind| HandshakeLabel {
            broker: broker.to_owned(),
            kind,
        };
        let failure = |reason| {
            self.inner
                .handshake_failures
                .get_or_create_owned(&HandshakeFailureLabel {
                    broker: broker.to_owned(),
                    reason,
                })
        };
        BrokerTls {
            full: self
                .inner
                .handshakes
                .get_or_create_owned(&handshake("full")),
            resumed: self
                .inner
                .handshakes
                .get_or_create_owned(&handshake("resumed")),
            failures: HANDSHAKE_FAILURE_REASONS.map(failure),
        }
    }

    /// An AP answered an access request.
    pub fn onboarding(&self, outcome: AccessOutcome, latency: Duration) {
        self.inner
            .onboardings
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
        self.inner
            .onboarding_duration
            .observe(latency.as_secs_f64());
    }

    /// The verifier handled a verification message; `outcome` is one of
    /// [`VERIFICATION_OUTCOMES`].
    pub fn verification(&self, outcome: &'static str) {
        self.inner
            .verifications
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// The registry handled a gateway query.
    pub fn gateway_query(&self, assigned: bool) {
        if assigned {
            self.inner.queries_assigned.inc();
        } else {
            self.inner.queries_refused.inc();
        }
    }

    /// A query's answer went out `elapsed` after its batch was taken.
    pub fn query_answered(&self, elapsed: Duration) {
        self.inner.query_duration.observe(elapsed.as_secs_f64());
    }

    /// An assignment change became durable; `reason` is one of
    /// [`ASSIGNMENT_REASONS`].
    pub fn assignment(&self, reason: &'static str) {
        self.inner
            .assignments
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// An admin remap moved a device.
    pub fn remap(&self) {
        self.inner.remaps.inc();
    }

    /// The redirect counter of a gateway. Keep the handle: it shares its
    /// value with the registry, and increments it without a lookup.
    pub fn redirects(&self, gateway_id: &str) -> Counter {
        self.inner.redirects.get_or_create_owned(&GatewayLabel {
            gateway: gateway_id.to_owned(),
        })
    }

    /// The connected-devices gauge of a gateway, as a handle to keep.
    pub fn connected_devices(&self, gateway_id: &str) -> Gauge {
        self.inner.connected.get_or_create_owned(&GatewayLabel {
            gateway: gateway_id.to_owned(),
        })
    }

    /// The registry dropped a presence report unread; `reason` is one of
    /// [`PRESENCE_DROP_REASONS`].
    pub fn presence_dropped(&self, reason: &'static str) {
        self.inner
            .presence_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The registry did not believe `n` device ids of a presence report.
    pub fn presence_ids_ignored(&self, n: u64) {
        self.inner.presence_ignored.inc_by(n);
    }

    /// A store (`"registry"` or `"verifier"`) flushed in `elapsed`.
    pub fn store_flush(&self, store: &'static str, elapsed: Duration) {
        self.inner
            .store_flush
            .get_or_create(&StoreLabel { store })
            .observe(elapsed.as_secs_f64());
    }

    /// Every metric in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_series_render() {
        let m = Metrics::new();
        m.onboarding(AccessOutcome::Granted, Duration::from_millis(40));
        m.onboarding(
            AccessOutcome::Refused(AccessErrorCode::PassTmpMismatch),
            Duration::from_millis(5),
        );
        m.gateway_query(true);
        m.assignment("remap");
        m.remap();
        m.redirects("gw-1").inc();
        m.connected_devices("gw-2").set(3);
        m.store_flush("registry", Duration::from_millis(2));
        let text = m.encode().unwrap();
        for line in [
            r#"platform_onboardings_total{outcome="granted"} 1"#,
            r#"platform_onboardings_total{outcome="pass_tmp_mismatch"} 1"#,
            r#"platform_onboardings_total{outcome="timeout"} 0"#,
            "platform_onboarding_duration_seconds_count 2",
            r#"platform_gateway_queries_total{outcome="assigned"} 1"#,
            r#"platform_gateway_queries_total{outcome="refused"} 0"#,
            r#"platform_assignments_total{reason="remap"} 1"#,
            r#"platform_assignments_total{reason="policy"} 0"#,
            "platform_remaps_total 1",
            r#"platform_redirects_total{gateway="gw-1"} 1"#,
            r#"platform_gateway_connected_devices{gateway="gw-2"} 3"#,
            r#"platform_store_flush_duration_seconds_count{store="registry"} 1"#,
            r#"platform_verifications_total{outcome="found"} 0"#,
            r#"platform_query_duration_seconds_bucket{le="0.0001"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // Two registries do not share counts.
        assert!(Metrics::new()
            .encode()
            .unwrap()
            .contains("platform_remaps_total 0"));
    }
}
