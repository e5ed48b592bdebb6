use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::parse::{auto_compaction, go_duration};
use super::*;

// ---------------------------------------------------------------- helpers

fn with_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, OsString> = env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
    let argv = std::iter::once("modkv").chain(args.iter().copied());
    Config::from_args_and_env(argv, |name| env.get(name).cloned())
}

fn ok(args: &[&str]) -> Config {
    with_env(args, &[]).unwrap_or_else(|e| panic!("{args:?} should parse, got: {e}"))
}

fn err(args: &[&str]) -> String {
    match with_env(args, &[]) {
        Ok(c) => panic!("{args:?} should fail, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn urls(list: &[&str]) -> Vec<Url> {
    list.iter().map(|u| Url::parse(u).unwrap()).collect()
}

/// A temporary TOML file, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(contents: &str) -> TempToml {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "modkv-config-test-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        TempToml(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn with_file(contents: &str, args: &[&str]) -> Result<Config, ConfigError> {
    let file = TempToml::new(contents);
    let mut argv = vec!["--config-file", file.path()];
    argv.extend_from_slice(args);
    with_env(&argv, &[])
}

fn file_err(contents: &str) -> (String, String) {
    let file = TempToml::new(contents);
    let e = with_env(&["--config-file", file.path()], &[]).unwrap_err().to_string();
    (e, file.path().to_owned())
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults() {
    let c = Config::default_for_tests();
    assert_eq!(c.name, "default");
    assert_eq!(c.data_dir, PathBuf::from("default.modkv"));
    assert_eq!(c.listen_client_urls, urls(&["http://localhost:2379"]));
    assert_eq!(c.advertise_client_urls, urls(&["http://localhost:2379"]));
    assert_eq!(c.listen_peer_urls, urls(&["http://localhost:2380"]));
    assert_eq!(c.initial_advertise_peer_urls, urls(&["http://localhost:2380"]));
    assert_eq!(c.initial_cluster, vec![("default".to_owned(), Url::parse("http://localhost:2380").unwrap())]);
    assert_eq!(c.initial_cluster_state, ClusterState::New);
    assert_eq!(c.initial_cluster_token, "etcd-cluster");
    assert!(c.listen_metrics_urls.is_empty());
    assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(c.election_timeout, Duration::from_millis(1000));
    assert!(c.initial_election_tick_advance);
    assert_eq!(c.snapshot_count, 100_000);
    assert_eq!(c.quota_backend_bytes, 2 * 1024 * 1024 * 1024);
    assert_eq!(c.max_request_bytes, 1_572_864);
    assert_eq!(c.max_txn_ops, 128);
    assert_eq!(c.auto_compaction, AutoCompaction::Off);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.plugin_dir, None);
    assert_eq!(c.client_tls, TlsFlags::default());
    assert_eq!(c.peer_tls, TlsFlags::default());
    assert_eq!(ok(&[]), c);
}

#[test]
fn example_file_equals_defaults() {
    let example = include_str!("../../../examples/modkv.toml");
    let c = with_file(example, &[]).unwrap_or_else(|e| panic!("examples/modkv.toml: {e}"));
    assert_eq!(c, Config::default_for_tests());
    // Changing only the name keeps working: initial-cluster is derived from it.
    let c = with_file(example, &["--name", "n1"]).unwrap();
    assert_eq!(c.peer_urls_of("n1"), urls(&["http://localhost:2380"]));
}

#[test]
fn example_file_mentions_every_key() {
    let example = include_str!("../../../examples/modkv.toml");
    for arg in Cli::command().get_arguments() {
        if cli::NOT_LAYERED.contains(&arg.get_id().as_str()) {
            continue;
        }
        let key = arg.get_long().unwrap();
        assert!(
            example.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "examples/modkv.toml lacks `{key}`"
        );
    }
}

// ---------------------------------------------------------------- every flag

#[test]
fn every_flag() {
    let c = ok(&[
        "--name",
        "n1",
        "--data-dir",
        "/var/lib/modkv",
        "--listen-client-urls",
        "http://127.0.0.1:12379,https://[::1]:12379",
        "--advertise-client-urls",
        "http://n1.example.com:12379",
        "--listen-peer-urls",
        "http://0.0.0.0:12380",
        "--initial-advertise-peer-urls",
        "http://n1.example.com:12380",
        "--initial-cluster",
        "n1=http://n1.example.com:12380,n2=http://n2.example.com:12380",
        "--initial-cluster-state",
        "existing",
        "--initial-cluster-token",
        "tok",
        "--listen-metrics-urls",
        "http://127.0.0.1:9090",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
        "--initial-election-tick-advance=false",
        "--snapshot-count",
        "42",
        "--quota-backend-bytes",
        "1048576",
        "--max-request-bytes",
        "4096",
        "--max-txn-ops",
        "7",
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "1000",
        "--log-level",
        "debug",
        "--plugin-dir",
        "/opt/plugins",
        "--cert-file",
        "/tls/server.crt",
        "--key-file",
        "/tls/server.key",
        "--trusted-ca-file",
        "/tls/ca.crt",
        "--client-cert-auth",
        "--auto-tls=true",
        "--peer-cert-file",
        "/tls/peer.crt",
        "--peer-key-file",
        "/tls/peer.key",
        "--peer-trusted-ca-file",
        "/tls/peer-ca.crt",
        "--peer-client-cert-auth=1",
        "--peer-auto-tls",
    ]);
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/modkv"));
    assert_eq!(c.listen_client_urls, urls(&["http://127.0.0.1:12379", "https://[::1]:12379"]));
    assert_eq!(c.advertise_client_urls, urls(&["http://n1.example.com:12379"]));
    assert_eq!(c.listen_peer_urls, urls(&["http://0.0.0.0:12380"]));
    assert_eq!(c.initial_advertise_peer_urls, urls(&["http://n1.example.com:12380"]));
    assert_eq!(
        c.initial_cluster,
        vec![
            ("n1".to_owned(), Url::parse("http://n1.example.com:12380").unwrap()),
            ("n2".to_owned(), Url::parse("http://n2.example.com:12380").unwrap()),
        ]
    );
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "tok");
    assert_eq!(c.listen_metrics_urls, urls(&["http://127.0.0.1:9090"]));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.election_timeout, Duration::from_millis(500));
    assert!(!c.initial_election_tick_advance);
    assert_eq!(c.snapshot_count, 42);
    assert_eq!(c.quota_backend_bytes, 1_048_576);
    assert_eq!(c.max_request_bytes, 4096);
    assert_eq!(c.max_txn_ops, 7);
    assert_eq!(c.auto_compaction, AutoCompaction::Revision(1000));
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.plugin_dir, Some(PathBuf::from("/opt/plugins")));
    assert_eq!(
        c.client_tls,
        TlsFlags {
            cert_file: Some(PathBuf::from("/tls/server.crt")),
            key_file: Some(PathBuf::from("/tls/server.key")),
            trusted_ca_file: Some(PathBuf::from("/tls/ca.crt")),
            client_cert_auth: true,
            auto_tls: true,
        }
    );
    assert_eq!(
        c.peer_tls,
        TlsFlags {
            cert_file: Some(PathBuf::from("/tls/peer.crt")),
            key_file: Some(PathBuf::from("/tls/peer.key")),
            trusted_ca_file: Some(PathBuf::from("/tls/peer-ca.crt")),
            client_cert_auth: true,
            auto_tls: true,
        }
    );
}

