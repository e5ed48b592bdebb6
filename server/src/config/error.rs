//! [`ConfigError`]: everything that can go wrong while building a [`Config`](super::Config).
//!
//! Every variant except [`ConfigError::Clap`] displays as a single line that names the
//! offending flag (or config-file key) and value.

use std::path::PathBuf;

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Produced by clap: `--help`, `--version`, an unknown flag, a flag missing its value.
    ///
    /// `--help` and `--version` arrive here too; call [`ConfigError::exit`] (or
    /// `clap::Error::exit`) to print them and exit with status 0.
    #[error(transparent)]
    Clap(#[from] clap::Error),

    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },

    /// The config file is not valid TOML.
    #[error("config file {}: invalid TOML at line {line}, column {column}: {message}", path.display())]
    ParseFile { path: PathBuf, line: usize, column: usize, message: String },

    /// The config file has a key that is not a flag name.
    #[error(
        "config file {}: unknown key `{key}`{}",
        path.display(),
        .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownKey { path: PathBuf, key: String, suggestion: Option<String> },

    /// A config file value has a TOML type the key cannot take (e.g. a boolean).
    #[error("config file {}: key `{key}` must be {expected}, found {found}", path.display())]
    FileValueType { path: PathBuf, key: String, expected: &'static str, found: &'static str },

    /// A `MODKV_*` environment variable is not valid UTF-8.
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: String },

    /// A scalar value could not be parsed or is out of range.
    #[error("invalid value \"{value}\" for {flag}: expected {expected}")]
    InvalidValue { flag: &'static str, value: String, expected: String },

    /// A URL could not be parsed at all, or lacks a usable `host:port`.
    #[error("{flag}: malformed URL \"{value}\": {reason}")]
    MalformedUrl { flag: &'static str, value: String, reason: String },

    /// A URL whose scheme is neither `http` nor `https`.
    #[error("{flag}: URL \"{url}\" has unsupported scheme \"{scheme}\" (only http and https are supported)")]
    UrlScheme { flag: &'static str, url: String, scheme: String },

    /// A URL with a path, query or fragment.
    #[error("{flag}: URL \"{url}\" must not have a path, query or fragment (expected scheme://host:port)")]
    UrlHasPath { flag: &'static str, url: String },

    /// A listen URL whose host is a domain name other than `localhost`.
    #[error("{flag}: expected an IP address or \"localhost\" in URL for binding, got \"{url}\"")]
    BindUrlNotIp { flag: &'static str, url: String },

    /// A URL list that must not be empty is empty.
    #[error("{flag} must list at least one URL")]
    NoUrls { flag: &'static str },

    /// An `--initial-cluster` entry that is not `name=url`.
    #[error("--initial-cluster entry \"{entry}\" is not of the form name=url")]
    ClusterEntry { entry: String },

    /// The same peer URL appears twice in `--initial-cluster`.
    #[error("--initial-cluster lists peer URL {url} more than once")]
    DuplicatePeerUrl { url: String },

    /// `--name` does not appear in `--initial-cluster`.
    #[error("couldn't find local name \"{name}\" in the initial cluster configuration (--initial-cluster={initial_cluster})")]
    LocalNameMissing { name: String, initial_cluster: String },

    /// This member's entries in `--initial-cluster` differ from `--initial-advertise-peer-urls`.
    #[error(
        "--initial-cluster has {cluster_entries} but missing from --initial-advertise-peer-urls={advertised} \
         (the URLs given for \"{name}\" in --initial-cluster must equal --initial-advertise-peer-urls)"
    )]
    AdvertiseMismatch { name: String, cluster_entries: String, advertised: String },

    /// `--election-timeout` < 5 × `--heartbeat-interval` (etcd's wording).
    #[error("--election-timeout[{election_ms}] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}]")]
    ElectionTimeoutTooShort { election_ms: u64, heartbeat_ms: u64 },

    /// `--election-timeout` above etcd's maximum of 50000 ms (etcd's wording).
    #[error("--election-timeout[{election_ms}] is too long, and should be set less than {max_ms}")]
    ElectionTimeoutTooLong { election_ms: u64, max_ms: u64 },

    /// An `https://` client URL without a certificate (etcd's wording).
    #[error("TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme")]
    ClientTlsMissing { url: String },

    /// An `https://` peer URL without a certificate (etcd's wording, plus the flags to use).
    #[error(
        "cannot listen on TLS for {addr}: KeyFile and CertFile are not presented \
         (give --peer-cert-file and --peer-key-file, or --peer-auto-tls)"
    )]
    PeerTlsMissing { addr: String },

    /// Only one of a certificate and its key (etcd: "KeyFile and CertFile must both be present").
    #[error("{cert_flag} and {key_flag} must both be present [key: {key}, cert: {cert}]")]
    TlsHalfPair { cert_flag: &'static str, key_flag: &'static str, cert: String, key: String },

    /// `--auto-compaction-retention` does not fit `--auto-compaction-mode`.
    #[error("invalid --auto-compaction-retention \"{value}\" for --auto-compaction-mode={mode}: {reason}")]
    AutoCompactionRetention { mode: &'static str, value: String, reason: String },
}

impl ConfigError {
    /// True for `--help` / `--version`: not a failure, clap just wants to print something.
    pub fn is_help_or_version(&self) -> bool {
        use clap::error::ErrorKind;
        matches!(
            self,
            ConfigError::Clap(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        )
    }

    /// Print the error (or help/version text) and exit the process.
    ///
    /// Clap errors go through [`clap::Error::exit`] (status 0 for help/version, 2 for usage
    /// errors); every other error prints `modkv: <message>` to stderr and exits with 1.
    pub fn exit(&self) -> ! {
        match self {
            ConfigError::Clap(e) => e.exit(),
            other => {
                eprintln!("modkv: {other}");
                std::process::exit(1)
            }
        }
    }
}
