#!/usr/bin/env bash
# Resident memory after N puts of unique keys with 256-byte values (`make bench-mem N=1000000`), figures only:
# etcd 3.4 and modkv, MEMBERS members each (default 1), fresh data dirs, loaded through the leader by
# modkv-bench with 100 clients over 10 connections; prints VmRSS / VmHWM / anonymous and file-backed RSS of
# the largest member and the size of its data dir on disk.
# MIXED_SECS=600 then runs a mixed load for that long (txn-mixed, 4 reads per write over the same N keys,
# 256-byte values, MIXED_RATE requests/s over 100 clients; no compaction, as both servers' default) and
# prints the same figures again.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
n=${N:-300000}
members=${MEMBERS:-1}
mixed_secs=${MIXED_SECS:-0}
mixed_rate=${MIXED_RATE:-1500}
largest() { # kind: the memory figures of the member with the largest RSS, and its data dir's size
  local best_i
  best_i=$(largest_member)
  echo "m$best_i $(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/${pids[$best_i]}/status" | tr -s ' \t' ' ' |
    tr '\n' ' ')disk=$(du -sm "$work/$1-m$best_i" | cut -f1)MB"
}
for kind in ${KINDS:-modkv etcd}; do
  base=$((41379 + RANDOM % 400 * 8))
  launch_cluster "$kind" "$base" "$members"
  cluster_ready "$base" "$members"
  endpoints=$(cluster_endpoints "$base" "$members")
  "$bench" put --endpoints "$endpoints" --target-leader --clients 100 --conns 10 --total "$n" \
    --key-space-size "$n" --sequential-keys --val-size 256 >/dev/null
  sleep 2
  echo "$kind, $members member(s), keys=$n: $(largest "$kind")"
  if [ "$mixed_secs" -gt 0 ]; then
    t0=$(date +%s)
    "$bench" txn-mixed --endpoints "$endpoints" --target-leader --clients 100 --conns 10 --rw-ratio 4 \
      --total $((mixed_secs * mixed_rate)) --rate "$mixed_rate" --key-space-size "$n" --val-size 256 \
      | awk '/summary:/ {w=$2} /Requests\/sec/ {printf "%s %s/s ", w, $2} /Error/ {printf "%s ", $0}'
    sleep 2
    echo
    echo "$kind, $members member(s), after $(($(date +%s) - t0)) s of txn-mixed: $(largest "$kind")"
  fi
  stop_all
done
