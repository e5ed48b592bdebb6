//! The command line: etcd's `benchmark` subcommands and flags, plus the older one-line form
//! (`--mode seq|par --op put|range|authenticate`) the scripts still use.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A load generator for the etcd v3 gRPC API (etcd 3.4 and modkv alike), after etcd's `benchmark` tool.
#[derive(Parser, Debug)]
#[command(name = "modkv-bench", version, about, args_conflicts_with_subcommands = false)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub legacy: Legacy,
}

/// Flags every load subcommand takes (etcd's names and defaults unless said otherwise).
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// gRPC endpoints, comma separated (`host:port` or `http://host:port`).
    #[arg(long, global = true, value_delimiter = ',', default_value = "127.0.0.1:2379", alias = "endpoint")]
    pub endpoints: Vec<String>,
    /// HTTP/2 connections the clients share [default: 1; 10 in the one-line `--mode par` form].
    #[arg(long, global = true)]
    pub conns: Option<usize>,
    /// Concurrent clients (each one request at a time) [default: 1; 100 in `--mode par`].
    #[arg(long, global = true)]
    pub clients: Option<usize>,
    /// Requests in all [default: 10000; 2000 in the one-line form].
    #[arg(long, global = true)]
    pub total: Option<usize>,
    /// At most this many requests per second over all clients (0: no limit).
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// Bytes of each key (a zero-padded decimal number, after `--key-prefix`).
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Bytes of each value [default: 8; 256 in the one-line form].
    #[arg(long, global = true, alias = "value-size")]
    pub val_size: Option<usize>,
    /// Keys 0, 1, 2… (modulo `--key-space-size`) instead of random ones.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// How many distinct keys the requests use.
    #[arg(long, global = true, default_value_t = 1)]
    pub key_space_size: u64,
    /// Reads: `l` linearizable, `s` serializable.
    #[arg(long, global = true, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
    /// Send every request to the leader (found with Maintenance/Status on the endpoints).
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// `NAME:PASSWORD`: authenticate once, send the token with every request.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Printed with the figures (which server this was).
    #[arg(long, global = true, default_value = "server")]
    pub label: String,
    /// Put before every key.
    #[arg(long, global = true, default_value = "")]
    pub key_prefix: String,
}

/// The one-line form of the older tool: no subcommand, `--mode` and `--op` instead; prints one
/// `bench key=value…` line. Keys are `<key-prefix><client>/<n>` (all distinct).
#[derive(Args, Debug, Clone)]
pub struct Legacy {
    /// `seq`: one client on one connection; `par`: `--clients` over `--conns`.
    #[arg(long)]
    pub mode: Option<Mode>,
    /// What each request is.
    #[arg(long, value_enum)]
    pub op: Option<LegacyOp>,
    /// Values are a JSON document (`{"v":"xxx…"}`) of about `--val-size` bytes (for a JSON-checking hook).
    #[arg(long)]
    pub json_values: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Seq,
    Par,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyOp {
    Put,
    Range,
    Authenticate,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    L,
    S,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// Puts of `--val-size` bytes.
    Put,
    /// Ranges of `KEY` (to `END`, exclusive) with `--consistency`.
    Range {
        key: String,
        end: Option<String>,
        /// At most this many keys per response (0: all).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Txns of `--txn-ops` puts each.
    TxnPut {
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// Txns that read (a range of one key, or to `--end-range`) or write (a put), `--rw-ratio` reads per write.
    TxnMixed {
        #[arg(long, default_value_t = 1.0)]
        rw_ratio: f64,
        /// Reads range from the key to this one (exclusive) instead of one key.
        #[arg(long)]
        end_range: Option<String>,
        /// At most this many keys per read (0: all).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Watcher creation (`--streams` × `--watch-per-stream` watchers on `--watched-key-total` keys),
    /// then `--total` puts on the watched keys, until every watcher saw every event.
    Watch {
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long, default_value_t = 100)]
        watch_per_stream: usize,
        #[arg(long, default_value_t = 1)]
        watched_key_total: usize,
    },
    /// From a put's start to each watcher's event: `--streams` × `--watchers-per-stream` watchers of one
    /// key, `--total` puts at `--rate` (100/s if not given).
    WatchLatency {
        #[arg(long, default_value_t = 10)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
    },
    /// Keep-alives of one lease per client over its LeaseKeepAlive stream.
    LeaseKeepalive,
    /// Read-modify-write transactions (software transactional memory, repeatable reads): read
    /// `--keys-per-txn` of `--keys` keys, write them back if none changed meanwhile, else retry.
    Stm {
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        #[arg(long, default_value_t = 2)]
        keys_per_txn: usize,
    },
    /// Authenticate calls of `--user` (each one a bcrypt check on the server).
    Authenticate,
    /// The machine's fdatasync time: `--count` writes of `--size` bytes, each followed by fdatasync,
    /// in a file under `--dir` (the filesystem of the data dirs), appended or `--preallocated`.
    Fsync {
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 500)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Overwrite a file written and synced in full first (data only), instead of appending.
        #[arg(long)]
        preallocated: bool,
    },
    /// etcd 3.4 and modkv side by side (1 member, then 3), writing report.md, results.json and PNG
    /// charts to `--out`.
    Report(crate::bench::runner::RunnerArgs),
}
