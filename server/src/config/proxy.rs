//! `modkv grpc-proxy start`: the flags of `etcd grpc-proxy start` (names, meanings and defaults of etcd
//! 3.4), parsed into a [`ProxyConfig`].
//!
//! ```text
//!   argv ─▶ ProxyCli (clap) ─▶ checked ─▶ ProxyConfig { endpoints, listen, namespace, TLS both ways, … }
//! ```
//!
//! Endpoints may be given without a scheme (`127.0.0.1:2379`), as etcd takes them: they are dialled
//! over TLS when `--cacert` or `--cert` is given, in plain HTTP/2 otherwise.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::ConfigError;

/// The raw command line of `modkv grpc-proxy start`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "modkv grpc-proxy start",
    version,
    about = "Starts a gRPC proxy in front of a cluster (etcd's `grpc-proxy start`)",
    args_override_self = true
)]
struct ProxyCli {
    /// Comma-separated client URLs (or host:port) of the cluster's members; refreshed from its member list.
    #[arg(long, value_name = "URLS", default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// Address to serve clients on (gRPC, the JSON gateway, /health, /version, /metrics).
    #[arg(long = "listen-addr", value_name = "HOST:PORT", default_value = "127.0.0.1:23790")]
    listen_addr: String,
    /// The proxy's client URL as clients know it (etcd registers it for discovery; accepted for compatibility).
    #[arg(long = "advertise-client-url", value_name = "URL", default_value = "127.0.0.1:23790")]
    advertise_client_url: String,
    /// Every key is served under this prefix of the cluster's key space (e.g. `app/`).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    namespace: String,
    /// An extra listener for /metrics and /health (e.g. `http://127.0.0.1:6633`).
    #[arg(long = "metrics-addr", value_name = "URL", default_value = "")]
    metrics_addr: String,
    /// The proxy's data directory (etcd keeps auto-TLS fixtures there).
    #[arg(long = "data-dir", value_name = "DIR", default_value = "default.proxy")]
    data_dir: PathBuf,
    /// The largest message the proxy sends to the cluster.
    #[arg(long = "max-send-bytes", value_name = "BYTES", default_value_t = 1_572_864)]
    max_send_bytes: usize,
    /// The largest message the proxy takes from the cluster.
    #[arg(long = "max-recv-bytes", value_name = "BYTES", default_value_t = 2_147_483_647)]
    max_recv_bytes: usize,
    /// Client certificate presented to the cluster's members.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Key of --cert.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// CA bundle the members' certificates are verified with.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Do not verify the members' certificates.
    #[arg(long = "insecure-skip-tls-verify", num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    insecure_skip_tls_verify: bool,
    /// Certificate the proxy presents to its clients (TLS on --listen-addr).
    #[arg(long = "cert-file", value_name = "FILE")]
    cert_file: Option<PathBuf>,
    /// Key of --cert-file.
    #[arg(long = "key-file", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// CA bundle client certificates are verified with (clients must then present one).
    #[arg(long = "trusted-ca-file", value_name = "FILE")]
    trusted_ca_file: Option<PathBuf>,
    /// Directory of WebAssembly plugins served at the proxy as on a member: routes, the pre-put hook
    /// (before forwarding), metrics (none when unset or empty, as on a member).
    #[arg(long = "plugin-dir", value_name = "DIR")]
    plugin_dir: Option<String>,
    /// Debug logging.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    debug: bool,
}

/// TLS towards the cluster (`--cert`, `--key`, `--cacert`, `--insecure-skip-tls-verify`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cacert: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

impl UpstreamTls {
    /// Whether the members are dialled over TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || self.cacert.is_some() || self.insecure_skip_verify
    }
}

/// The checked configuration of a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The members' client URLs, with their scheme.
    pub endpoints: Vec<String>,
    pub listen_addr: SocketAddr,
    pub advertise_client_url: String,
    /// Raw bytes of the prefix; empty: no namespace.
    pub namespace: Vec<u8>,
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub max_send_bytes: usize,
    pub max_recv_bytes: usize,
    pub upstream_tls: UpstreamTls,
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`: TLS on the listener when the first two are given.
    pub client_tls: super::TlsFlags,
    pub log_level: String,
    /// `modkv --proxy readonly`: writes are refused (`grpc-proxy start` has no such flag).
    pub readonly: bool,
    /// `--plugin-dir`: plugins at the edge (`proxy::edge`).
    pub plugin_dir: Option<PathBuf>,
}

/// `host:port` from `s`, with or without an `http://` / `https://` scheme.
fn socket_addr(flag: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    let bare = s.split_once("://").map_or(s, |(_, rest)| rest).trim_end_matches('/');
    let bare = bare.replace("localhost", "127.0.0.1");
    bare.parse().map_err(|_| ConfigError::InvalidValue {
        flag,
        value: s.to_owned(),
        expected: "an address host:port (host an IP address or localhost)".into(),
    })
}