#[test]
fn equals_syntax_and_last_repeat_wins() {
    let c = ok(&["--name=a", "--name=b", "--max-txn-ops", "1", "--max-txn-ops=2"]);
    assert_eq!(c.name, "b");
    assert_eq!(c.max_txn_ops, 2);
}

#[test]
fn url_lists_are_trimmed_and_keep_order() {
    let c = ok(&["--advertise-client-urls", " http://b:1 , http://a:2 "]);
    assert_eq!(c.advertise_client_urls, urls(&["http://b:1", "http://a:2"]));
}

#[test]
fn initial_cluster_name_with_several_urls() {
    let c = ok(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://10.0.0.1:2380,http://10.0.0.2:2380",
        "--initial-cluster",
        "n1=http://10.0.0.2:2380,n2=http://10.0.0.3:2380,n1=http://10.0.0.1:2380",
    ]);
    assert_eq!(c.initial_cluster.len(), 3);
    assert_eq!(c.initial_cluster[1].0, "n2");
    assert_eq!(c.peer_urls_of("n1"), urls(&["http://10.0.0.2:2380", "http://10.0.0.1:2380"]));
    assert_eq!(c.peer_urls_of("n2"), urls(&["http://10.0.0.3:2380"]));
    assert!(c.peer_urls_of("n3").is_empty());
}

#[test]
fn log_level_is_case_insensitive() {
    assert_eq!(ok(&["--log-level", "WARN"]).log_level, "warn");
    assert_eq!(ok(&["--log-level", "error"]).log_level, "error");
}

#[test]
fn zero_means_default_for_quota_and_snapshot_count() {
    let c = ok(&["--quota-backend-bytes", "0", "--snapshot-count", "0"]);
    assert_eq!(c.quota_backend_bytes, DEFAULT_QUOTA_BACKEND_BYTES);
    assert_eq!(c.snapshot_count, DEFAULT_SNAPSHOT_COUNT);
}

#[test]
fn watch_progress_notify_interval_is_a_go_duration_and_zero_means_default() {
    assert_eq!(ok(&[]).watch_progress_notify_interval, Duration::from_secs(600));
    let flag = "--experimental-watch-progress-notify-interval";
    assert_eq!(ok(&[flag, "1s"]).watch_progress_notify_interval, Duration::from_secs(1));
    assert_eq!(ok(&[flag, "1m30s"]).watch_progress_notify_interval, Duration::from_secs(90));
    assert_eq!(ok(&[flag, "0"]).watch_progress_notify_interval, DEFAULT_WATCH_PROGRESS_NOTIFY_INTERVAL);
    assert!(err(&[flag, "soon"]).starts_with(&format!("invalid value \"soon\" for {flag}: expected a duration")));
}

#[test]
fn empty_paths_mean_unset() {
    let c = ok(&["--name", "x", "--data-dir", "", "--plugin-dir", ""]);
    assert_eq!(c.data_dir, PathBuf::from("x.modkv"));
    assert_eq!(c.plugin_dir, None);
}

// ---------------------------------------------------------------- derived defaults

#[test]
fn data_dir_defaults_from_final_name() {
    assert_eq!(ok(&["--name", "n7"]).data_dir, PathBuf::from("n7.modkv"));
    assert_eq!(with_env(&[], &[("MODKV_NAME", "fromenv")]).unwrap().data_dir, PathBuf::from("fromenv.modkv"));
    assert_eq!(with_file("name = \"fromfile\"", &[]).unwrap().data_dir, PathBuf::from("fromfile.modkv"));
    assert_eq!(ok(&["--name", "n7", "--data-dir", "d"]).data_dir, PathBuf::from("d"));
}

#[test]
fn initial_cluster_defaults_from_name() {
    let c = ok(&["--name", "n1"]);
    assert_eq!(c.initial_cluster, vec![("n1".to_owned(), Url::parse("http://localhost:2380").unwrap())]);

    let c = ok(&["--name", "n1", "--initial-advertise-peer-urls", "http://127.0.0.1:12380,http://127.0.0.2:12380"]);
    assert_eq!(
        c.initial_cluster,
        vec![
            ("n1".to_owned(), Url::parse("http://127.0.0.1:12380").unwrap()),
            ("n1".to_owned(), Url::parse("http://127.0.0.2:12380").unwrap()),
        ]
    );

    // Name from the config file, peer URLs from the environment.
    let c = with_file("name = \"f1\"", &[]).unwrap();
    assert_eq!(c.peer_urls_of("f1"), urls(&["http://localhost:2380"]));
}

#[test]
fn initial_cluster_not_derived_when_given() {
    // Given explicitly (even with the default value): no derivation, so n1 is missing.
    let e = err(&["--name", "n1", "--initial-cluster", "default=http://localhost:2380"]);
    assert!(e.starts_with("couldn't find local name \"n1\" in the initial cluster configuration"), "{e}");
    let e =
        with_env(&["--name", "n1"], &[("MODKV_INITIAL_CLUSTER", "x=http://localhost:2380")]).unwrap_err().to_string();
    assert!(e.contains("couldn't find local name \"n1\""), "{e}");
}

