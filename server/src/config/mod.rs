//! Server configuration: command line, `MODKV_*` environment variables and a TOML config file.
//!
//! The flags keep etcd 3.4's names, meanings and defaults (`--name`, `--data-dir`,
//! `--listen-client-urls`, `--initial-cluster`, `--heartbeat-interval`, ...), plus
//! `--plugin-dir` and `--config-file`. `modkv --help` lists them all.
//!
//! # Where a value comes from
//!
//! Every flag `--foo-bar` can be given three ways. Precedence, highest first:
//!
//! 1. the command-line flag `--foo-bar`;
//! 2. the environment variable `MODKV_FOO_BAR` (an empty variable counts as unset);
//! 3. the key `foo-bar` in the TOML file named by `--config-file` (or `MODKV_CONFIG_FILE`);
//! 4. the built-in default.
//!
//! This is implemented on top of clap: the command line is parsed once (with clap's own
//! environment lookup switched off), and for every argument whose
//! [`ArgMatches::value_source`](clap::ArgMatches::value_source) is not the command line the
//! value is taken from the environment, else from the config file, else the default stays.
//! The environment lookup is injectable ([`Config::from_args_and_env`]) so tests need not
//! touch the process environment. All values, whatever their source, then go through the same
//! parsing and validation.
//!
//! # Config file
//!
//! A flat TOML table whose keys are the flag names without dashes:
//!
//! ```toml
//! name = "n1"
//! listen-client-urls = "http://127.0.0.1:2379"          # or ["http://127.0.0.1:2379"]
//! initial-cluster = "n1=http://127.0.0.1:2380,n2=http://127.0.0.1:12380"
//! heartbeat-interval = 100                              # or "100"
//! ```
//!
//! Numeric keys take an integer or a string, URL lists a comma-separated string or an array
//! of strings. Unknown keys are an error. See `examples/modkv.toml`.
//!
//! # Derived defaults (as in etcd)
//!
//! * `--data-dir` defaults to `<name>.modkv`, using the final `--name`.
//! * `--initial-cluster`, when given by none of the three sources and `--name` is not
//!   `default`, becomes `<name>=<url>` for each `--initial-advertise-peer-urls` URL.
//! * `--quota-backend-bytes 0` means 2 GiB; `--snapshot-count 0` means 100000.
//! * `--auto-compaction-retention 0` (the default) turns auto compaction off.
//!
//! # TLS
//!
//! `https://` in `--listen-client-urls` / `--listen-peer-urls` turns TLS on for that listener, as
//! in etcd; it then needs `--cert-file` and `--key-file` (peers: `--peer-cert-file`,
//! `--peer-key-file`) or `--auto-tls` (`--peer-auto-tls`). Certificates are read, and generated,
//! when the member starts: see [`crate::tls`].

mod cli;
mod error;
mod file;
mod parse;
mod proxy;
pub(crate) use parse::go_duration;
pub use proxy::{ProxyConfig, UpstreamTls};

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use url::Url;

pub use error::ConfigError;
pub use parse::url_string;

use cli::Cli;
use parse::UrlUse;

/// Default for `--quota-backend-bytes` (used when it is 0): 2 GiB, as in etcd.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// etcd warns when the backend quota exceeds this (8 GiB).
pub const MAX_QUOTA_BACKEND_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// Default for `--experimental-watch-progress-notify-interval` (used when it is 0), as etcd's.
pub const DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);
/// Default for `--snapshot-count` (used when it is 0).
pub const DEFAULT_SNAPSHOT_COUNT: u64 = 100_000;
/// Largest accepted `--election-timeout`, in milliseconds (etcd's limit).
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;
/// Prefix of the environment variables that mirror the flags.
pub const ENV_PREFIX: &str = "MODKV_";

/// `--proxy` (etcd's v2-proxy switch): what the process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProxyMode {
    /// A member of the cluster.
    #[default]
    Off,
    /// A proxy forwarding every request to the cluster's members.
    On,
    /// A proxy forwarding reads and refusing writes.
    Readonly,
}

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterState {
    /// Bootstrap a new cluster from `--initial-cluster`.
    New,
    /// Join a cluster that already exists (this member was added with `member add`).
    Existing,
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        })
    }
}

