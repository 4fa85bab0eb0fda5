//! The node's plain-HTTP endpoint for Prometheus (`listen_metrics`):
//! `GET /metrics` answers what `scrape` encodes now; `GET /health`
//! answers `ok` (200) when the node serves clients, or why not (503: it
//! is joining, leaving, left or drained), as a load balancer's or an
//! orchestrator's readiness probe wants. HTTP/1.1 by hyper; nothing here
//! knows the node's services, only the functions it is given.
//!
//! The port has no authentication, so what reaches it is bounded: at most
//! [`MAX_CONNECTIONS`] at once (more are closed at once), each with
//! [`HEADER_TIMEOUT`] to send its request and [`CONNECTION_LIFETIME`] in
//! all; the scrape runs where blocking is allowed (it reads RocksDB's
//! properties and takes the services' locks: `Storage::blocking`), one at
//! a time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::network::BoxFuture;

/// Encodes the metrics now (OpenMetrics text), where blocking is allowed.
pub(crate) type Scrape = Arc<dyn Fn() -> BoxFuture<'static, String> + Send + Sync>;

/// Why the node does not serve clients now, if it does not.
pub(crate) type Health = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The content type of OpenMetrics text, which Prometheus asks for.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection has to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay open, however busy.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves `listener` until `cancel`.
pub(crate) async fn serve(
    listener: TcpListener,
    (scrape, health): (Scrape, Health),
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // One scrape at a time: a burst of scrapers waits rather than piling
    // blocking threads onto the services' locks.
    let scrape = Arc::new(Mutex::new(scrape));
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: the next accept may work.
                    debug!(%error, "metrics endpoint: cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics endpoint: {MAX_CONNECTIONS} connections already; closing one more");
            continue;
        };
        let (scrape, health) = (scrape.clone(), health.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (scrape, health) = (scrape.clone(), health.clone());
                async move { Ok::<_, Infallible>(answer(&request, &scrape, &health).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(error)) => debug!(%error, "metrics endpoint: connection ended"),
                Err(_) => debug!("metrics endpoint: connection open too long; closed"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
    connections.shutdown().await;
}

async fn answer<B>(
    request: &Request<B>,
    scrape: &Mutex<Scrape>,
    health: &Health,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let scrape = scrape.lock().await;
            (StatusCode::OK, OPENMETRICS, scrape().await)
        }
        (&Method::GET, "/health") => match health() {
            None => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Some(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /health\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
