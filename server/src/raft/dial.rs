//! Dialing the peer service of other members: one client per peer URL, shared by the transport's peer
//! tasks, the join at start and requests forwarded to the leader.
//!
//! ```text
//!   http://host:port    plain h2 (prior knowledge)
//!   https://host:port   TCP, then TLS with this member's peer client config: its peer certificate
//!                       presented, the server verified against --peer-trusted-ca-file (or not at all
//!                       with --peer-auto-tls, as etcd 3.4), ALPN h2; then h2
//! ```
//!
//! A client's channel connects lazily and reconnects by itself, so a client is built once per URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use super::transport::MAX_PEER_MESSAGE;
use crate::proto::modkvpb::peer_client::PeerClient;
use crate::tls::PeerTls;

/// Dials peers; one per member.
pub struct PeerDialer {
    /// The client side of peer TLS (`None`: no peer TLS configured, https peer URLs cannot be dialled).
    tls: Option<tokio_rustls::TlsConnector>,
    clients: Mutex<HashMap<String, PeerClient<Channel>>>,
}

impl PeerDialer {
    pub fn new(tls: Option<&PeerTls>) -> Arc<PeerDialer> {
        let tls = tls.map(|t| {
            let mut client = (*t.client).clone();
            client.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(client))
        });
        Arc::new(PeerDialer { tls, clients: Mutex::new(HashMap::new()) })
    }

    /// A client for the peer service at `url` (shared per URL).
    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("peer URL {url}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = if url.starts_with("https://") {
            let tls = self.tls.clone().ok_or_else(|| {
                format!("peer URL {url} is https, but this member has no peer TLS (--peer-cert-file / --peer-key-file or --peer-auto-tls)")
            })?;
            endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| dial_tls(tls.clone(), uri)))
        } else {
            endpoint.connect_lazy()
        };
        let c = PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        clients.insert(url.to_string(), c.clone());
        Ok(c)
    }
}

/// TCP to `uri`'s host and port, then the TLS handshake (server name: the URL's host, a name or an IP).
async fn dial_tls(
    tls: tokio_rustls::TlsConnector,
    uri: Uri,
) -> std::io::Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let host = uri.host().ok_or_else(|| invalid(format!("peer URL {uri} has no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.to_string()).map_err(|e| invalid(format!("peer URL {uri}: {e}")))?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let stream = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, tls.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(TokioIo::new(stream))
}