/// `--auto-compaction-mode` and `--auto-compaction-retention`, combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoCompaction {
    /// Retention 0: no automatic compaction.
    Off,
    /// Keep this much history (periodic mode).
    Periodic(Duration),
    /// Keep this many revisions (revision mode).
    Revision(u64),
}

/// The TLS flags of one side: clients (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, `--auto-tls`) or peers (the same with `--peer-`).
///
/// As in etcd, they only take effect on `https://` listen URLs; see [`crate::tls`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFlags {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    /// Clients must present a certificate signed by `trusted_ca_file`. etcd also requires one
    /// whenever `trusted_ca_file` is set; [`TlsFlags::requires_client_cert`] says so.
    pub client_cert_auth: bool,
    /// Generate a self-signed certificate when `cert_file` and `key_file` are both unset.
    pub auto_tls: bool,
}

impl TlsFlags {
    /// No certificate or key given (etcd's `TLSInfo.Empty`).
    pub fn is_empty(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Whether a TLS listener with these flags requires (and verifies) a client certificate:
    /// etcd turns that on with `--client-cert-auth` or with `--trusted-ca-file` alone.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }
}

/// The fully resolved and validated server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// In the given order; a name may appear several times (one entry per peer URL).
    pub initial_cluster: Vec<(String, Url)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub listen_metrics_urls: Vec<Url>,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// `--initial-election-tick-advance`: see [`crate::raft::advance_when_peers_answer`].
    pub initial_election_tick_advance: bool,
    pub snapshot_count: u64,
    /// Already resolved: a flag value of 0 becomes [`DEFAULT_QUOTA_BACKEND_BYTES`].
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// `--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`.
    pub auth: AuthFlags,
    pub auto_compaction: AutoCompaction,
    /// `--experimental-watch-progress-notify-interval` (etcd's default 10 minutes; 0 keeps it).
    pub watch_progress_notify_interval: Duration,
    /// One of `debug`, `info`, `warn`, `error` (lower-cased).
    pub log_level: String,
    /// `--proxy`: a member (`off`) or a proxy in front of the cluster `--initial-cluster` names.
    pub proxy: ProxyMode,
    pub plugin_dir: Option<PathBuf>,
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--auto-tls`.
    pub client_tls: TlsFlags,
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`, `--peer-auto-tls`.
    pub peer_tls: TlsFlags,
}

impl Config {
    /// Parse from an argv iterator (the first item is the program name), reading `MODKV_*`
    /// variables from the process environment.
    ///
    /// `--help` and `--version` come back as [`ConfigError::Clap`]; call
    /// [`ConfigError::exit`] to print them and exit with status 0.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::from_args_and_env(args, |name| std::env::var_os(name))
    }

    /// Like [`Config::from_args`], but environment variables are looked up with `env`
    /// (e.g. a map in tests).
    pub fn from_args_and_env<I, T, F>(args: I, env: F) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
        F: Fn(&str) -> Option<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let full = Cli::command();
        // Parse without clap's own env lookup; the layering below does it via `env`.
        let matches = match full.clone().mut_args(|arg| arg.env(None::<&'static str>)).try_get_matches_from(&args) {
            Ok(matches) => matches,
            Err(err) => return Err(ConfigError::Clap(with_env_in_help(&full, &args, err))),
        };
        let mut raw = Cli::from_arg_matches(&matches)?;
        let env_value = |var: &str| -> Result<Option<String>, ConfigError> {
            match env(var) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v.into_string().map(Some).map_err(|_| ConfigError::EnvNotUnicode { var: var.to_owned() }),
            }
        };

        let from_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let config_file =
            if from_cli("config_file") { raw.config_file.clone() } else { env_value(&env_name(&full, "config_file"))? }
                .filter(|path| !path.is_empty());

        let layered: Vec<(&str, &str)> = full
            .get_arguments()
            .filter(|arg| !cli::NOT_LAYERED.contains(&arg.get_id().as_str()))
            .map(|arg| {
                let long = arg.get_long().expect("every config arg has a long name");
                (arg.get_id().as_str(), long)
            })
            .collect();
        let mut file_values = match &config_file {
            Some(path) => {
                let keys: Vec<&str> = layered.iter().map(|(_, long)| *long).collect();
                file::load(Path::new(path), &keys)?
            }
            None => Default::default(),
        };

        // Flag > environment > file > default, decided per argument.
        let mut given: HashSet<&str> = HashSet::new();
        for &(id, long) in &layered {
            if from_cli(id) {
                given.insert(id);
            } else if let Some(value) = env_value(&env_name(&full, id))? {
                raw.set(id, value);
                given.insert(id);
            } else if let Some(value) = file_values.remove(long) {
                raw.set(id, value);
                given.insert(id);
            }
        }

        resolve(raw, given.contains("initial_cluster"))
    }

    /// The configuration as if no flags, environment variables or config file were given.
    pub fn default_for_tests() -> Config {
        Self::from_args_and_env(["modkv"], |_| None).expect("the built-in defaults are valid")
    }

    /// The peer URLs listed for member `name` in `--initial-cluster`, in order.
    pub fn peer_urls_of(&self, name: &str) -> Vec<Url> {
        self.initial_cluster.iter().filter(|(member, _)| member == name).map(|(_, url)| url.clone()).collect()
    }
}