#[test]
fn default_name_keeps_default_initial_cluster() {
    // As in etcd: with --name default the default cluster is not rewritten.
    let e = err(&["--initial-advertise-peer-urls", "http://127.0.0.1:12380"]);
    assert_eq!(
        e,
        "--initial-cluster has default=http://localhost:2380 but missing from \
         --initial-advertise-peer-urls=http://127.0.0.1:12380 (the URLs given for \"default\" \
         in --initial-cluster must equal --initial-advertise-peer-urls)"
    );
}

// ---------------------------------------------------------------- precedence

#[test]
fn precedence_flag_env_file_default() {
    let file = TempToml::new("name = \"file\"\nheartbeat-interval = 20\nmax-txn-ops = 30\nlog-level = \"warn\"\n");
    let env = [("MODKV_NAME", "env"), ("MODKV_HEARTBEAT_INTERVAL", "40"), ("MODKV_CONFIG_FILE", file.path())];
    let c = with_env(&["--name", "flag"], &env).unwrap();
    assert_eq!(c.name, "flag"); // flag > env > file
    assert_eq!(c.heartbeat_interval, Duration::from_millis(40)); // env > file
    assert_eq!(c.max_txn_ops, 30); // file > default
    assert_eq!(c.log_level, "warn"); // file > default
    assert_eq!(c.election_timeout, Duration::from_millis(1000)); // default
    assert_eq!(c.data_dir, PathBuf::from("flag.modkv"));
}

#[test]
fn flag_equal_to_default_still_beats_env_and_file() {
    let file = TempToml::new("name = \"file\"\n");
    let c = with_env(&["--name", "default", "--config-file", file.path()], &[("MODKV_NAME", "env")]).unwrap();
    assert_eq!(c.name, "default");
}

#[test]
fn env_beats_file_and_default() {
    let file = TempToml::new("snapshot-count = 5\n");
    let c =
        with_env(&["--config-file", file.path()], &[("MODKV_SNAPSHOT_COUNT", "6"), ("MODKV_MAX_REQUEST_BYTES", "77")])
            .unwrap();
    assert_eq!(c.snapshot_count, 6);
    assert_eq!(c.max_request_bytes, 77);
}

#[test]
fn empty_env_var_counts_as_unset() {
    let c = with_env(&[], &[("MODKV_NAME", ""), ("MODKV_CONFIG_FILE", "")]).unwrap();
    assert_eq!(c.name, "default");
}

#[test]
fn config_file_flag_beats_env() {
    let from_flag = TempToml::new("name = \"a\"\n");
    let from_env = TempToml::new("name = \"b\"\n");
    let c = with_env(&["--config-file", from_flag.path()], &[("MODKV_CONFIG_FILE", from_env.path())]).unwrap();
    assert_eq!(c.name, "a");
}

#[test]
fn every_flag_reads_its_env_var() {
    let env = [
        ("MODKV_NAME", "n1"),
        ("MODKV_DATA_DIR", "dd"),
        ("MODKV_LISTEN_CLIENT_URLS", "http://127.0.0.1:1"),
        ("MODKV_ADVERTISE_CLIENT_URLS", "http://h:2"),
        ("MODKV_LISTEN_PEER_URLS", "http://127.0.0.1:3"),
        ("MODKV_INITIAL_ADVERTISE_PEER_URLS", "http://h:4"),
        ("MODKV_INITIAL_CLUSTER", "n1=http://h:4,n2=http://g:4"),
        ("MODKV_INITIAL_CLUSTER_STATE", "existing"),
        ("MODKV_INITIAL_CLUSTER_TOKEN", "t"),
        ("MODKV_LISTEN_METRICS_URLS", "http://127.0.0.1:5"),
        ("MODKV_HEARTBEAT_INTERVAL", "10"),
        ("MODKV_ELECTION_TIMEOUT", "60"),
        ("MODKV_SNAPSHOT_COUNT", "11"),
        ("MODKV_QUOTA_BACKEND_BYTES", "12"),
        ("MODKV_MAX_REQUEST_BYTES", "13"),
        ("MODKV_MAX_TXN_OPS", "14"),
        ("MODKV_AUTO_COMPACTION_MODE", "periodic"),
        ("MODKV_AUTO_COMPACTION_RETENTION", "15m"),
        ("MODKV_LOG_LEVEL", "error"),
        ("MODKV_PLUGIN_DIR", "pd"),
        ("MODKV_CERT_FILE", "c.pem"),
        ("MODKV_KEY_FILE", "k.pem"),
        ("MODKV_TRUSTED_CA_FILE", "ca.pem"),
        ("MODKV_CLIENT_CERT_AUTH", "true"),
        ("MODKV_AUTO_TLS", "t"),
        ("MODKV_PEER_CERT_FILE", "pc.pem"),
        ("MODKV_PEER_KEY_FILE", "pk.pem"),
        ("MODKV_PEER_TRUSTED_CA_FILE", "pca.pem"),
        ("MODKV_PEER_CLIENT_CERT_AUTH", "TRUE"),
        ("MODKV_PEER_AUTO_TLS", "1"),
    ];
    let c = with_env(&[], &env).unwrap();
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("dd"));
    assert_eq!(c.listen_client_urls, urls(&["http://127.0.0.1:1"]));
    assert_eq!(c.advertise_client_urls, urls(&["http://h:2"]));
    assert_eq!(c.listen_peer_urls, urls(&["http://127.0.0.1:3"]));
    assert_eq!(c.initial_advertise_peer_urls, urls(&["http://h:4"]));
    assert_eq!(c.initial_cluster.len(), 2);
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "t");
    assert_eq!(c.listen_metrics_urls, urls(&["http://127.0.0.1:5"]));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(10));
    assert_eq!(c.election_timeout, Duration::from_millis(60));
    assert_eq!(c.snapshot_count, 11);
    assert_eq!(c.quota_backend_bytes, 12);
    assert_eq!(c.max_request_bytes, 13);
    assert_eq!(c.max_txn_ops, 14);
    assert_eq!(c.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(900)));
    assert_eq!(c.log_level, "error");
    assert_eq!(c.plugin_dir, Some(PathBuf::from("pd")));
    let tls = |cert: &str, key: &str, ca: &str| TlsFlags {
        cert_file: Some(PathBuf::from(cert)),
        key_file: Some(PathBuf::from(key)),
        trusted_ca_file: Some(PathBuf::from(ca)),
        client_cert_auth: true,
        auto_tls: true,
    };
    assert_eq!(c.client_tls, tls("c.pem", "k.pem", "ca.pem"));
    assert_eq!(c.peer_tls, tls("pc.pem", "pk.pem", "pca.pem"));
}

