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
//! [`serve`] is a minimal HTTP/1.1 responder for scrapes: `GET /metrics`
//! answers the OpenMetrics text, anything else 404.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use protocol::onboarding::AccessOutcome;
use protocol::AccessErrorCode;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

/// Per-gateway handles ([`Metrics::redirects`], [`Metrics::connected_devices`]),
/// re-exported so that callers need no direct dependency on the client.
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// The path scrapes use.
pub const METRICS_PATH: &str = "/metrics";
/// What the encoder produces: OpenMetrics text, which Prometheus accepts.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Longest request head read; a scrape's is a few hundred bytes.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client gets to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further ones wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// Reasons an assignment changes, as the registry records them.
pub const ASSIGNMENT_REASONS: [&str; 5] = ["policy", "failover", "assign", "remap", "drain"];
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
    store_flush: HistogramFamily<StoreLabel>,
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
        let store_flush: HistogramFamily<StoreLabel> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "store_flush_duration",
            "Time to make a store's changes durable (sled flush), by store",
            Unit::Seconds,
            store_flush.clone(),
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
                store_flush,
            }),
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

/// Serves scrapes on `listener` until `shutdown`, then waits for the
/// connections in progress. One task per connection, each answering one
/// request and closing (`Connection: close`).
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, usually: let some close.
                warn!(error = %e, "metrics endpoint cannot accept");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = handle(stream, &metrics) => {
                    if let Err(e) = result {
                        debug!(error = %e, "metrics connection failed");
                    }
                }
            }
            drop(slot);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            stream
                .write_all(&response(400, "text/plain", b"bad request\n", true))
                .await?;
            return stream.shutdown().await;
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    stream.write_all(&respond(&head, metrics)).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head. `None` if the head is longer
/// than [`MAX_REQUEST`] or the client closed before finishing it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    while len < buf.len() {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = find_head_end(&buf[from..len]) {
            buf.truncate(from + end);
            return Ok(Some(buf));
        }
    }
    Ok(None)
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// The whole response to one request head.
fn respond(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response(400, "text/plain", b"bad request\n", true);
    };
    if !version.starts_with("HTTP/1.") {
        return response(400, "text/plain", b"bad request\n", true);
    }
    let path = target.split('?').next().unwrap_or_default();
    let with_body = method != "HEAD";
    if path != METRICS_PATH || !matches!(method, "GET" | "HEAD") {
        return response(404, "text/plain", b"not found\n", with_body);
    }
    match metrics.encode() {
        Ok(text) => response(200, CONTENT_TYPE, text.as_bytes(), with_body),
        Err(_) => response(500, "text/plain", b"cannot encode metrics\n", with_body),
    }
}

fn response(status: u16, content_type: &str, body: &[u8], with_body: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

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

    #[tokio::test]
    async fn the_responder_serves_metrics_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        metrics.remap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, shutdown.clone()));

        let ok = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Type: {CONTENT_TYPE}")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert!(body.contains("platform_remaps_total 1\n"), "{body}");

        let query = request(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
        assert!(query.starts_with("HTTP/1.1 200 OK\r\n"), "{query}");
        let head_only = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");

        for raw in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        ] {
            let out = request(addr, raw).await;
            assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        }
        let garbage = request(addr, b"hello\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        // A head that never ends within the limit is refused, not buffered.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST, b'a');
        let out = request(addr, &huge).await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");

        // A client that sends nothing does not hold up shutdown.
        let _idle = TcpStream::connect(addr).await.unwrap();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
