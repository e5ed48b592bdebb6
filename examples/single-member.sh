#!/usr/bin/env bash
# Starts one modkv member the way one starts etcd, on loopback, with a data dir under ./example.modkv.
# Try it with etcdctl:  ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 put foo bar
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODKV_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/modkv}
exec "$bin" \
  --name example \
  --data-dir ./example.modkv \
  --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster example=http://127.0.0.1:2380 \
  --initial-cluster-token example-cluster \
  "$@"
