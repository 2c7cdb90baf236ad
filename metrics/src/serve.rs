//! The HTTP endpoint that Prometheus scrapes: a minimal HTTP/1.1
//! responder on tokio, one request per connection. It is hand-written
//! because it answers exactly one path; a web framework would be most of
//! the platform's dependency tree.

use crate::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

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
    use tokio::io::AsyncReadExt;

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
