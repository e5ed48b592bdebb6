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
//! Either way the TCP connection is a [`PeerConn`]: it gives up after [`conn::READ_IDLE`] without a byte
//! read (h2 pings every [`conn::PING_INTERVAL`], also while idle, keep a healthy one talking) or
//! [`conn::WRITE_STALL`] without progress writing, and then closes abortively, so what was buffered for
//! the peer is never delivered late.
//!
//! A client's channel connects lazily and reconnects by itself, so a client is built once per URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint, Uri};

use super::conn::{self, PeerConn};
use super::transport::MAX_PEER_MESSAGE;
use crate::membership::Member;
use crate::proto::modkvpb::peer_client::PeerClient;
use crate::proto::modkvpb::MembersRequest;
use crate::tls::PeerTls;

/// How long a TCP connect to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A dialled peer connection, plain or TLS.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerIo for T {}

/// Dials peers; one per member.
pub struct PeerDialer {
    /// The client side of peer TLS (`None`: no peer TLS configured, https peer URLs cannot be dialled).
    tls: Option<tokio_rustls::TlsConnector>,
    clients: Mutex<HashMap<String, PeerClient<Channel>>>,
}

/// A running cluster's member list, as one of its members gave it ([`PeerDialer::ask_members`]).
pub struct PeerMembers {
    /// The peer URL that answered.
    pub url: String,
    pub cluster_id: u64,
    pub members: Vec<Member>,
}

/// Why [`PeerDialer::ask_members`] has no member list.
#[derive(Debug)]
pub enum AskError {
    /// No peer gave a usable answer in time; the last failure.
    Unanswered(String),
    /// A peer answered with a list that cannot be read.
    Unreadable(String),
}

impl PeerDialer {
    /// Asks `peers` in turn for the cluster's member list (the peer service's `Members`, 2 s per call), up
    /// to `rounds` rounds `pause` apart, until one answers with a list `usable` accepts (a refused list
    /// counts as no answer, with the reason `usable` gives). Used by a member joining a running cluster
    /// and by `--proxy on` finding the cluster's client URLs.
    pub async fn ask_members(
        &self,
        peers: &[String],
        rounds: usize,
        pause: Duration,
        usable: impl Fn(&[Member]) -> Result<(), String>,
    ) -> Result<PeerMembers, AskError> {
        let mut last_error = String::new();
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(pause).await;
            }
            for url in peers {
                let mut client = match self.client(url) {
                    Ok(c) => c,
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                };
                let mut req = tonic::Request::new(MembersRequest {});
                req.set_timeout(Duration::from_secs(2));
                let resp = match client.members(req).await {
                    Ok(r) => r.into_inner(),
                    Err(e) => {
                        last_error = format!("{url}: {}", e.message());
                        continue;
                    }
                };
                let members: Vec<Member> = serde_json::from_slice(&resp.members_json)
                    .map_err(|e| AskError::Unreadable(format!("{url} sent an unreadable member list: {e}")))?;
                match usable(&members) {
                    Ok(()) => return Ok(PeerMembers { url: url.clone(), cluster_id: resp.cluster_id, members }),
                    Err(why) => last_error = format!("{url}: {why}"),
                }
            }
        }
        Err(AskError::Unanswered(last_error))
    }

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
            .http2_keep_alive_interval(conn::PING_INTERVAL)
            .keep_alive_timeout(conn::PING_TIMEOUT)
            .keep_alive_while_idle(true);
        let tls = if url.starts_with("https://") {
            Some(self.tls.clone().ok_or_else(|| {
                format!("peer URL {url} is https, but this member has no peer TLS (--peer-cert-file / --peer-key-file or --peer-auto-tls)")
            })?)
        } else {
            None
        };
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| dial(tls.clone(), uri)));
        let c = PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        clients.insert(url.to_string(), c.clone());
        Ok(c)
    }
}

/// TCP to `uri`'s host and port (a [`PeerConn`]), then, for https, the TLS handshake (server name: the
/// URL's host, a name or an IP).
async fn dial(tls: Option<tokio_rustls::TlsConnector>, uri: Uri) -> std::io::Result<TokioIo<Box<dyn PeerIo>>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let host = uri.host().ok_or_else(|| invalid(format!("peer URL {uri} has no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
    let tcp = PeerConn::new(tcp);
    let Some(tls) = tls else {
        return Ok(TokioIo::new(Box::new(tcp)));
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| invalid(format!("peer URL {uri}: {e}")))?;
    let stream = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, tls.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(TokioIo::new(Box::new(stream)))
}