/// The `MODKV_*` variable clap declares for arg `id`.
fn env_name(cmd: &clap::Command, id: &str) -> String {
    cmd.get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(|arg| arg.get_env())
        .and_then(|name| name.to_str())
        .expect("every config arg declares its MODKV_* variable")
        .to_owned()
}

/// `--help` from the env-less parse would not list the `MODKV_*` variables; render it (and
/// `--version`) with the full command instead. Other errors are returned unchanged.
fn with_env_in_help(full: &clap::Command, args: &[OsString], err: clap::Error) -> clap::Error {
    use clap::error::ErrorKind;
    if !matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return err;
    }
    match full.clone().try_get_matches_from(args) {
        Err(help) if help.kind() == err.kind() => help,
        _ => err,
    }
}

/// Turn the layered raw strings into a checked [`Config`].
fn resolve(raw: Cli, initial_cluster_given: bool) -> Result<Config, ConfigError> {
    let name = raw.name;
    if name.is_empty() {
        return Err(ConfigError::InvalidValue {
            flag: "--name",
            value: name,
            expected: "a non-empty member name".to_owned(),
        });
    }
    let data_dir = raw
        .data_dir
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("{name}.modkv")));

    let listen_client_urls = parse::non_empty_url_list("--listen-client-urls", &raw.listen_client_urls, UrlUse::Bind)?;
    let advertise_client_urls =
        parse::non_empty_url_list("--advertise-client-urls", &raw.advertise_client_urls, UrlUse::Advertise)?;
    let listen_peer_urls = parse::non_empty_url_list("--listen-peer-urls", &raw.listen_peer_urls, UrlUse::Bind)?;
    let initial_advertise_peer_urls = parse::non_empty_url_list(
        "--initial-advertise-peer-urls",
        &raw.initial_advertise_peer_urls,
        UrlUse::Advertise,
    )?;
    let listen_metrics_urls = parse::url_list("--listen-metrics-urls", &raw.listen_metrics_urls, UrlUse::Bind)?;

    let initial_cluster = if !initial_cluster_given && name != "default" {
        initial_advertise_peer_urls.iter().map(|url| (name.clone(), url.clone())).collect()
    } else {
        parse::initial_cluster(&raw.initial_cluster)?
    };
    let initial_cluster_state = parse::cluster_state(&raw.initial_cluster_state)?;
    let proxy = match raw.proxy.as_str() {
        "off" => ProxyMode::Off,
        "on" => ProxyMode::On,
        "readonly" => ProxyMode::Readonly,
        other => {
            return Err(ConfigError::InvalidValue {
                flag: "--proxy",
                value: other.to_owned(),
                expected: "one of off, on, readonly".to_owned(),
            })
        }
    };
    // A proxy is not a member: --initial-cluster names the members it fronts, not itself.
    if proxy == ProxyMode::Off {
        check_local_member(&name, &initial_cluster, &initial_advertise_peer_urls)?;
    }

    let heartbeat_ms: u64 = parse::positive("--heartbeat-interval", &raw.heartbeat_interval, "milliseconds")?;
    let election_ms: u64 = parse::positive("--election-timeout", &raw.election_timeout, "milliseconds")?;
    if election_ms < heartbeat_ms.saturating_mul(5) {
        return Err(ConfigError::ElectionTimeoutTooShort { election_ms, heartbeat_ms });
    }
    if election_ms > MAX_ELECTION_TIMEOUT_MS {
        return Err(ConfigError::ElectionTimeoutTooLong { election_ms, max_ms: MAX_ELECTION_TIMEOUT_MS });
    }

    let snapshot_count = match parse::number("--snapshot-count", &raw.snapshot_count, "entries")? {
        0 => DEFAULT_SNAPSHOT_COUNT,
        n => n,
    };
    let quota_backend_bytes = match parse::number("--quota-backend-bytes", &raw.quota_backend_bytes, "bytes")? {
        0 => DEFAULT_QUOTA_BACKEND_BYTES,
        n => n,
    };
    if quota_backend_bytes > MAX_QUOTA_BACKEND_BYTES {
        tracing::warn!(
            quota_backend_bytes,
            max = MAX_QUOTA_BACKEND_BYTES,
            "--quota-backend-bytes exceeds the maximum recommended quota"
        );
    }
    let max_request_bytes = parse::positive("--max-request-bytes", &raw.max_request_bytes, "bytes")?;
    let max_txn_ops = parse::positive("--max-txn-ops", &raw.max_txn_ops, "operations")?;
    let auth = parse_auth(&raw.auth_token, &raw.auth_token_ttl, &raw.bcrypt_cost)?;
    let auto_compaction = parse::auto_compaction(&raw.auto_compaction_mode, &raw.auto_compaction_retention)?;
    let flag = "--experimental-watch-progress-notify-interval";
    let raw_interval = &raw.experimental_watch_progress_notify_interval;
    let watch_progress_notify_interval = match parse::go_duration(raw_interval.trim()) {
        Ok(d) if d.is_zero() => DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL,
        Ok(d) => d,
        Err(reason) => {
            return Err(ConfigError::InvalidValue {
                flag,
                value: raw_interval.to_owned(),
                expected: format!("a duration such as \"10m\" or \"500ms\" ({reason})"),
            })
        }
    };
    let log_level = parse::log_level(&raw.log_level)?;
    let plugin_dir = raw.plugin_dir.filter(|dir| !dir.is_empty()).map(PathBuf::from);
    let path = |p: Option<String>| p.filter(|p| !p.is_empty()).map(PathBuf::from);
    let client_tls = TlsFlags {
        cert_file: path(raw.cert_file),
        key_file: path(raw.key_file),
        trusted_ca_file: path(raw.trusted_ca_file),
        client_cert_auth: parse::boolean("--client-cert-auth", &raw.client_cert_auth)?,
        auto_tls: parse::boolean("--auto-tls", &raw.auto_tls)?,
    };
    let peer_tls = TlsFlags {
        cert_file: path(raw.peer_cert_file),
        key_file: path(raw.peer_key_file),
        trusted_ca_file: path(raw.peer_trusted_ca_file),
        client_cert_auth: parse::boolean("--peer-client-cert-auth", &raw.peer_client_cert_auth)?,
        auto_tls: parse::boolean("--peer-auto-tls", &raw.peer_auto_tls)?,
    };
    check_tls(TlsSide::Client, &client_tls, &listen_client_urls)?;
    check_tls(TlsSide::Peer, &peer_tls, &listen_peer_urls)?;

    Ok(Config {
        name,
        data_dir,
        listen_client_urls,
        advertise_client_urls,
        listen_peer_urls,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_state,
        initial_cluster_token: raw.initial_cluster_token,
        listen_metrics_urls,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        snapshot_count,
        initial_election_tick_advance: parse::boolean(
            "--initial-election-tick-advance",
            &raw.initial_election_tick_advance,
        )?,
        quota_backend_bytes,
        max_request_bytes,
        max_txn_ops,
        auth,
        auto_compaction,
        watch_progress_notify_interval,
        log_level,
        proxy,
        plugin_dir,
        client_tls,
        peer_tls,
    })
}

