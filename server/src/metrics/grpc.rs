//! `grpc_server_*`: the server metrics of go-grpc-prometheus, which etcd exposes, counted by a tower
//! layer around the gRPC services.
//!
//! ```text
//!   request ──▶ started +1 ──▶ request body: received +1 per gRPC message
//!                              service ──▶ response body: sent +1 per gRPC message
//!                                          grpc-status (headers, or trailers at the end) ──▶ handled{code} +1
//!                                          dropped before a status (client went away)   ──▶ handled{Canceled} +1
//! ```
//!
//! Like etcd (`grpc_prometheus.Register`), every method of etcd's client API starts at zero, with every
//! code for `grpc_server_handled_total`. Requests to other paths are not counted, so a client cannot
//! grow the label sets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

/// gRPC status codes by number, named as grpc-go's `codes.Code.String()` names them.
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// etcd 3.4's client API: (service, method, grpc_type) as go-grpc-prometheus labels them.
pub const METHODS: &[(&str, &str, &str)] = &[
    ("etcdserverpb.Auth", "AuthDisable", "unary"),
    ("etcdserverpb.Auth", "AuthEnable", "unary"),
    ("etcdserverpb.Auth", "Authenticate", "unary"),
    ("etcdserverpb.Auth", "RoleAdd", "unary"),
    ("etcdserverpb.Auth", "RoleDelete", "unary"),
    ("etcdserverpb.Auth", "RoleGet", "unary"),
    ("etcdserverpb.Auth", "RoleGrantPermission", "unary"),
    ("etcdserverpb.Auth", "RoleList", "unary"),
    ("etcdserverpb.Auth", "RoleRevokePermission", "unary"),
    ("etcdserverpb.Auth", "UserAdd", "unary"),
    ("etcdserverpb.Auth", "UserChangePassword", "unary"),
    ("etcdserverpb.Auth", "UserDelete", "unary"),
    ("etcdserverpb.Auth", "UserGet", "unary"),
    ("etcdserverpb.Auth", "UserGrantRole", "unary"),
    ("etcdserverpb.Auth", "UserList", "unary"),
    ("etcdserverpb.Auth", "UserRevokeRole", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("grpc.health.v1.Health", "Check", "unary"),
    ("grpc.health.v1.Health", "Watch", "server_stream"),
];

/// Label names in the order Go's client sorts them.
type MethodLabels = [(&'static str, &'static str); 3];
type HandledLabels = [(&'static str, &'static str); 4];

/// The counters of one method, resolved once so a request touches no map but the path lookup.
#[derive(Debug)]
struct MethodCounters {
    started: Counter,
    received: Counter,
    sent: Counter,
    handled: [Counter; CODES.len()],
}

#[derive(Debug)]
pub struct GrpcMetrics {
    methods: Arc<HashMap<String, Arc<MethodCounters>>>,
}

impl GrpcMetrics {
    pub(super) fn new(registry: &mut Registry) -> GrpcMetrics {
        let started = Family::<MethodLabels, Counter>::default();
        let handled = Family::<HandledLabels, Counter>::default();
        let received = Family::<MethodLabels, Counter>::default();
        let sent = Family::<MethodLabels, Counter>::default();
        let mut methods = HashMap::new();
        for &(service, method, kind) in METHODS {
            let labels = [("grpc_method", method), ("grpc_service", service), ("grpc_type", kind)];
            let counters = MethodCounters {
                started: started.get_or_create_owned(&labels),
                received: received.get_or_create_owned(&labels),
                sent: sent.get_or_create_owned(&labels),
                handled: CODES.map(|code| {
                    handled.get_or_create_owned(&[
                        ("grpc_code", code),
                        ("grpc_method", method),
                        ("grpc_service", service),
                        ("grpc_type", kind),
                    ])
                }),
            };
            methods.insert(format!("/{service}/{method}"), Arc::new(counters));
        }
        // Counters are registered without `_total`; the encoder appends it.
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            handled,
        );
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            received,
        );
        registry.register("grpc_server_msg_sent", "Total number of gRPC stream messages sent by the server", sent);
        registry.register("grpc_server_started", "Total number of RPCs started on the server", started);
        GrpcMetrics { methods: Arc::new(methods) }
    }

    /// Counts a unary call that reached the services without going through gRPC: the JSON gateway's,
    /// which etcd serves by calling its own gRPC port, so its calls count as gRPC calls there.
    /// `path`: the gRPC method (`/etcdserverpb.KV/Put`); `code`: how the call ended.
    pub fn count_unary(&self, path: &str, code: tonic::Code) {
        let Some(m) = self.methods.get(path) else { return };
        m.started.inc();
        m.received.inc();
        let code = code as usize;
        m.handled[if code < CODES.len() { code } else { UNKNOWN }].inc();
        if code == 0 {
            m.sent.inc();
        }
    }

    pub(super) fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer { methods: self.methods.clone() }
    }
}

