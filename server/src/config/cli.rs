//! The clap declaration of every flag.
//!
//! All values are kept as raw strings here; [`super::resolve`] turns them into a typed
//! [`Config`](super::Config) so that a value coming from a flag, an environment variable or
//! the config file is parsed and validated by the same code and reported the same way.
//!
//! Each flag's `env` attribute is the single source of the `MODKV_*` variable names (the
//! layering code reads them back with `Arg::get_env`); a test checks they all follow the
//! `MODKV_<FLAG_IN_UPPER_SNAKE>` rule.

use clap::Parser;

pub(super) const ABOUT: &str = "An etcd-3.4-compatible, raft-replicated key-value server";

pub(super) const LONG_ABOUT: &str = "\
An etcd-3.4-compatible, raft-replicated key-value server.

Flags keep etcd's names, meanings and defaults.

Every flag --foo-bar can also be set with the environment variable MODKV_FOO_BAR, or with \
the key `foo-bar` in the TOML file named by --config-file (e.g. `name = \"n1\"`, \
`heartbeat-interval = 100`, `listen-client-urls = [\"http://127.0.0.1:2379\"]`).

Precedence, highest first:
  1. command-line flag
  2. MODKV_* environment variable
  3. config file (--config-file / MODKV_CONFIG_FILE)
  4. built-in default

URL lists are comma-separated (a TOML array is accepted in the config file). Boolean flags \
take --flag, --flag=true or --flag=false (true/false in the config file).";

const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (etcd API 3.4)");

