//! One client port for gRPC and HTTP (etcd's cmux): each connection is served by HTTP/1.1 or HTTP/2 as
//! the client speaks; a request whose content type is `application/grpc…` goes to the gRPC services,
//! everything else to the HTTP router (health, version, the JSON gateway, plugin routes).
//!
//! - [`serve`]: the accept loop (failed accepts, e.g. out of file descriptors, are retried with a growing
//!   pause and logged once in a while, as Go's servers do) and the HTTP/1.1 and HTTP/2 limits;
//! - `serve_connection`: one connection, behind [`FixAuthority`] (which also bounds what a connection may
//!   send before the HTTP/2 server sees it, and how long it may take to show its protocol);
//! - [`Mux`]: the gRPC / HTTP split of requests; with `--client-cert-auth` ([`Mux::with_cn_auth`]) each
//!   gRPC request of a TLS connection carries the Common Name of the verified client certificate
//!   ([`super::auth::PeerCn`]) while auth is on, for `CallerLayer` to serve a request without a token as
//!   that user; the JSON gateway is refused to such a connection then, as etcd's `accessController`
//!   refuses it (its gateway could not act as that user).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tower::Service;

use super::authority::{FixAuthority, MAX_FRAME, MAX_HEADER_LIST};
use crate::server::v3::Auth;

/// etcd's default `--max-concurrent-streams` is unlimited; this bounds one connection's streams.
const MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Response bytes queued per HTTP/2 stream beyond what the client's flow-control window takes (hyper's
/// default); with the connection window (1 MiB, hyper's default) this bounds what one connection holds.
const MAX_SEND_BUF: usize = 400 * 1024;
/// An HTTP/1.1 client gets this long to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 keepalive: a ping after this much silence, the connection closed if it is not answered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// After a failed accept, the next waits this long, doubling up to [`ACCEPT_PAUSE_MAX`] while accepts keep
/// failing (Go's `http.Server` does the same): out of file descriptors, the listener would otherwise be
/// retried in a busy loop.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(5);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Failed accepts are logged at most this often (with how many failed since the last line).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What the mux hands gRPC requests to.
pub trait GrpcService:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> GrpcService for T where
    T: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

#[derive(Clone)]
pub struct Mux<G = axum::Router> {
    /// The gRPC services: the client port's [`super::grpc::Dispatch`] behind its layers, or an axum router
    /// (`tonic::service::Routes::into_axum_router`) on the peer port and in the proxy.
    grpc: G,
    http: axum::Router,
    /// Set with `--client-cert-auth`: whether auth is on, for the certificate's Common Name.
    cn_auth: Option<Arc<dyn Auth>>,
    /// The Common Name of this connection's verified client certificate (a per-connection clone).
    peer_cn: Option<Arc<str>>,
}

impl<G: Clone> Mux<G> {
    /// `grpc`: the gRPC services (with any layers around them); `http`: everything else.
    pub fn new(grpc: G, http: axum::Router) -> Mux<G> {
        Mux { grpc, http, cn_auth: None, peer_cn: None }
    }

    /// With `--client-cert-auth`: while `auth` is on, the gRPC requests of a TLS connection carry the
    /// Common Name of its client certificate (as etcd's `AuthInfoFromTLS`).
    pub fn with_cn_auth(mut self, auth: Arc<dyn Auth>) -> Mux<G> {
        self.cn_auth = Some(auth);
        self
    }

    /// This mux for one TLS connection: its client certificate's Common Name, if it is wanted.
    fn for_tls_connection(&self, tls: &rustls::ServerConnection) -> Mux<G> {
        let mut mux = self.clone();
        if mux.cn_auth.is_some() {
            mux.peer_cn = tls.peer_certificates().and_then(|certs| certs.first()).and_then(common_name);
        }
        mux
    }
}

/// A JSON gateway path (`/v3beta/` is the same gateway).
fn is_gateway(path: &str) -> bool {
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// etcd's answer to a gateway request over a connection whose client certificate has a Common Name while
/// auth is on (its gateway would not be served as that user; etcd refuses rather than ignore it).
fn cn_refused() -> Response<Body> {
    let body = "CommonName of client sending a request against gateway will be ignored and not used as expected\n";
    Response::builder()
        .status(http::StatusCode::BAD_REQUEST)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Body::from(body))
        .expect("a valid response")
}

