//! The cluster as the proxy reaches it: one lazily connected HTTP/2 channel per member's client URL, a
//! pinned member used until it fails, failed members skipped for [`FAILURE_WAIT`], and the list
//! refreshed from the cluster's member list every [`REFRESH_INTERVAL`].
//!
//! ```text
//!   call ─▶ candidates (pinned, then the others alive, then the failed) ─▶ channel ─▶ member
//!             └ transport failure ─▶ member marked failed, next candidate (a mutation only if it was
//!               never sent: the connection could not be made)
//! ```
//!
//! A caller's token travels in each upstream request's `token` metadata ([`Token`]); the proxy holds no
//! credentials of its own.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::MemberListRequest;

/// A member whose connection failed is skipped this long (etcd's v2 proxy `--proxy-failure-wait`).
pub const FAILURE_WAIT: Duration = Duration::from_secs(5);
/// How often the endpoints are refreshed from the member list.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Connecting to a member gives up after this long (the member is then failed).
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on idle upstream connections, so a member that vanished is noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The caller's token (gRPC metadata `token`, or `authorization` as the gateway sends it), passed on.
pub type Token = Option<AsciiMetadataValue>;

tokio::task_local! {
    /// The token of a JSON gateway call (the gateway calls the services without gRPC metadata).
    pub static GATEWAY_TOKEN: Token;
}

/// The token a client request carries.
pub fn token_of<T>(req: &Request<T>) -> Token {
    let m = req.metadata();
    m.get("token")
        .or_else(|| m.get("authorization"))
        .cloned()
        .or_else(|| GATEWAY_TOKEN.try_with(Clone::clone).ok().flatten())
}

/// An upstream request carrying `token`.
pub fn with_token<T>(msg: T, token: &Token) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut().insert("token", t.clone());
    }
    req
}

/// Whether a call may be repeated on another member after a transport failure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Retry {
    /// Reads: any transport failure.
    Always,
    /// Writes: only when the request cannot have reached the member (its connection was never made).
    IfNotSent,
}

/// An error of the connection to a member, not an answer of the member (whose errors are etcd's).
pub fn is_transport_failure(s: &Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)
        && !s.message().starts_with("etcdserver:")
        && (s.message().contains("transport")
            || s.message().contains("connect")
            || s.message().contains("connection")
            || s.message().contains("h2 protocol")
            || s.message().contains("broken pipe")
            || s.message().contains("stream"))
}

/// Whether the request never left the proxy: the connection to the member could not be made.
fn never_sent(s: &Status) -> bool {
    let mut text = s.message().to_owned();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    ["tcp connect error", "Connection refused", "error trying to connect", "dns error", "timed out connecting"]
        .iter()
        .any(|m| text.contains(m))
}

struct Member {
    url: String,
    channel: Channel,
    failed_until: Option<Instant>,
}

/// The members the proxy forwards to (see the module doc).
pub struct Upstream {
    members: Mutex<Members>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `--max-send-bytes`, `--max-recv-bytes`.
    pub max_send: usize,
    pub max_recv: usize,
    /// `--proxy readonly`: every write ([`Retry::IfNotSent`] call) is refused with [`READONLY`].
    readonly: std::sync::atomic::AtomicBool,
}

/// What a `--proxy readonly` proxy answers a write: etcd's v2 readonly proxy answers any non-GET
/// request `501 Not Implemented`; gRPC's counterpart of 501 is `Unimplemented` (the JSON gateway maps
/// it back to 501), which etcd's clients never retry.
pub const READONLY: &str = "proxy: read-only proxy (--proxy readonly): write requests are not implemented";

struct Members {
    list: Vec<Member>,
    /// Index of the member used while it works.
    pinned: usize,
}

impl Upstream {
    pub fn new(
        urls: &[String],
        tls: Option<Arc<rustls::ClientConfig>>,
        max_send: usize,
        max_recv: usize,
    ) -> Result<Arc<Upstream>, String> {
        let up = Upstream {
            members: Mutex::new(Members { list: Vec::new(), pinned: 0 }),
            tls,
            max_send,
            max_recv,
            readonly: Default::default(),
        };
        let list = urls.iter().map(|u| up.member(u)).collect::<Result<Vec<_>, _>>()?;
        up.members.lock().expect("members lock").list = list;
        Ok(Arc::new(up))
    }