/// Raw (string-valued) command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "modkv",
    version,
    long_version = LONG_VERSION,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_override_self = true,
    allow_negative_numbers = true
)]
pub(super) struct Cli {
    /// Human-readable name for this member.
    #[arg(long, env = "MODKV_NAME", value_name = "NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: <name>.modkv].
    #[arg(long, env = "MODKV_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<String>,

    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, env = "MODKV_LISTEN_CLIENT_URLS", value_name = "URLS", default_value = "http://localhost:2379")]
    pub listen_client_urls: String,

    /// Comma-separated client URLs of this member, advertised to the rest of the cluster
    /// and to clients.
    #[arg(long, env = "MODKV_ADVERTISE_CLIENT_URLS", value_name = "URLS", default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,

    /// Comma-separated URLs to listen on for peer (raft) traffic.
    #[arg(long, env = "MODKV_LISTEN_PEER_URLS", value_name = "URLS", default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,

    /// Comma-separated peer URLs of this member, advertised to the rest of the cluster.
    #[arg(
        long,
        env = "MODKV_INITIAL_ADVERTISE_PEER_URLS",
        value_name = "URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,

    /// Initial cluster configuration for bootstrapping, as comma-separated name=peer-url
    /// entries (a name may appear several times).
    ///
    /// When not given and --name is not "default", it becomes
    /// <name>=<each --initial-advertise-peer-urls>, as in etcd.
    #[arg(
        long,
        env = "MODKV_INITIAL_CLUSTER",
        value_name = "NAME=URL,...",
        default_value = "default=http://localhost:2380"
    )]
    pub initial_cluster: String,

    /// Initial cluster state: "new" or "existing".
    #[arg(long, env = "MODKV_INITIAL_CLUSTER_STATE", value_name = "STATE", default_value = "new")]
    pub initial_cluster_state: String,

    /// Initial cluster token, used to tell clusters apart during bootstrap.
    #[arg(long, env = "MODKV_INITIAL_CLUSTER_TOKEN", value_name = "TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Comma-separated URLs to serve /metrics and /health on (empty: none).
    #[arg(long, env = "MODKV_LISTEN_METRICS_URLS", value_name = "URLS", default_value = "")]
    pub listen_metrics_urls: String,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "MODKV_HEARTBEAT_INTERVAL", value_name = "MS", default_value = "100")]
    pub heartbeat_interval: String,

    /// Time (in milliseconds) for an election to timeout; at least 5 × --heartbeat-interval.
    #[arg(long, env = "MODKV_ELECTION_TIMEOUT", value_name = "MS", default_value = "1000")]
    pub election_timeout: String,

    /// Whether a restarting member fast-forwards its election ticks once a peer answers, so the cluster
    /// elects a leader within a few heartbeats instead of a whole election timeout.
    #[arg(
        long,
        env = "MODKV_INITIAL_ELECTION_TICK_ADVANCE",
        value_name = "BOOL",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub initial_election_tick_advance: String,

    /// Number of committed transactions to trigger a snapshot to disk (0: the default).
    #[arg(long, env = "MODKV_SNAPSHOT_COUNT", value_name = "N", default_value = "100000")]
    pub snapshot_count: String,

    /// Raise alarms when the backend size exceeds the given quota (0: the default, 2 GiB).
    #[arg(long, env = "MODKV_QUOTA_BACKEND_BYTES", value_name = "BYTES", default_value = "0")]
    pub quota_backend_bytes: String,

    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "MODKV_MAX_REQUEST_BYTES", value_name = "BYTES", default_value = "1572864")]
    pub max_request_bytes: String,

    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "MODKV_MAX_TXN_OPS", value_name = "N", default_value = "128")]
    pub max_txn_ops: String,

    /// Token type for authentication: "simple" (random tokens kept in the member's memory) or
    /// "jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|HS256|PS256|…,ttl=5m" (signed JSON Web Tokens).
    #[arg(long, env = "MODKV_AUTH_TOKEN", value_name = "TYPE", default_value = "simple")]
    pub auth_token: String,

    /// Time (in seconds) a simple token lives unused; every use renews it.
    #[arg(long, env = "MODKV_AUTH_TOKEN_TTL", value_name = "SECONDS", default_value = "300")]
    pub auth_token_ttl: String,

    /// bcrypt cost of user passwords (4..=31; other values fall back to 10).
    #[arg(long, env = "MODKV_BCRYPT_COST", value_name = "N", default_value = "10")]
    pub bcrypt_cost: String,

    /// Interpret --auto-compaction-retention as "periodic" (a duration) or "revision"
    /// (a number of revisions).
    #[arg(long, env = "MODKV_AUTO_COMPACTION_MODE", value_name = "MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,

    /// Auto compaction retention; "0" disables auto compaction.
    ///
    /// Periodic mode takes a duration such as "1h", "30m", "5s", "1h30m", or a bare number
    /// meaning hours; revision mode takes a number of revisions.
    #[arg(long, env = "MODKV_AUTO_COMPACTION_RETENTION", value_name = "RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,

    /// How often a watcher that asked for progress notifications hears the current revision while idle
    /// (a Go duration; 0: the default).
    #[arg(
        long,
        env = "MODKV_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL",
        value_name = "DURATION",
        default_value = "10m"
    )]
    pub experimental_watch_progress_notify_interval: String,

    /// Log level: debug, info, warn or error.
    #[arg(long, env = "MODKV_LOG_LEVEL", value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// etcd's v2-proxy switch: `off` (a member), `on` (a proxy in front of the cluster whose peers
    /// --initial-cluster names, serving clients on --listen-client-urls) or `readonly` (such a proxy
    /// refusing writes).
    #[arg(long, env = "MODKV_PROXY", value_name = "MODE", default_value = "off")]
    pub proxy: String,

    /// Directory to load WebAssembly plugins from (none when unset).
    #[arg(long, env = "MODKV_PLUGIN_DIR", value_name = "DIR")]
    pub plugin_dir: Option<String>,

    /// Path to the client server TLS cert file.
    #[arg(long, env = "MODKV_CERT_FILE", value_name = "PATH")]
    pub cert_file: Option<String>,

    /// Path to the client server TLS key file.
    #[arg(long, env = "MODKV_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<String>,

    /// Path to the client server TLS trusted CA cert file; clients must then present a
    /// certificate signed by it (as with --client-cert-auth).
    #[arg(long, env = "MODKV_TRUSTED_CA_FILE", value_name = "PATH")]
    pub trusted_ca_file: Option<String>,

    /// Enable client cert authentication: https clients must present a certificate signed by
    /// --trusted-ca-file.
    #[arg(
        long,
        env = "MODKV_CLIENT_CERT_AUTH",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub client_cert_auth: String,

    /// Client TLS using a self-signed certificate generated into <data-dir>/fixtures/client
    /// (when --cert-file and --key-file are not given).
    #[arg(
        long,
        env = "MODKV_AUTO_TLS",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub auto_tls: String,

    /// Path to the peer server TLS cert file.
    #[arg(long, env = "MODKV_PEER_CERT_FILE", value_name = "PATH")]
    pub peer_cert_file: Option<String>,

    /// Path to the peer server TLS key file.
    #[arg(long, env = "MODKV_PEER_KEY_FILE", value_name = "PATH")]
    pub peer_key_file: Option<String>,

    /// Path to the peer server TLS trusted CA file; peers must then present a certificate
    /// signed by it (as with --peer-client-cert-auth).
    #[arg(long, env = "MODKV_PEER_TRUSTED_CA_FILE", value_name = "PATH")]
    pub peer_trusted_ca_file: Option<String>,

    /// Enable peer client cert authentication.
    #[arg(
        long,
        env = "MODKV_PEER_CLIENT_CERT_AUTH",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub peer_client_cert_auth: String,

    /// Peer TLS using a self-signed certificate generated into <data-dir>/fixtures/peer
    /// (when --peer-cert-file and --peer-key-file are not given).
    #[arg(
        long,
        env = "MODKV_PEER_AUTO_TLS",
        value_name = "BOOL",
        default_value = "false",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub peer_auto_tls: String,

    /// TOML config file whose keys are the flag names without the leading dashes.
    ///
    /// Flags and MODKV_* environment variables override values from the file.
    #[arg(long, env = "MODKV_CONFIG_FILE", value_name = "PATH")]
    pub config_file: Option<String>,
}