/// The subject's Common Name of a DER certificate (the last one, as Go's `pkix.Name` keeps; a UTF8String,
/// PrintableString or IA5String); `None` when it has none or it is empty.
fn common_name(der: &rustls::pki_types::CertificateDer<'_>) -> Option<Arc<str>> {
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    // The subject `Name` without its SEQUENCE header: put one back for the DER reader.
    let content = cert.subject();
    let mut name = vec![0x30];
    match content.len() {
        n if n < 0x80 => name.push(n as u8),
        n if n <= 0xff => name.extend([0x81, n as u8]),
        n if n <= 0xffff => name.extend([0x82, (n >> 8) as u8, n as u8]),
        _ => return None,
    }
    name.extend_from_slice(content);
    let cn_oid = yasna::models::ObjectIdentifier::from_slice(&[2, 5, 4, 3]);
    let mut cn = None;
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }
    yasna::parse_der(&name, |r| {
        r.read_sequence_of(|r| {
            r.read_set_of(|r| {
                r.read_sequence(|r| {
                    let oid = r.next().read_oid()?;
                    let value = r.next().read_tagged_der()?;
                    if oid == cn_oid {
                        cn = value.as_str().map(str::to_owned);
                    }
                    Ok(())
                })
            })
        })
    })
    .ok()?;
    cn.filter(|cn| !cn.is_empty()).map(Arc::from)
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// hyper calls this for each request of a connection, through a shared reference: only the service the
/// request goes to is cloned (tower services are called through `&mut`), never the whole mux — its
/// reference counts are shared by every connection's requests on every core.
impl<G: GrpcService> hyper::service::Service<Request<Incoming>> for Mux<G> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if is_grpc(&req) {
            if let Some(status) = super::unknown::unimplemented(req.uri().path()) {
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
            if let (Some(cn), Some(auth)) = (&self.peer_cn, &self.cn_auth) {
                if auth.enabled() {
                    req.extensions_mut().insert(super::auth::PeerCn(cn.clone()));
                }
            }
            // The services are always ready (tonic's servers, the layers around them and axum's routers
            // are): called at once, not through `oneshot`.
            let mut grpc = self.grpc.clone();
            Box::pin(grpc.call(req.map(Body::new)))
        } else {
            if let (Some(_), Some(auth)) = (&self.peer_cn, &self.cn_auth) {
                if auth.enabled() && is_gateway(req.uri().path()) {
                    return Box::pin(std::future::ready(Ok(cn_refused())));
                }
            }
            let mut http = self.http.clone();
            Box::pin(http.call(req.map(Body::new)))
        }
    }
}

/// Serves `mux` on `listener` until `stop` changes, then stops accepting and lets open requests finish
/// (the caller bounds how long).
///
/// With `tls` (an `https://` URL), each connection first completes a TLS handshake, in its own task and
/// within [`crate::tls::HANDSHAKE_TIMEOUT`], so a slow or failing client never holds up accepting others;
/// a failed handshake (e.g. no valid client certificate under `--client-cert-auth`) just closes that
/// connection.
pub async fn serve<G: GrpcService>(
    listener: tokio::net::TcpListener,
    mux: Mux<G>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    errors: crate::fatal::Reporter,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_frame_size(MAX_FRAME as u32)
        .max_header_list_size(MAX_HEADER_LIST as u32)
        .max_send_buf_size(MAX_SEND_BUF)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut accept_stop = stop.clone();
    accept_loop(&listener, &mut accept_stop, &errors, "client", |stream, peer| {
        let _ = stream.set_nodelay(true);
        let (builder, mux, watcher) = (builder.clone(), mux.clone(), graceful.watcher());
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(builder, watcher, stream, mux, peer));
            }
            Some(acceptor) => {
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let stream = tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => return,
                        stream = tls_handshake(acceptor, stream, peer) => stream,
                    };
                    if let Some(stream) = stream {
                        let mux = mux.for_tls_connection(stream.get_ref().1);
                        serve_connection(builder, watcher, stream, mux, peer).await
                    }
                });
            }
        }
    })
    .await;
    drop(listener);
    graceful.shutdown().await;
}