    fn member(&self, url: &str) -> Result<Member, String> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("--endpoints: {url}: {e}"))?
            .connect_timeout(DIAL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let channel = match &self.tls {
            None => endpoint.connect_lazy(),
            Some(tls) => endpoint.connect_with_connector_lazy(super::tls::Connector::new(tls.clone())),
        };
        Ok(Member { url: url.to_owned(), channel, failed_until: None })
    }

    /// The members' URLs, the pinned one first.
    pub fn urls(&self) -> Vec<String> {
        self.candidates().into_iter().map(|(url, _)| url).collect()
    }

    /// The members to try in order: the pinned one if it has not failed, the others that have not, then
    /// the failed ones (longest failed first).
    fn candidates(&self) -> Vec<(String, Channel)> {
        let m = self.members.lock().expect("members lock");
        let now = Instant::now();
        let n = m.list.len();
        let mut alive = Vec::new();
        let mut failed = Vec::new();
        for i in 0..n {
            let member = &m.list[(m.pinned + i) % n];
            match member.failed_until {
                Some(t) if t > now => failed.push((t, member)),
                _ => alive.push(member),
            }
        }
        failed.sort_by_key(|(t, _)| *t);
        alive
            .into_iter()
            .chain(failed.into_iter().map(|(_, m)| m))
            .map(|m| (m.url.clone(), m.channel.clone()))
            .collect()
    }

    /// `url` failed: skipped for [`FAILURE_WAIT`]; the next member is pinned.
    pub fn failed(&self, url: &str) {
        let mut m = self.members.lock().expect("members lock");
        if let Some(i) = m.list.iter().position(|x| x.url == url) {
            m.list[i].failed_until = Some(Instant::now() + FAILURE_WAIT);
            if m.pinned == i {
                m.pinned = (i + 1) % m.list.len();
                tracing::warn!(member = url, "member unreachable; using another one");
            }
        }
    }

    fn succeeded(&self, url: &str) {
        let mut m = self.members.lock().expect("members lock");
        if let Some(i) = m.list.iter().position(|x| x.url == url) {
            m.list[i].failed_until = None;
            if m.list[m.pinned].failed_until.is_some() {
                m.pinned = i;
            }
        }
    }

    /// Refuses writes from now on (`--proxy readonly`).
    pub fn set_readonly(&self) {
        self.readonly.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether writes are refused (`--proxy readonly`).
    pub fn readonly(&self) -> bool {
        self.readonly.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A channel to the member to use now, and its URL (for a stream, which reports its own failures).
    pub fn channel(&self) -> (String, Channel) {
        self.candidates().into_iter().next().expect("at least one member")
    }

    /// Calls `call` on the members in turn until one answers (with a result or an error of its own); a
    /// transport failure moves on to the next member if `retry` allows.
    pub async fn unary<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        if retry == Retry::IfNotSent && self.readonly.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Status::unimplemented(READONLY));
        }
        let mut last = None;
        for (url, channel) in self.candidates() {
            match call(channel).await {
                Err(s) if is_transport_failure(&s) => {
                    tracing::debug!(member = url, status = ?s, "transport failure");
                    self.failed(&url);
                    let retryable = retry == Retry::Always || never_sent(&s);
                    last = Some(s);
                    if !retryable {
                        break;
                    }
                }
                r => {
                    self.succeeded(&url);
                    return r;
                }
            }
        }
        Err(last.unwrap_or_else(|| Status::unavailable("modkv proxy: no member of the cluster is reachable")))
    }

    /// Replaces the members with the client URLs of the cluster's member list (keeping the channels of
    /// the members already known).
    fn set_urls(&self, urls: Vec<String>) {
        if urls.is_empty() {
            return;
        }
        let mut fresh = Vec::new();
        {
            let m = self.members.lock().expect("members lock");
            for url in &urls {
                if !m.list.iter().any(|x| &x.url == url) {
                    fresh.push(url.clone());
                }
            }
            if fresh.is_empty() && m.list.len() == urls.len() {
                return;
            }
        }
        let made: Vec<Member> = fresh.iter().filter_map(|u| self.member(u).ok()).collect();
        let mut m = self.members.lock().expect("members lock");
        let pinned_url = m.list.get(m.pinned).map(|x| x.url.clone());
        let mut list: Vec<Member> = std::mem::take(&mut m.list).into_iter().filter(|x| urls.contains(&x.url)).collect();
        list.extend(made);
        list.sort_by_key(|x| urls.iter().position(|u| u == &x.url));
        m.pinned = pinned_url.and_then(|p| list.iter().position(|x| x.url == p)).unwrap_or(0);
        tracing::info!(members = ?urls, "endpoints refreshed from the member list");
        m.list = list;
    }

    /// Asks the cluster for its member list and uses the members' client URLs from then on.
    pub async fn refresh(&self) -> Result<(), Status> {
        let resp = self
            .unary(Retry::Always, |ch| async move {
                ClusterClient::new(ch).member_list(Request::new(MemberListRequest {})).await
            })
            .await?
            .into_inner();
        let https = self.tls.is_some();
        let urls: Vec<String> = resp
            .members
            .iter()
            .flat_map(|m| m.client_ur_ls.iter())
            .filter(|u| u.starts_with(if https { "https://" } else { "http://" }))
            .cloned()
            .collect();
        self.set_urls(urls);
        Ok(())
    }

    /// Refreshes the endpoints every [`REFRESH_INTERVAL`] until `stop` turns true.
    pub async fn refresh_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e.message(), "refreshing the endpoints from the member list failed");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    }
}