#[test]
fn env_var_names_follow_the_rule() {
    let cmd = Cli::command();
    for arg in cmd.get_arguments() {
        if matches!(arg.get_id().as_str(), "help" | "version") {
            continue;
        }
        let long = arg.get_long().unwrap();
        let expected = format!("{ENV_PREFIX}{}", long.to_uppercase().replace('-', "_"));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(expected.as_str()), "--{long}");
        assert_eq!(arg.get_id().as_str(), long.replace('-', "_"), "--{long}");
    }
}

#[test]
fn every_layered_arg_can_be_set() {
    let mut raw = Cli::try_parse_from(["modkv"]).unwrap();
    for arg in Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        assert_eq!(raw.set(id, "x".into()), !cli::NOT_LAYERED.contains(&id), "{id}");
    }
}

#[cfg(unix)]
#[test]
fn env_var_not_unicode() {
    use std::os::unix::ffi::OsStringExt;
    let e = Config::from_args_and_env(["modkv"], |name| {
        (name == "MODKV_NAME").then(|| OsString::from_vec(vec![0xff, 0xfe]))
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "environment variable MODKV_NAME is not valid UTF-8");
}

// ---------------------------------------------------------------- config file

#[test]
fn file_sets_every_key() {
    let c = with_file(
        r#"
name = "n1"
data-dir = "/d"
listen-client-urls = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
advertise-client-urls = "http://h:1,http://h:2"
listen-peer-urls = "http://127.0.0.1:3"
initial-advertise-peer-urls = ["http://h:3"]
initial-cluster = ["n1=http://h:3", "n2=http://g:3"]
initial-cluster-state = "existing"
initial-cluster-token = "tok"
listen-metrics-urls = ["http://127.0.0.1:4"]
heartbeat-interval = 20
election-timeout = "200"
snapshot-count = 9
quota-backend-bytes = "1024"
max-request-bytes = 2048
max-txn-ops = "3"
auto-compaction-mode = "periodic"
auto-compaction-retention = 2
log-level = "debug"
plugin-dir = "/p"
cert-file = "/c.pem"
key-file = "/k.pem"
trusted-ca-file = "/ca.pem"
client-cert-auth = true
auto-tls = "true"
peer-cert-file = "/pc.pem"
peer-key-file = "/pk.pem"
peer-trusted-ca-file = "/pca.pem"
peer-client-cert-auth = false
peer-auto-tls = true
"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.name, "n1");
    assert_eq!(c.data_dir, PathBuf::from("/d"));
    assert_eq!(c.listen_client_urls, urls(&["http://127.0.0.1:1", "http://127.0.0.1:2"]));
    assert_eq!(c.advertise_client_urls, urls(&["http://h:1", "http://h:2"]));
    assert_eq!(c.listen_peer_urls, urls(&["http://127.0.0.1:3"]));
    assert_eq!(c.initial_advertise_peer_urls, urls(&["http://h:3"]));
    assert_eq!(c.peer_urls_of("n2"), urls(&["http://g:3"]));
    assert_eq!(c.initial_cluster_state, ClusterState::Existing);
    assert_eq!(c.initial_cluster_token, "tok");
    assert_eq!(c.listen_metrics_urls, urls(&["http://127.0.0.1:4"]));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(20));
    assert_eq!(c.election_timeout, Duration::from_millis(200));
    assert_eq!(c.snapshot_count, 9);
    assert_eq!(c.quota_backend_bytes, 1024);
    assert_eq!(c.max_request_bytes, 2048);
    assert_eq!(c.max_txn_ops, 3);
    assert_eq!(c.auto_compaction, AutoCompaction::Periodic(Duration::from_secs(7200)));
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.plugin_dir, Some(PathBuf::from("/p")));
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("/c.pem")));
    assert_eq!(c.client_tls.key_file, Some(PathBuf::from("/k.pem")));
    assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("/ca.pem")));
    assert!(c.client_tls.client_cert_auth && c.client_tls.auto_tls);
    assert_eq!(c.peer_tls.cert_file, Some(PathBuf::from("/pc.pem")));
    assert_eq!(c.peer_tls.key_file, Some(PathBuf::from("/pk.pem")));
    assert_eq!(c.peer_tls.trusted_ca_file, Some(PathBuf::from("/pca.pem")));
    assert!(!c.peer_tls.client_cert_auth && c.peer_tls.auto_tls);
}

#[test]
fn file_unknown_key() {
    let (e, path) = file_err("name = \"n\"\nbogus-key = 1\n");
    assert_eq!(e, format!("config file {path}: unknown key `bogus-key`"));
    let (e, path) = file_err("heartbeat_interval = 100\n");
    assert_eq!(e, format!("config file {path}: unknown key `heartbeat_interval` (did you mean `heartbeat-interval`?)"));
    // Only flags are keys: not the config file itself, not help/version.
    let (e, _) = file_err("config-file = \"other.toml\"\n");
    assert!(e.ends_with("unknown key `config-file`"), "{e}");
    let (e, _) = file_err("[server]\nname = \"n\"\n");
    assert!(e.ends_with("unknown key `server`"), "{e}");
}

#[test]
fn file_wrong_value_type() {
    let (e, path) = file_err("heartbeat-interval = 1.5\n");
    assert_eq!(
        e,
        format!("config file {path}: key `heartbeat-interval` must be a string or an integer, found a float")
    );
    let (e, path) = file_err("name = true\n");
    assert_eq!(e, format!("config file {path}: key `name` must be a string or an integer, found a boolean"));
    let (e, path) = file_err("listen-client-urls = [1]\n");
    assert_eq!(
        e,
        format!(
            "config file {path}: key `listen-client-urls` must be a string or an array of strings, found an integer"
        )
    );
    let (e, _) = file_err("max-txn-ops = [1]\n");
    assert!(e.ends_with("key `max-txn-ops` must be a string or an integer, found an array"), "{e}");
    let (e, path) = file_err("client-cert-auth = 1\n");
    assert_eq!(
        e,
        format!("config file {path}: key `client-cert-auth` must be a boolean or a string, found an integer")
    );
    let (e, _) = file_err("peer-auto-tls = [true]\n");
    assert!(e.ends_with("key `peer-auto-tls` must be a boolean or a string, found an array"), "{e}");
    let (e, _) = file_err("auto-tls = \"yes\"\n");
    assert_eq!(e, "invalid value \"yes\" for --auto-tls: expected true or false");
}

