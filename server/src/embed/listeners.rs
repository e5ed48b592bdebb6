//! The sockets a member serves on, bound before anything is touched on disk, so a port in use fails the
//! start at once.

use url::Url;

use super::EmbedError;
use crate::config::Config;

/// The sockets a member serves on, bound before it starts.
pub struct Listeners {
    pub client: Vec<std::net::TcpListener>,
    pub peer: Vec<std::net::TcpListener>,
    pub metrics: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Binds every `--listen-*-urls` URL of `cfg`.
    pub fn bind(cfg: &Config) -> Result<Listeners, EmbedError> {
        Ok(Listeners {
            peer: bind_all("listen-peer-urls", &cfg.listen_peer_urls)?,
            client: bind_all("listen-client-urls", &cfg.listen_client_urls)?,
            metrics: bind_all("listen-metrics-urls", &cfg.listen_metrics_urls)?,
        })
    }
}

fn bind_all(flag: &'static str, urls: &[Url]) -> Result<Vec<std::net::TcpListener>, EmbedError> {
    urls.iter()
        .map(|u| {
            let bad = |reason: &str| EmbedError::BadUrl { flag, url: u.to_string(), reason: reason.into() };
            let host = u.host_str().ok_or_else(|| bad("no host"))?;
            let port = u.port_or_known_default().ok_or_else(|| bad("no port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addr = format!("{host}:{port}");
            let l = std::net::TcpListener::bind((host, port)).map_err(|source| EmbedError::Listen {
                flag,
                addr,
                source,
            })?;
            l.set_nonblocking(true).map_err(|source| EmbedError::Listen {
                flag,
                addr: format!("{host}:{port}"),
                source,
            })?;
            Ok(l)
        })
        .collect()
}