impl ProxyConfig {
    /// Parses the arguments after `grpc-proxy start` (the first item is the program name).
    pub fn from_args<I, T>(args: I) -> Result<ProxyConfig, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let raw = ProxyCli::try_parse_from(args)?;
        let upstream_tls = UpstreamTls {
            cert: raw.cert,
            key: raw.key,
            cacert: raw.cacert,
            insecure_skip_verify: raw.insecure_skip_tls_verify,
        };
        if upstream_tls.cert.is_some() != upstream_tls.key.is_some() {
            return Err(ConfigError::InvalidValue {
                flag: "--cert",
                value: format!("{:?}", upstream_tls.cert.as_deref().or(upstream_tls.key.as_deref())),
                expected: "--cert and --key given together".into(),
            });
        }
        let scheme = if upstream_tls.enabled() { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for e in raw.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = if e.contains("://") { e.to_owned() } else { format!("{scheme}://{e}") };
            socket_addr("--endpoints", &url)?;
            endpoints.push(url);
        }
        if endpoints.is_empty() {
            return Err(ConfigError::InvalidValue {
                flag: "--endpoints",
                value: raw.endpoints,
                expected: "at least one endpoint".into(),
            });
        }
        let client_tls = super::TlsFlags {
            cert_file: raw.cert_file,
            key_file: raw.key_file,
            trusted_ca_file: raw.trusted_ca_file,
            client_cert_auth: false,
            auto_tls: false,
        };
        if client_tls.cert_file.is_some() != client_tls.key_file.is_some() {
            return Err(ConfigError::InvalidValue {
                flag: "--cert-file",
                value: format!("{:?}", client_tls.cert_file.as_deref().or(client_tls.key_file.as_deref())),
                expected: "--cert-file and --key-file given together".into(),
            });
        }
        Ok(ProxyConfig {
            endpoints,
            listen_addr: socket_addr("--listen-addr", &raw.listen_addr)?,
            advertise_client_url: raw.advertise_client_url,
            namespace: raw.namespace.into_bytes(),
            metrics_addr: match raw.metrics_addr.as_str() {
                "" => None,
                a => Some(socket_addr("--metrics-addr", a)?),
            },
            data_dir: raw.data_dir,
            max_send_bytes: raw.max_send_bytes,
            max_recv_bytes: raw.max_recv_bytes,
            upstream_tls,
            client_tls,
            log_level: if raw.debug { "debug" } else { "info" }.into(),
            readonly: false,
            plugin_dir: raw.plugin_dir.filter(|d| !d.is_empty()).map(PathBuf::from),
        })
    }

    /// The proxy `modkv --proxy on|readonly` starts (etcd's v2-proxy switch): it serves clients on the
    /// first `--listen-client-urls` (with the client TLS flags) and forwards to `endpoints`, the client
    /// URLs of the members found through the peers of `--initial-cluster`. Its member list is the
    /// cluster's (no advertised URL of its own); the members are dialled in plain HTTP/2. `--plugin-dir`
    /// loads plugins at the proxy as on a member.
    pub fn from_member(cfg: &super::Config, endpoints: Vec<String>) -> Result<ProxyConfig, ConfigError> {
        let listen = cfg.listen_client_urls.first().map(super::url_string).unwrap_or_default();
        Ok(ProxyConfig {
            endpoints,
            listen_addr: socket_addr("--listen-client-urls", &listen)?,
            advertise_client_url: String::new(),
            namespace: Vec::new(),
            metrics_addr: None,
            data_dir: cfg.data_dir.clone(),
            max_send_bytes: 1_572_864,
            max_recv_bytes: 2_147_483_647,
            upstream_tls: UpstreamTls::default(),
            client_tls: cfg.client_tls.clone(),
            log_level: cfg.log_level.clone(),
            readonly: cfg.proxy == super::ProxyMode::Readonly,
            plugin_dir: cfg.plugin_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::from_args(std::iter::once("modkv").chain(args.iter().copied()))
    }

    #[test]
    fn etcds_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(c.listen_addr, "127.0.0.1:23790".parse().unwrap());
        assert_eq!((c.max_send_bytes, c.max_recv_bytes), (1_572_864, 2_147_483_647));
        assert_eq!(c.data_dir, PathBuf::from("default.proxy"));
        assert!(c.namespace.is_empty() && c.metrics_addr.is_none() && !c.upstream_tls.enabled());
    }

    #[test]
    fn endpoints_schemes_and_namespace() {
        let c = parse(&[
            "--endpoints=127.0.0.1:1,https://127.0.0.1:2",
            "--cacert",
            "/ca.pem",
            "--namespace=p/",
            "--metrics-addr",
            "http://localhost:6633",
        ])
        .unwrap();
        assert_eq!(c.endpoints, ["https://127.0.0.1:1", "https://127.0.0.1:2"]);
        assert_eq!(c.namespace, b"p/");
        assert_eq!(c.metrics_addr, Some("127.0.0.1:6633".parse().unwrap()));
        let e = parse(&["--listen-addr", "nowhere"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"nowhere\" for --listen-addr: expected an address host:port (host an IP address or localhost)"
        );
        assert!(parse(&["--cert", "/c.pem"]).is_err());
    }

    #[test]
    fn plugin_dir() {
        assert_eq!(parse(&[]).unwrap().plugin_dir, None);
        assert_eq!(parse(&["--plugin-dir", "/p"]).unwrap().plugin_dir, Some(PathBuf::from("/p")));
        assert_eq!(parse(&["--plugin-dir="]).unwrap().plugin_dir, None);
    }
}
