#!/usr/bin/env bash
# Starts a three-member modkv cluster on loopback the way one starts etcd's: members m1, m2, m3 with client
# ports 12379, 22379, 32379 and peer ports 12380, 22380, 32380, data under ./example-cluster/. Ctrl-C stops
# all three. Try it with etcdctl:
#   ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379 endpoint status -w table
#   ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:22379 put foo bar      # any member takes writes
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODKV_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/modkv}
cluster=m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  "$bin" \
    --name "m$i" \
    --data-dir "./example-cluster/m$i" \
    --listen-client-urls "http://127.0.0.1:${i}2379" \
    --advertise-client-urls "http://127.0.0.1:${i}2379" \
    --listen-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-advertise-peer-urls "http://127.0.0.1:${i}2380" \
    --initial-cluster "$cluster" \
    --initial-cluster-token example-cluster \
    --initial-cluster-state new \
    "$@" &
  pids+=($!)
done
wait
