//! The versions modkv reports: the etcd version it speaks on the wire (`etcdctl endpoint status`,
//! `/version`, `etcd_server_version`) and the cluster version, beside its own crate version.

/// The etcd version modkv speaks on the wire (what `etcdctl endpoint status` shows).
pub const ETCD_VERSION: &str = "3.4.23";
/// The etcd cluster version modkv reports.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";
/// modkv's own version.
pub const MODKV_VERSION: &str = env!("CARGO_PKG_VERSION");