/// How clients authenticate when auth is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFlags {
    /// `--auth-token` as given (`simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`); parsed and
    /// its key files read when the member starts ([`crate::auth::token::provider`]), whose errors are
    /// etcd's (`auth: invalid auth options`, …).
    pub token: String,
    /// Simple tokens live this long unused (`--auth-token-ttl`).
    pub token_ttl: Duration,
    /// bcrypt cost of password hashes (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
}

impl Default for AuthFlags {
    fn default() -> AuthFlags {
        AuthFlags { token: "simple".into(), token_ttl: Duration::from_secs(300), bcrypt_cost: 10 }
    }
}

/// `--auth-token` (kept as given), `--auth-token-ttl` and `--bcrypt-cost` (out of [4, 31] it falls back
/// to 10 with a warning, as etcd).
fn parse_auth(token: &str, ttl: &str, cost: &str) -> Result<AuthFlags, ConfigError> {
    let token_ttl = Duration::from_secs(parse::positive::<u64>("--auth-token-ttl", ttl, "seconds")?);
    let mut bcrypt_cost: u32 = parse::number("--bcrypt-cost", cost, "cost")?;
    if !(4..=31).contains(&bcrypt_cost) {
        tracing::warn!(bcrypt_cost, "--bcrypt-cost out of [4, 31]; using 10");
        bcrypt_cost = 10;
    }
    Ok(AuthFlags { token: token.to_string(), token_ttl, bcrypt_cost })
}