/// Keys whose config-file value may be a TOML array of strings.
pub(super) const LIST_KEYS: &[&str] = &[
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "listen-metrics-urls",
];

/// Keys whose config-file value may be a TOML boolean (the flags take `--flag`, `--flag=true` or
/// `--flag=false`, as Go's boolean flags do).
pub(super) const BOOL_KEYS: &[&str] =
    &["client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls", "initial-election-tick-advance"];

/// Arg ids that are not configuration values (and so are not config-file keys).
pub(super) const NOT_LAYERED: &[&str] = &["help", "version", "config_file"];

impl Cli {
    /// Overwrite the raw value of the arg with clap id `id` (the field name).
    ///
    /// Returns false for an id that is not a layered configuration value.
    pub(super) fn set(&mut self, id: &str, value: String) -> bool {
        match id {
            "name" => self.name = value,
            "data_dir" => self.data_dir = Some(value),
            "listen_client_urls" => self.listen_client_urls = value,
            "advertise_client_urls" => self.advertise_client_urls = value,
            "listen_peer_urls" => self.listen_peer_urls = value,
            "initial_advertise_peer_urls" => self.initial_advertise_peer_urls = value,
            "initial_cluster" => self.initial_cluster = value,
            "initial_cluster_state" => self.initial_cluster_state = value,
            "initial_cluster_token" => self.initial_cluster_token = value,
            "listen_metrics_urls" => self.listen_metrics_urls = value,
            "heartbeat_interval" => self.heartbeat_interval = value,
            "election_timeout" => self.election_timeout = value,
            "initial_election_tick_advance" => self.initial_election_tick_advance = value,
            "snapshot_count" => self.snapshot_count = value,
            "quota_backend_bytes" => self.quota_backend_bytes = value,
            "max_request_bytes" => self.max_request_bytes = value,
            "max_txn_ops" => self.max_txn_ops = value,
            "auth_token" => self.auth_token = value,
            "auth_token_ttl" => self.auth_token_ttl = value,
            "bcrypt_cost" => self.bcrypt_cost = value,
            "auto_compaction_mode" => self.auto_compaction_mode = value,
            "auto_compaction_retention" => self.auto_compaction_retention = value,
            "experimental_watch_progress_notify_interval" => self.experimental_watch_progress_notify_interval = value,
            "log_level" => self.log_level = value,
            "plugin_dir" => self.plugin_dir = Some(value),
            "proxy" => self.proxy = value,
            "cert_file" => self.cert_file = Some(value),
            "key_file" => self.key_file = Some(value),
            "trusted_ca_file" => self.trusted_ca_file = Some(value),
            "client_cert_auth" => self.client_cert_auth = value,
            "auto_tls" => self.auto_tls = value,
            "peer_cert_file" => self.peer_cert_file = Some(value),
            "peer_key_file" => self.peer_key_file = Some(value),
            "peer_trusted_ca_file" => self.peer_trusted_ca_file = Some(value),
            "peer_client_cert_auth" => self.peer_client_cert_auth = value,
            "peer_auto_tls" => self.peer_auto_tls = value,
            _ => return false,
        }
        true
    }
}
