//! [`ClientBuilder`]: a client from host names and a CA file or text, with
//! the defaults of [`ClientConfig::new`] unless told otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Client, ClientConfig, ClientError};

/// Where the cluster CA's certificate comes from.
#[derive(Clone, Debug)]
enum Ca {
    Pem(String),
    File(PathBuf),
}

/// Builds a [`Client`]: `Client::builder().contact_point("db1:9042")
/// .ca_file("ca.pem").connect().await`.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ClientBuilder {
    hosts: Vec<String>,
    ca: Option<Ca>,
    request_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    token_aware: Option<bool>,
}

impl ClientBuilder {
    /// Adds a contact point: `host:port`, the host a name or an address.
    pub fn contact_point(mut self, host: impl Into<String>) -> ClientBuilder {
        self.hosts.push(host.into());
        self
    }

    /// Adds contact points (see [`ClientBuilder::contact_point`]).
    pub fn contact_points<H: Into<String>>(
        mut self,
        hosts: impl IntoIterator<Item = H>,
    ) -> ClientBuilder {
        self.hosts.extend(hosts.into_iter().map(Into::into));
        self
    }

    /// The cluster CA's certificate, as PEM text (from memory).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> ClientBuilder {
        self.ca = Some(Ca::Pem(pem.into()));
        self
    }

    /// The cluster CA's certificate, read from a PEM file at connect.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientBuilder {
        self.ca = Some(Ca::File(path.into()));
        self
    }

    /// How long a node may take over a request (default: 2 s).
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long a QUIC handshake may take (default: 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Whether each request goes to a replica of its row (default: on).
    pub fn token_aware(mut self, on: bool) -> ClientBuilder {
        self.token_aware = Some(on);
        self
    }

    /// The configuration: host names resolved, the CA read and checked.
    pub fn config(self) -> Result<ClientConfig, ClientError> {
        if self.hosts.is_empty() {
            return Err(ClientError::Config("no contact point given".into()));
        }
        let contact_points = resolve_hosts(&self.hosts)?;
        let ca_pem = match self.ca {
            Some(Ca::Pem(pem)) => checked_ca(pem, "the CA text")?,
            Some(Ca::File(path)) => read_ca_file(&path)?,
            None => return Err(ClientError::Config("no CA certificate given".into())),
        };
        let mut config = ClientConfig::new(contact_points, ca_pem);
        if let Some(timeout) = self.request_timeout {
            config.request_timeout = timeout;
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        if let Some(on) = self.token_aware {
            config.token_aware = on;
        }
        Ok(config)
    }

    /// Connects (see [`Client::connect`]).
    pub async fn connect(self) -> Result<Client, ClientError> {
        let config = tokio::task::spawn_blocking(move || self.config())
            .await
            .map_err(|e| ClientError::Config(format!("resolving the hosts failed: {e}")))??;
        Client::connect(config).await
    }
}

/// The addresses of `hosts` (`host:port`, names resolved): a name's IPv4
/// addresses when it has any (nodes usually listen on one family), else
/// its IPv6 ones. Blocks while names resolve.
pub fn resolve_hosts(hosts: &[String]) -> Result<Vec<SocketAddr>, ClientError> {
    let mut addresses = Vec::new();
    for host in hosts {
        let host = host.trim();
        let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(host)
            .map_err(|e| {
                ClientError::Config(format!("{host:?} is not a host:port that resolves: {e}"))
            })?
            .collect();
        let v4: Vec<SocketAddr> = found.iter().copied().filter(SocketAddr::is_ipv4).collect();
        let chosen = if v4.is_empty() { found } else { v4 };
        for address in chosen {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    Ok(addresses)
}

/// The PEM text of the CA certificate file at `path`, checked to hold one.
pub fn read_ca_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Config(format!("cannot read the CA {}: {e}", path.display())))?;
    checked_ca(text, &path.display().to_string())
}

fn checked_ca(text: String, origin: &str) -> Result<String, ClientError> {
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ClientError::Config(format!(
            "{origin} holds no PEM certificate (-----BEGIN CERTIFICATE-----): pass the cluster's ca.pem"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_bad_input_is_a_config_error() {
        let pem = "-----BEGIN CERTIFICATE-----\n…";
        let config = Client::builder()
            .contact_point("localhost:9042")
            .contact_points(["127.0.0.1:9043"])
            .ca_pem(pem)
            .request_timeout(Duration::from_millis(500))
            .token_aware(false)
            .config()
            .unwrap();
        assert!(
            config
                .contact_points
                .contains(&"127.0.0.1:9042".parse().unwrap())
        );
        assert!(
            config
                .contact_points
                .contains(&"127.0.0.1:9043".parse().unwrap())
        );
        assert_eq!(config.request_timeout, Duration::from_millis(500));
        assert!(!config.token_aware);
        let no_port = Client::builder().contact_point("localhost").ca_pem(pem);
        assert!(matches!(no_port.config(), Err(ClientError::Config(_))));
        let no_ca = Client::builder().contact_point("127.0.0.1:9042");
        assert!(matches!(no_ca.config(), Err(ClientError::Config(_))));
        let not_pem = Client::builder()
            .contact_point("127.0.0.1:9042")
            .ca_pem("hello");
        let error = not_pem.config().unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }
}
