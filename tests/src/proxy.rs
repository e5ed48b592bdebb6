//! Proxies under test: the command line both kinds' `grpc-proxy start` take.

use std::path::Path;

/// `grpc-proxy start --endpoints=<endpoints> --listen-addr=127.0.0.1:<port> --data-dir=<dir>/proxy
/// <extra>`: the arguments after the binary (`etcd` or `modkv`).
pub fn grpc_proxy_args(endpoints: &str, port: u16, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["grpc-proxy".into(), "start".into(), format!("--endpoints={endpoints}")];
    args.push(format!("--listen-addr=127.0.0.1:{port}"));
    args.push(format!("--data-dir={}", dir.join("proxy").display()));
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}
