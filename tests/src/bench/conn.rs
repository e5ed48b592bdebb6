//! Connections: the endpoints' channels (or the leader's alone), the auth token, keys and values.

use std::time::Duration;

use modkv::proto::etcdserverpb::auth_client::AuthClient;
use modkv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use modkv::proto::etcdserverpb::{AuthenticateRequest, StatusRequest};
use rand::Rng;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use super::cli::Common;

/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `host:port` → `http://host:port`; URLs unchanged.
pub fn url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// The channels of a run and the token sent with every request.
#[derive(Clone)]
pub struct Conns {
    pub channels: Vec<Channel>,
    pub token: Option<MetadataValue<Ascii>>,
}

impl Conns {
    /// `conns` channels spread over the endpoints (all to the leader with `--target-leader`),
    /// authenticated as `--user` if given.
    pub async fn open(c: &Common, conns: usize) -> Result<Conns, String> {
        let mut endpoints: Vec<String> = c.endpoints.iter().map(|e| url(e.trim())).collect();
        if c.target_leader {
            endpoints = vec![leader(&endpoints).await?];
        }
        let mut channels = Vec::new();
        for i in 0..conns.max(1) {
            channels.push(connect(&endpoints[i % endpoints.len()]).await?);
        }
        let mut token = None;
        if let Some(user) = &c.user {
            let (name, password) = user.split_once(':').ok_or("--user takes NAME:PASSWORD")?;
            let r = AuthClient::new(channels[0].clone())
                .authenticate(AuthenticateRequest { name: name.into(), password: password.into() })
                .await
                .map_err(|e| format!("authenticate {name}: {}", e.message()))?;
            token = Some(r.into_inner().token.parse().map_err(|_| "the token is not ASCII")?);
        }
        Ok(Conns { channels, token })
    }

    /// The channel client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    /// `msg` as a request carrying the token (if any), with [`REQUEST_TIMEOUT`].
    pub fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(REQUEST_TIMEOUT);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }

    /// `msg` with the token but no deadline (a stream's opening request).
    pub fn stream_req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("token", t.clone());
        }
        r
    }
}

pub async fn connect(url: &str) -> Result<Channel, String> {
    Channel::from_shared(url.to_string())
        .map_err(|e| format!("endpoint {url}: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect {url}: {e}"))
}

/// The endpoint whose member is the leader (Maintenance/Status: `leader == header.member_id`).
async fn leader(endpoints: &[String]) -> Result<String, String> {
    for e in endpoints {
        let Ok(ch) = connect(e).await else { continue };
        let mut r = tonic::Request::new(StatusRequest {});
        r.set_timeout(CONNECT_TIMEOUT);
        if let Ok(s) = MaintenanceClient::new(ch).status(r).await {
            let s = s.into_inner();
            if s.header.is_some_and(|h| h.member_id == s.leader) {
                return Ok(e.clone());
            }
        }
    }
    Err(format!("no leader among {endpoints:?}"))
}

/// Keys and values of a run.
#[derive(Clone, Debug)]
pub struct Keys {
    pub prefix: String,
    pub size: usize,
    pub space: u64,
    pub sequential: bool,
}

impl Keys {
    pub fn new(c: &Common) -> Keys {
        Keys {
            prefix: c.key_prefix.clone(),
            size: c.key_size,
            space: c.key_space_size.max(1),
            sequential: c.sequential_keys,
        }
    }

    /// Key number `n`: `<prefix>` then `n` zero-padded to `size` digits.
    pub fn key(&self, n: u64) -> Vec<u8> {
        format!("{}{:0w$}", self.prefix, n, w = self.size).into_bytes()
    }

    /// The key of request `i`: `i` modulo the key space, or a random one.
    pub fn pick(&self, i: usize) -> Vec<u8> {
        let n = if self.sequential { i as u64 % self.space } else { rand::thread_rng().gen_range(0..self.space) };
        self.key(n)
    }
}

/// `size` random lowercase letters.
pub fn random_value(size: usize) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    (0..size).map(|_| rng.gen_range(b'a'..=b'z')).collect()
}
