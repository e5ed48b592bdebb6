#!/usr/bin/env bash
# Restart time with N keys (`make bench-restart N=1000000 MEMBERS=1|3`), figures only: etcd 3.4 and modkv,
# fresh data dirs, N puts of distinct keys with 256-byte values (100 clients over 10 connections), then every
# member stopped (SIGTERM) and started again on its data dir, ROUNDS times: the seconds from spawning the
# processes until every member answers `endpoint health` (a leader elected, a read through raft), and the
# largest member's resident memory then.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
n=${N:-300000}
rounds=${ROUNDS:-3}
members=${MEMBERS:-1}
bin=${MODKV:-$bin} # another modkv binary to measure (an A/B by hand)
now() { date +%s.%N; }
for kind in ${KINDS:-modkv etcd}; do
  base=$((41379 + RANDOM % 400 * 8))
  launch_cluster "$kind" "$base" "$members"
  cluster_ready "$base" "$members"
  t0=$(now)
  "$bench" put --endpoints "http://127.0.0.1:$base" --clients 100 --conns 10 --total "$n" \
    --key-space-size "$n" --sequential-keys --val-size 256 >/dev/null
  echo "$kind, $members member(s): $n puts in $(echo "$(now) - $t0" | bc) s, data dir $(du -sm "$work/$kind-m0" | cut -f1) MB"
  for r in $(seq 1 "$rounds"); do
    stop_all
    t0=$(now)
    launch_cluster "$kind" "$base" "$members"
    cluster_ready "$base" "$members"
    took=$(echo "$(now) - $t0" | bc)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/${pids[$(largest_member)]}/status")
    echo "$kind, $members member(s), keys=$n, restart $r: every member healthy in ${took} s, largest RSS $((rss / 1024)) MiB"
  done
  stop_all
done