/// Wraps gRPC services (an `axum::Router` of them, through `Router::layer`) to count their requests.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    methods: Arc<HashMap<String, Arc<MethodCounters>>>,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService { inner, methods: self.methods.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    methods: Arc<HashMap<String, Arc<MethodCounters>>>,
}

impl<S> Service<Request<Body>> for GrpcMetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Observe<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Observe<S::Future> {
        let Some(m) = self.methods.get(req.uri().path()) else {
            return Observe { inner: self.inner.call(req), handled: None };
        };
        m.started.inc();
        let received = m.clone();
        let handled = Handled { method: m.clone(), done: false };
        let req = req.map(|b| Body::new(CountReceived { inner: b, frames: FrameCounter::default(), method: received }));
        Observe { inner: self.inner.call(req), handled: Some(handled) }
    }
}

/// The service's response, its status counted and its body watched ([`ObserveResponse`]); dropped before
/// that, the call counts as canceled.
pub struct Observe<F> {
    inner: F,
    /// `None` for a path that is not counted.
    handled: Option<Handled>,
}

impl<F> Future for Observe<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(resp) = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        let Some(mut handled) = self.handled.take() else { return Poll::Ready(Ok(resp)) };
        if let Some(status) = resp.headers().get("grpc-status") {
            // A trailers-only response: the status is final already.
            handled.record(status);
        }
        Poll::Ready(Ok(resp.map(|b| Body::new(ObserveResponse { inner: b, frames: FrameCounter::default(), handled }))))
    }
}

/// Counts `grpc_server_handled_total` once per request.
struct Handled {
    method: Arc<MethodCounters>,
    done: bool,
}

impl Handled {
    fn record(&mut self, status: &HeaderValue) {
        let code = std::str::from_utf8(status.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .filter(|c| *c < CODES.len())
            .unwrap_or(UNKNOWN);
        self.record_code(code);
    }

    fn record_code(&mut self, code: usize) {
        if !self.done {
            self.done = true;
            self.method.handled[code].inc();
        }
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        self.record_code(CANCELED);
    }
}

/// Finds gRPC message boundaries (a 5-byte prefix: compressed flag, big-endian length) in a byte stream.
#[derive(Default)]
struct FrameCounter {
    prefix: [u8; 5],
    have: usize,
    remaining: u64,
}

impl FrameCounter {
    /// The number of messages that start in `buf`.
    fn feed(&mut self, mut buf: &[u8]) -> u64 {
        let mut messages = 0;
        while !buf.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(buf.len() as u64)) as usize;
                self.remaining -= n as u64;
                buf = &buf[n..];
                continue;
            }
            let n = (5 - self.have).min(buf.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&buf[..n]);
            self.have += n;
            buf = &buf[n..];
            if self.have == 5 {
                messages += 1;
                self.have = 0;
                self.remaining =
                    u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]).into();
            }
        }
        messages
    }
}

/// The request body: counts received messages.
struct CountReceived {
    inner: Body,
    frames: FrameCounter,
    method: Arc<MethodCounters>,
}

impl http_body::Body for CountReceived {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
            let n = this.frames.feed(data);
            if n > 0 {
                this.method.received.inc_by(n);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response body: counts sent messages and takes the status from the trailers.
struct ObserveResponse {
    inner: Body,
    frames: FrameCounter,
    handled: Handled,
}

impl http_body::Body for ObserveResponse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    let n = this.frames.feed(data);
                    if n > 0 {
                        this.handled.method.sent.inc_by(n);
                    }
                } else if let Some(status) = f.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.handled.record(status);
                }
            }
            Some(Err(_)) => {}
            // Ended without a status.
            None => this.handled.record_code(UNKNOWN),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_counter_finds_messages_across_chunks() {
        let mut msg = vec![0u8, 0, 0, 0, 3, b'a', b'b', b'c'];
        msg.extend_from_slice(&[0, 0, 0, 0, 0]); // an empty message
        msg.extend_from_slice(&[1, 0, 0, 0, 2, b'x', b'y']);
        // All at once.
        assert_eq!(FrameCounter::default().feed(&msg), 3);
        // One byte at a time.
        let mut fc = FrameCounter::default();
        assert_eq!(msg.iter().map(|b| fc.feed(std::slice::from_ref(b))).sum::<u64>(), 3);
        // Split inside a prefix.
        let mut fc = FrameCounter::default();
        assert_eq!(fc.feed(&msg[..2]) + fc.feed(&msg[2..10]) + fc.feed(&msg[10..]), 3);
    }

    #[test]
    fn every_method_starts_at_zero_with_every_code() {
        let mut r = Registry::default();
        let g = GrpcMetrics::new(&mut r);
        assert_eq!(g.methods.len(), METHODS.len());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        let handled = text.lines().filter(|l| l.starts_with("grpc_server_handled_total{")).count();
        assert_eq!(handled, METHODS.len() * CODES.len());
    }
}