#[test]
fn file_malformed_toml_names_position() {
    let (e, path) = file_err("name = \"n1\"\nheartbeat-interval = = 3\n");
    assert!(e.starts_with(&format!("config file {path}: invalid TOML at line 2, column 22: ")), "{e}");
    assert!(!e.contains('\n'), "{e:?}");
    assert!(e.ends_with("invalid string; expected `\"`, `'`"), "{e}");
    let (e, _) = file_err("name = \"a\"\nname = \"b\"\n");
    assert!(e.contains("invalid TOML at line 2"), "{e}");
}

#[test]
fn file_unreadable() {
    let missing = std::env::temp_dir().join("modkv-config-test-does-not-exist.toml");
    let e = err(&["--config-file", missing.to_str().unwrap()]);
    assert!(e.starts_with(&format!("cannot read config file {}: ", missing.display())), "{e}");
}

#[test]
fn file_values_are_validated_like_flags() {
    let (e, _) = file_err("heartbeat-interval = -5\n");
    assert_eq!(e, "invalid value \"-5\" for --heartbeat-interval: expected a whole number of milliseconds");
    let (e, _) = file_err("listen-client-urls = [\"http://localhost:2379/v3\"]\n");
    assert!(e.starts_with("--listen-client-urls: URL \"http://localhost:2379/v3\""), "{e}");
}

#[test]
fn empty_file_is_fine() {
    assert_eq!(with_file("# nothing\n", &[]).unwrap(), Config::default_for_tests());
}

// ---------------------------------------------------------------- help / version / clap

#[test]
fn help_and_version_are_clap_errors_not_failures() {
    for flag in ["--help", "-h", "--version", "-V"] {
        let e = with_env(&[flag], &[]).unwrap_err();
        assert!(e.is_help_or_version(), "{flag}");
        let ConfigError::Clap(clap_err) = &e else { panic!("{flag}: {e:?}") };
        assert_eq!(clap_err.exit_code(), 0, "{flag}");
    }
    let e = with_env(&["--version"], &[]).unwrap_err();
    assert!(e.to_string().contains(env!("CARGO_PKG_VERSION")), "{e}");
}

#[test]
fn long_help_documents_precedence_and_env() {
    let e = with_env(&["--help"], &[]).unwrap_err().to_string();
    assert!(e.contains("command-line flag"), "{e}");
    assert!(e.contains("MODKV_* environment variable"), "{e}");
    assert!(e.contains("config file"), "{e}");
    assert!(e.contains("built-in default"), "{e}");
    assert!(e.contains("MODKV_LISTEN_CLIENT_URLS"), "{e}");
    assert!(e.contains("--initial-cluster-token"), "{e}");
    assert!(e.contains("[default: etcd-cluster]"), "{e}");
}

#[test]
fn unknown_flag_and_missing_value_are_clap_errors() {
    let e = with_env(&["--no-such-flag"], &[]).unwrap_err();
    assert!(matches!(&e, ConfigError::Clap(c) if c.kind() == ErrorKind::UnknownArgument), "{e:?}");
    assert!(!e.is_help_or_version());
    let e = with_env(&["--name"], &[]).unwrap_err();
    assert!(matches!(&e, ConfigError::Clap(c) if c.kind() == ErrorKind::InvalidValue), "{e:?}");
}

// ---------------------------------------------------------------- validation messages

#[test]
fn malformed_url() {
    assert_eq!(
        err(&["--listen-client-urls", "http://127.0.0.1:notaport"]),
        "--listen-client-urls: malformed URL \"http://127.0.0.1:notaport\": invalid port number \
         (expected scheme://host:port)"
    );
    assert_eq!(
        err(&["--advertise-client-urls", "127.0.0.1:2379"]),
        "--advertise-client-urls: malformed URL \"127.0.0.1:2379\": relative URL without a base \
         (expected scheme://host:port)"
    );
    assert_eq!(
        err(&["--advertise-client-urls", "http://h:1,,http://h:2"]),
        "--advertise-client-urls: malformed URL \"\": empty URL"
    );
    assert_eq!(
        err(&["--advertise-client-urls", "http://example.com"]),
        "--advertise-client-urls: malformed URL \"http://example.com\": URL address does not have \
         the form \"host:port\""
    );
    assert_eq!(
        err(&["--advertise-client-urls", "http://u:p@h:1"]),
        "--advertise-client-urls: malformed URL \"http://u:p@h:1\": user info is not allowed"
    );
    // An explicit default port is fine even though the url crate hides it.
    assert_eq!(
        ok(&["--advertise-client-urls", "http://h:80"]).advertise_client_urls[0].port_or_known_default(),
        Some(80)
    );
}

#[test]
fn url_scheme() {
    assert_eq!(
        err(&["--listen-peer-urls", "unix://127.0.0.1:2380"]),
        "--listen-peer-urls: URL \"unix://127.0.0.1:2380\" has unsupported scheme \"unix\" \
         (only http and https are supported)"
    );
    // A missing scheme parses as scheme "localhost".
    assert!(err(&["--listen-client-urls", "localhost:2379"]).contains("unsupported scheme \"localhost\""),);
}

#[test]
fn url_with_path() {
    assert_eq!(
        err(&["--initial-advertise-peer-urls", "http://h:2380/raft"]),
        "--initial-advertise-peer-urls: URL \"http://h:2380/raft\" must not have a path, query or \
         fragment (expected scheme://host:port)"
    );
    assert!(err(&["--listen-metrics-urls", "http://127.0.0.1:1?x=1"]).contains("must not have a path"));
    assert!(err(&["--listen-metrics-urls", "http://127.0.0.1:1#f"]).contains("must not have a path"));
    // A bare trailing slash is not a path.
    assert_eq!(ok(&["--advertise-client-urls", "http://h:1/"]).advertise_client_urls, urls(&["http://h:1"]));
}