#[derive(Clone, Copy)]
enum TlsSide {
    Client,
    Peer,
}

/// etcd's checks for `https://` listen URLs: a certificate and key must be given (or generated
/// with `--auto-tls`), and never just one of the two. The files themselves are read when the
/// member starts ([`crate::tls`]).
fn check_tls(side: TlsSide, flags: &TlsFlags, listen_urls: &[Url]) -> Result<(), ConfigError> {
    let Some(url) = listen_urls.iter().find(|url| url.scheme() == "https") else {
        return Ok(());
    };
    let (cert_flag, key_flag) = match side {
        TlsSide::Client => ("--cert-file", "--key-file"),
        TlsSide::Peer => ("--peer-cert-file", "--peer-key-file"),
    };
    if flags.is_empty() {
        if flags.auto_tls {
            return Ok(());
        }
        return Err(match side {
            TlsSide::Client => ConfigError::ClientTlsMissing { url: url_string(url) },
            TlsSide::Peer => ConfigError::PeerTlsMissing {
                addr: format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0)),
            },
        });
    }
    let display = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    if flags.cert_file.is_none() || flags.key_file.is_none() {
        return Err(ConfigError::TlsHalfPair {
            cert_flag,
            key_flag,
            cert: display(&flags.cert_file),
            key: display(&flags.key_file),
        });
    }
    Ok(())
}

/// etcd's bootstrap checks: this member is in `--initial-cluster`, and its entries there are
/// exactly `--initial-advertise-peer-urls` (compared as sets of normalised URLs).
fn check_local_member(
    name: &str,
    initial_cluster: &[(String, Url)],
    advertise_peer_urls: &[Url],
) -> Result<(), ConfigError> {
    let mut listed: Vec<&Url> =
        initial_cluster.iter().filter(|(member, _)| member == name).map(|(_, url)| url).collect();
    if listed.is_empty() {
        return Err(ConfigError::LocalNameMissing {
            name: name.to_owned(),
            initial_cluster: initial_cluster
                .iter()
                .map(|(member, url)| format!("{member}={}", url_string(url)))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    let mut advertised: Vec<&Url> = advertise_peer_urls.iter().collect();
    let cluster_entries = listed.iter().map(|url| format!("{name}={}", url_string(url))).collect::<Vec<_>>().join(",");
    listed.sort();
    listed.dedup();
    advertised.sort();
    advertised.dedup();
    if listed != advertised {
        return Err(ConfigError::AdvertiseMismatch {
            name: name.to_owned(),
            cluster_entries,
            advertised: parse::join_urls(advertise_peer_urls),
        });
    }
    Ok(())
}
