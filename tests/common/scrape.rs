//! Scraping a node's metrics endpoint (`listen_metrics`) over plain HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Cluster;

/// `GET path` on `address`: the status line and the body.
pub fn http_get(address: SocketAddr, path: &str) -> (String, String) {
    try_http_get(address, path).expect("an HTTP answer")
}

/// [`http_get`], or `None` when the connection closes without an answer.
pub fn try_http_get(address: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Some((status, body.to_string()))
}

/// The value of the sample `name{labels}` (labels exactly as written,
/// in order), which must be there.
pub fn sample(text: &str, series: &str) -> f64 {
    sample_if_any(text, series).unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// The value of the sample `name{labels}`, if there is one yet (a
/// labelled series appears with its first event).
pub fn sample_if_any(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

pub fn metrics(cluster: &Cluster, n: usize) -> String {
    let address = cluster
        .config(n)
        .listen_metrics
        .expect("dev sets listen_metrics");
    let (status, body) = http_get(address, "/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text: {body}");
    body
}