#[test]
fn bind_url_must_be_ip_or_localhost() {
    assert_eq!(
        err(&["--listen-client-urls", "http://example.com:2379"]),
        "--listen-client-urls: expected an IP address or \"localhost\" in URL for binding, got \
         \"http://example.com:2379\""
    );
    assert!(err(&["--listen-metrics-urls", "http://m.example:1"]).starts_with("--listen-metrics-urls: expected an IP"));
    ok(&["--listen-client-urls", "http://LOCALHOST:2379,http://[::]:2379,http://0.0.0.0:2379"]);
}

#[test]
fn empty_url_lists() {
    assert_eq!(err(&["--listen-client-urls", ""]), "--listen-client-urls must list at least one URL");
    assert_eq!(err(&["--advertise-client-urls", " "]), "--advertise-client-urls must list at least one URL");
    assert_eq!(err(&["--listen-peer-urls", ""]), "--listen-peer-urls must list at least one URL");
    assert_eq!(err(&["--initial-advertise-peer-urls", ""]), "--initial-advertise-peer-urls must list at least one URL");
    assert!(ok(&["--listen-metrics-urls", ""]).listen_metrics_urls.is_empty());
}

#[test]
fn initial_cluster_entry_without_equals() {
    assert_eq!(
        err(&["--initial-cluster", "default=http://localhost:2380,http://h:2380"]),
        "--initial-cluster entry \"http://h:2380\" is not of the form name=url"
    );
    assert_eq!(
        err(&["--initial-cluster", "=http://localhost:2380"]),
        "--initial-cluster entry \"=http://localhost:2380\" is not of the form name=url"
    );
    assert!(err(&["--initial-cluster", "default=localhost:2380"]).starts_with("--initial-cluster: URL"));
}

#[test]
fn initial_cluster_duplicate_url() {
    assert_eq!(
        err(&["--initial-cluster", "default=http://localhost:2380,other=http://localhost:2380"]),
        "--initial-cluster lists peer URL http://localhost:2380 more than once"
    );
}

#[test]
fn local_name_missing() {
    assert_eq!(
        err(&["--name", "n3", "--initial-cluster", "n1=http://a:2380,n2=http://b:2380"]),
        "couldn't find local name \"n3\" in the initial cluster configuration \
         (--initial-cluster=n1=http://a:2380,n2=http://b:2380)"
    );
}

#[test]
fn advertise_mismatch() {
    assert_eq!(
        err(&[
            "--name",
            "n1",
            "--initial-advertise-peer-urls",
            "http://a:2380",
            "--initial-cluster",
            "n1=http://b:2380,n1=http://c:2380,n2=http://a:2380",
        ]),
        "--initial-cluster has n1=http://b:2380,n1=http://c:2380 but missing from \
         --initial-advertise-peer-urls=http://a:2380 (the URLs given for \"n1\" in --initial-cluster \
         must equal --initial-advertise-peer-urls)"
    );
    // A subset is a mismatch too.
    assert!(err(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://a:2380,http://b:2380",
        "--initial-cluster",
        "n1=http://a:2380",
    ])
    .starts_with("--initial-cluster has n1=http://a:2380 but missing from"));
    // Order does not matter; "http://a:2380/" equals "http://a:2380".
    ok(&[
        "--name",
        "n1",
        "--initial-advertise-peer-urls",
        "http://b:2380/,http://a:2380",
        "--initial-cluster",
        "n1=http://a:2380,n1=http://b:2380",
    ]);
}

#[test]
fn election_timeout_checks() {
    assert_eq!(
        err(&["--heartbeat-interval", "300"]),
        "--election-timeout[1000] should be at least as 5 times as --heartbeat-interval[300]"
    );
    ok(&["--heartbeat-interval", "200", "--election-timeout", "1000"]);
    assert_eq!(
        err(&["--election-timeout", "50001"]),
        "--election-timeout[50001] is too long, and should be set less than 50000"
    );
    assert_eq!(
        err(&["--heartbeat-interval", "0"]),
        "invalid value \"0\" for --heartbeat-interval: expected a number of milliseconds greater than 0"
    );
    assert_eq!(
        err(&["--election-timeout", "1s"]),
        "invalid value \"1s\" for --election-timeout: expected a whole number of milliseconds"
    );
}

#[test]
fn bad_numbers() {
    assert_eq!(
        err(&["--snapshot-count", "many"]),
        "invalid value \"many\" for --snapshot-count: expected a whole number of entries"
    );
    assert_eq!(
        err(&["--quota-backend-bytes", "-1"]),
        "invalid value \"-1\" for --quota-backend-bytes: expected a whole number of bytes"
    );
    assert_eq!(
        err(&["--max-request-bytes", "0"]),
        "invalid value \"0\" for --max-request-bytes: expected a number of bytes greater than 0"
    );
    assert_eq!(
        err(&["--max-txn-ops", "0"]),
        "invalid value \"0\" for --max-txn-ops: expected a number of operations greater than 0"
    );
    assert_eq!(
        err(&["--max-txn-ops", "1.5"]),
        "invalid value \"1.5\" for --max-txn-ops: expected a whole number of operations"
    );
}

#[test]
fn bad_cluster_state_name_and_log_level() {
    assert_eq!(
        err(&["--initial-cluster-state", "old"]),
        "invalid value \"old\" for --initial-cluster-state: expected \"new\" or \"existing\""
    );
    assert_eq!(
        err(&["--log-level", "verbose"]),
        "invalid value \"verbose\" for --log-level: expected one of debug, info, warn, error"
    );
    assert_eq!(err(&["--name", ""]), "invalid value \"\" for --name: expected a non-empty member name");
}

#[test]
fn auto_compaction_values() {
    let periodic = |r: &str| auto_compaction("periodic", r).unwrap();
    let secs = |s: u64| AutoCompaction::Periodic(Duration::from_secs(s));
    assert_eq!(periodic("0"), AutoCompaction::Off);
    assert_eq!(periodic(""), AutoCompaction::Off);
    assert_eq!(periodic("0s"), AutoCompaction::Off);
    assert_eq!(periodic("1"), secs(3600));
    assert_eq!(periodic("72"), secs(72 * 3600));
    assert_eq!(periodic("1h"), secs(3600));
    assert_eq!(periodic("30m"), secs(1800));
    assert_eq!(periodic("5s"), secs(5));
    assert_eq!(periodic("1h30m"), secs(5400));
    assert_eq!(periodic("1.5h"), secs(5400));
    assert_eq!(periodic("500ms"), AutoCompaction::Periodic(Duration::from_millis(500)));
    let revision = |r: &str| auto_compaction("revision", r).unwrap();
    assert_eq!(revision("0"), AutoCompaction::Off);
    assert_eq!(revision("1000"), AutoCompaction::Revision(1000));

    let c = ok(&["--auto-compaction-retention", "1h"]);
    assert_eq!(c.auto_compaction, secs(3600));
    let c = ok(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "5"]);
    assert_eq!(c.auto_compaction, AutoCompaction::Revision(5));
}