/// Accepts connections on `listener` until `stop`, handing each to `serve_one`. An accept that fails for
/// want of a resource (file descriptors, memory) is waited out with a growing pause and logged once per
/// interval; one that says the listener is broken is reported on `errors` (as `<what> listener: …`) and
/// ends the loop.
pub async fn accept_loop(
    listener: &tokio::net::TcpListener,
    stop: &mut watch::Receiver<bool>,
    errors: &crate::fatal::Reporter,
    what: &str,
    mut serve_one: impl FnMut(tokio::net::TcpStream, std::net::SocketAddr),
) {
    let mut failures = AcceptFailures::default();
    let local = listener.local_addr().ok();
    loop {
        let conn = tokio::select! {
            _ = stop.changed() => break,
            conn = listener.accept() => conn,
        };
        let (stream, peer) = match conn {
            Ok(c) => c,
            Err(e) if of_one_connection(&e) => {
                tracing::debug!(%e, "accepting a connection failed");
                continue;
            }
            Err(e) if listener_broken(&e) => {
                let _ = errors.send(crate::fatal::Stop::Failed(format!("{what} listener: {e}")));
                break;
            }
            Err(e) => {
                let pause = failures.failed(&e, local);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        failures.succeeded(local);
        serve_one(stream, peer);
    }
}

/// The server side of a TLS handshake, bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]; `None` (logged, as
/// etcd logs "rejected connection from ...") when it fails, e.g. without a valid client certificate.
async fn tls_handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::warn!(%peer, %e, "rejected client connection: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "rejected client connection: TLS handshake timed out");
            None
        }
    }
}

/// Serves one (plain or TLS) client connection: `FixAuthority` in front of hyper, watched for graceful
/// shutdown.
async fn serve_connection<S, G>(
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    mux: Mux<G>,
    peer: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    G: GrpcService,
{
    let io = TokioIo::new(FixAuthority::new(stream));
    let conn = builder.serve_connection_with_upgrades(io, mux);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, %e, "client connection ended with an error");
    }
}

/// Accept errors that concern the one connection being accepted (gone before it was), not the listener.
fn of_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
}

/// Accept errors that say the listener itself is unusable (Linux's EBADF, EINVAL, ENOTSOCK, EOPNOTSUPP):
/// the port is then given up on. Any other failure is waited out.
fn listener_broken(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(9 | 22 | 88 | 95))
}

/// Accepts failing for want of a resource (file descriptors, memory): the pause before the next one and
/// when it was last logged.
#[derive(Default)]
struct AcceptFailures {
    pause: Option<Duration>,
    logged: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u64,
    /// Whether a failure was logged since accepting last worked.
    warned: bool,
}

impl AcceptFailures {
    /// Counts a failure, logs it if none was logged for [`ACCEPT_LOG_EVERY`], and says how long to pause.
    fn failed(&mut self, e: &std::io::Error, local: Option<std::net::SocketAddr>) -> Duration {
        let pause = self.pause.map_or(ACCEPT_PAUSE_MIN, |p| (p * 2).min(ACCEPT_PAUSE_MAX));
        self.pause = Some(pause);
        self.unlogged += 1;
        if self.logged.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
            tracing::warn!(
                address = ?local,
                error = %e,
                failures = self.unlogged,
                "accepting connections fails; retrying with pauses of up to {ACCEPT_PAUSE_MAX:?}",
            );
            self.logged = Some(Instant::now());
            self.unlogged = 0;
            self.warned = true;
        }
        pause
    }

    /// An accept worked: no pause before the next; the recovery is logged if the failure was.
    fn succeeded(&mut self, local: Option<std::net::SocketAddr>) {
        self.pause = None;
        if self.warned {
            tracing::warn!(address = ?local, "accepting connections again");
            self.warned = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "modkv");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "no cn");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(&rustls::pki_types::CertificateDer::from(vec![0x30, 0x00])), None);
    }
}
