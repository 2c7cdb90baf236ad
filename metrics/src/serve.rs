//! The HTTP endpoint that Prometheus scrapes, served by axum (hyper
//! underneath): HTTP/1.1 with keep-alive, as a scraper expects. axum is in
//! the binary already, through rumqttd; a hand-written responder would be
//! one more HTTP parser to get right.

use crate::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The path scrapes use.
pub const METRICS_PATH: &str = "/metrics";
/// What the encoder produces: OpenMetrics text, which Prometheus accepts.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long connections still open at shutdown get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The routes: `GET` (and `HEAD`) [`METRICS_PATH`]; anything else is 404.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route(METRICS_PATH, get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Metrics>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// Serves scrapes on `listener` until `shutdown`, then lets the
/// connections in progress finish, for at most [`SHUTDOWN_GRACE`].
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: CancellationToken) {
    let stopping = shutdown.clone();
    let server = axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move { stopping.cancelled().await });
    let server = async {
        if let Err(e) = server.await {
            warn!(error = %e, "metrics endpoint stopped");
        }
    };
    tokio::pin!(server);
    tokio::select! {
        _ = &mut server => {}
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => warn!("metrics connections still open {SHUTDOWN_GRACE:?} after shutdown; closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Sends `raw` and reads until the server closes (every request here
    /// asks for `Connection: close`, or is one the server closes on).
    async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_nothing_else() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        metrics.remap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, shutdown.clone()));

        let ok = request(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(header(head, "content-type"), Some(CONTENT_TYPE), "{head}");
        assert_eq!(
            header(head, "content-length"),
            Some(body.len().to_string().as_str()),
            "{head}"
        );
        assert!(body.contains("platform_remaps_total 1\n"), "{body}");

        // HTTP/1.0, a query string; HEAD has the headers and no body.
        let query = request(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(query.starts_with("HTTP/1.0 200 OK\r\n"), "{query}");
        let head_only = request(
            addr,
            b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"), "{head_only}");
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");

        // Two scrapes on one kept-alive connection.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..2 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
        }
        drop(stream);

        for raw in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ] {
            let out = request(addr, raw).await;
            assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
        }
        let post = request(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let garbage = request(addr, b"hello\r\n\r\n").await;
        assert!(
            garbage.starts_with("HTTP/1.1 400 ") || garbage.is_empty(),
            "{garbage}"
        );
        // A head that never ends is refused, not buffered without bound.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(1024 * 1024, b'a');
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(&huge).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 431 ") || out.starts_with("HTTP/1.1 400 "),
            "{out}"
        );

        // A client that sends nothing does not hold up shutdown.
        let _idle = TcpStream::connect(addr).await.unwrap();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