#[test]
fn bad_auto_compaction() {
    assert_eq!(
        err(&["--auto-compaction-mode", "hourly"]),
        "invalid value \"hourly\" for --auto-compaction-mode: expected \"periodic\" or \"revision\""
    );
    assert_eq!(
        err(&["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"]),
        "invalid --auto-compaction-retention \"1h\" for --auto-compaction-mode=revision: expected a \
         whole number of revisions"
    );
    assert_eq!(
        err(&["--auto-compaction-retention", "1d"]),
        "invalid --auto-compaction-retention \"1d\" for --auto-compaction-mode=periodic: unknown unit \
         \"d\" in duration (expected e.g. \"1h\", \"30m\", \"5s\" or a number of hours)"
    );
    assert!(err(&["--auto-compaction-retention", "1.5"]).contains("missing unit in duration"));
    assert!(err(&["--auto-compaction-retention=-1h"]).contains("must not be negative"));
    assert!(err(&["--auto-compaction-retention", "abc"]).contains("malformed duration"));
    assert!(err(&["--auto-compaction-retention", "99999999999999999999"]).contains("too large"));
}

#[test]
fn go_duration_parser() {
    assert_eq!(go_duration("0"), Ok(Duration::ZERO));
    assert_eq!(go_duration("+2m"), Ok(Duration::from_secs(120)));
    assert_eq!(go_duration("1h2m3s4ms5us6ns"), Ok(Duration::new(3723, 4_005_006)));
    assert_eq!(go_duration("7µs"), Ok(Duration::from_micros(7)));
    assert_eq!(go_duration(".5s"), Ok(Duration::from_millis(500)));
    assert_eq!(go_duration("2.25m"), Ok(Duration::from_secs(135)));
    assert!(go_duration("").is_err());
    assert!(go_duration("h").is_err());
    assert!(go_duration("5").is_err());
    assert!(go_duration("5x").is_err());
    assert!(go_duration("1.h").is_ok());
    assert!(go_duration("9999999999h").is_err());
}

// ---------------------------------------------------------------- TLS flags

#[test]
fn boolean_flags_take_go_syntax() {
    assert!(ok(&["--client-cert-auth"]).client_tls.client_cert_auth);
    for value in ["true", "1", "t", "T", "TRUE", "True"] {
        assert!(ok(&[&format!("--auto-tls={value}")]).client_tls.auto_tls, "{value}");
    }
    for value in ["false", "0", "f", "F", "FALSE", "False"] {
        assert!(!ok(&[&format!("--peer-auto-tls={value}")]).peer_tls.auto_tls, "{value}");
    }
    // The last one wins, so a flag can be turned off again.
    assert!(!ok(&["--client-cert-auth", "--client-cert-auth=false"]).client_tls.client_cert_auth);
    assert_eq!(
        err(&["--client-cert-auth=yes"]),
        "invalid value \"yes\" for --client-cert-auth: expected true or false"
    );
    assert_eq!(
        err(&["--peer-client-cert-auth="]),
        "invalid value \"\" for --peer-client-cert-auth: expected true or false"
    );
    // Like Go's flag package, a separate word is not the flag's value.
    let e = with_env(&["--client-cert-auth", "false"], &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Clap(_)), "{e}");
    // Environment: an empty variable is unset, anything else is parsed.
    let c = with_env(&[], &[("MODKV_CLIENT_CERT_AUTH", ""), ("MODKV_AUTO_TLS", "false")]).unwrap();
    assert!(!c.client_tls.client_cert_auth && !c.client_tls.auto_tls);
    let e = with_env(&[], &[("MODKV_PEER_AUTO_TLS", "on")]).unwrap_err().to_string();
    assert_eq!(e, "invalid value \"on\" for --peer-auto-tls: expected true or false");
}

#[test]
fn trusted_ca_alone_requires_client_certs() {
    let flags = |ca: bool, auth: bool| TlsFlags {
        trusted_ca_file: ca.then(|| PathBuf::from("ca.pem")),
        client_cert_auth: auth,
        ..TlsFlags::default()
    };
    assert!(!flags(false, false).requires_client_cert());
    assert!(flags(true, false).requires_client_cert());
    assert!(flags(false, true).requires_client_cert());
    assert!(flags(true, true).is_empty());
}

#[test]
fn https_client_url_needs_cert_and_key() {
    let https = ["--listen-client-urls", "http://127.0.0.1:1,https://127.0.0.1:2379"];
    assert_eq!(
        err(&https),
        "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"
    );
    // --client-cert-auth / --trusted-ca-file alone are not enough.
    let mut args = https.to_vec();
    args.extend(["--client-cert-auth", "--trusted-ca-file", "ca.pem"]);
    assert!(err(&args).starts_with("TLS key/cert (--cert-file, --key-file) must be provided"));
    // Auto TLS, or both files, are.
    let mut args = https.to_vec();
    args.push("--auto-tls");
    assert!(ok(&args).client_tls.auto_tls);
    let mut args = https.to_vec();
    args.extend(["--cert-file", "c.pem", "--key-file", "k.pem"]);
    ok(&args);
    // Only one of the two files (auto TLS does not fill in the other, as in etcd).
    let mut args = https.to_vec();
    args.extend(["--cert-file", "c.pem", "--auto-tls"]);
    assert_eq!(err(&args), "--cert-file and --key-file must both be present [key: , cert: c.pem]");
    let mut args = https.to_vec();
    args.extend(["--key-file", "k.pem"]);
    assert_eq!(err(&args), "--cert-file and --key-file must both be present [key: k.pem, cert: ]");
    // The same settings from the environment or a file are checked the same way.
    let e = with_env(&[], &[("MODKV_LISTEN_CLIENT_URLS", "https://127.0.0.1:2379")]).unwrap_err().to_string();
    assert!(e.starts_with("TLS key/cert (--cert-file, --key-file) must be provided"), "{e}");
    let c = with_file("listen-client-urls = \"https://127.0.0.1:2379\"\nauto-tls = true\n", &[]).unwrap();
    assert!(c.client_tls.auto_tls);
}

#[test]
fn https_peer_url_needs_cert_and_key() {
    let peer = [
        "--name",
        "n1",
        "--listen-peer-urls",
        "https://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "https://127.0.0.1:2380",
    ];
    assert_eq!(
        err(&peer),
        "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented \
         (give --peer-cert-file and --peer-key-file, or --peer-auto-tls)"
    );
    // Client TLS settings do not count for peers, nor the other way round.
    let mut args = peer.to_vec();
    args.extend(["--cert-file", "c.pem", "--key-file", "k.pem", "--auto-tls"]);
    assert!(err(&args).starts_with("cannot listen on TLS for 127.0.0.1:2380"));
    let mut args = peer.to_vec();
    args.push("--peer-auto-tls");
    ok(&args);
    let mut args = peer.to_vec();
    args.extend(["--peer-cert-file", "p.pem"]);
    assert_eq!(err(&args), "--peer-cert-file and --peer-key-file must both be present [key: , cert: p.pem]");
    let mut args = peer.to_vec();
    args.extend(["--peer-cert-file", "p.pem", "--peer-key-file", "pk.pem", "--peer-client-cert-auth"]);
    let c = ok(&args);
    assert!(c.peer_tls.client_cert_auth && c.peer_tls.requires_client_cert());
    assert_eq!(c.client_tls, TlsFlags::default());
}

#[test]
fn tls_flags_with_http_urls_are_accepted() {
    // etcd only warns that they are ignored for http:// URLs (when the member starts).
    let c = ok(&["--cert-file", "c.pem", "--client-cert-auth", "--peer-key-file", "k.pem"]);
    assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("c.pem")));
    assert_eq!(c.peer_tls.key_file, Some(PathBuf::from("k.pem")));
    // Empty paths mean unset.
    let c = ok(&["--cert-file", "", "--peer-trusted-ca-file", ""]);
    assert_eq!((c.client_tls.clone(), c.peer_tls.clone()), (TlsFlags::default(), TlsFlags::default()));
}

// ---------------------------------------------------------------- misc

#[test]
fn every_error_display_is_one_line() {
    let cases: &[&[&str]] = &[
        &["--listen-client-urls", "x"],
        &["--initial-cluster", "nope"],
        &["--name", "n3", "--initial-cluster", "n1=http://a:1"],
        &["--name", "n1", "--initial-cluster", "n1=http://a:1"],
        &["--heartbeat-interval", "300"],
        &["--auto-compaction-retention", "zz"],
        &["--listen-client-urls", "https://127.0.0.1:1"],
        &["--listen-peer-urls", "https://127.0.0.1:2"],
        &["--listen-client-urls", "https://127.0.0.1:1", "--key-file", "k"],
    ];
    for args in cases {
        let e = err(args);
        assert!(!e.contains('\n'), "{args:?}: {e:?}");
    }
}

#[test]
fn url_string_drops_trailing_slash() {
    assert_eq!(url_string(&Url::parse("http://localhost:2379").unwrap()), "http://localhost:2379");
    assert_eq!(url_string(&Url::parse("https://[::1]:1/").unwrap()), "https://[::1]:1");
}

#[test]
fn cluster_state_display() {
    assert_eq!(ClusterState::New.to_string(), "new");
    assert_eq!(ClusterState::Existing.to_string(), "existing");
}

#[test]
fn from_args_reads_process_env_without_modkv_vars() {
    // Only meaningful when the test process has no MODKV_* variables set.
    if std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with(ENV_PREFIX)) {
        return;
    }
    assert_eq!(Config::from_args(["modkv", "--name", "p"]).unwrap().name, "p");
}

#[test]
fn auth_flags() {
    let c = ok(&[]);
    assert_eq!(c.auth, AuthFlags { token: "simple".into(), token_ttl: Duration::from_secs(300), bcrypt_cost: 10 });
    let c = ok(&["--auth-token", "simple", "--auth-token-ttl", "5", "--bcrypt-cost", "4"]);
    assert_eq!(c.auth, AuthFlags { token: "simple".into(), token_ttl: Duration::from_secs(5), bcrypt_cost: 4 });
    assert_eq!(ok(&["--bcrypt-cost", "3"]).auth.bcrypt_cost, 10, "out of [4, 31]: etcd's default");
    assert_eq!(ok(&["--bcrypt-cost", "32"]).auth.bcrypt_cost, 10);
    let jwt = "jwt,pub-key=a,priv-key=b,sign-method=RS256";
    assert_eq!(ok(&["--auth-token", jwt]).auth.token, jwt, "parsed, and its files read, when the member starts");
    assert!(err(&["--auth-token-ttl", "0"]).contains("--auth-token-ttl"));
}

// ---------------------------------------------------------------- --proxy (etcd's v2-proxy switch)

#[test]
fn proxy_switch_off_on_readonly() {
    assert_eq!(ok(&[]).proxy, ProxyMode::Off);
    let cluster = "--initial-cluster=m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381";
    // A member must be named in --initial-cluster; a proxy is not a member.
    assert!(err(&[cluster]).starts_with("couldn't find local name \"default\""));
    let on = ok(&["--proxy=on", cluster, "--listen-client-urls=http://localhost:23790"]);
    assert_eq!(on.proxy, ProxyMode::On);
    assert_eq!(ok(&["--proxy", "readonly", cluster]).proxy, ProxyMode::Readonly);
    assert_eq!(err(&["--proxy=yes"]), "invalid value \"yes\" for --proxy: expected one of off, on, readonly");
    let endpoints = vec!["http://127.0.0.1:2379".to_string()];
    let p = ProxyConfig::from_member(&on, endpoints.clone()).unwrap();
    assert_eq!(p.endpoints, endpoints);
    assert_eq!(p.listen_addr, "127.0.0.1:23790".parse().unwrap());
    assert!(!p.readonly && p.advertise_client_url.is_empty() && p.namespace.is_empty());
    let ro = ok(&["--proxy=readonly", cluster]);
    assert!(ProxyConfig::from_member(&ro, endpoints).unwrap().readonly);
}
