#!/usr/bin/env bash
# Resident memory after N puts of unique keys with 256-byte values (`make bench-mem N=1000000`), figures only:
# etcd 3.4 and modkv, one member each, fresh data dirs, loaded by modkv-bench with 100 clients over 10
# connections; prints VmRSS / VmHWM / anonymous and file-backed RSS and the data dir's size on disk.
# MIXED_SECS=600 then runs a mixed load for that long (txn-mixed, 4 reads per write over the same N keys,
# 256-byte values, MIXED_RATE requests/s over 100 clients; no compaction, as both servers' default) and
# prints the same figures again.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
n=${N:-300000}
mixed_secs=${MIXED_SECS:-0}
mixed_rate=${MIXED_RATE:-1500}
for kind in ${KINDS:-modkv etcd}; do
  port=$((41379 + RANDOM % 500 * 2))
  start "$kind" "mem-$kind" "$port" $((port + 1))
  pid=${pids[-1]}
  "$bench" --endpoint "http://127.0.0.1:$port" --label "$kind" --mode par --clients 100 --conns 10 --total "$n" >/dev/null
  sleep 2
  rss=$(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')
  echo "$kind keys=$n $rss disk=$(du -sm "$work/mem-$kind" | cut -f1)MB"
  if [ "$mixed_secs" -gt 0 ]; then
    t0=$(date +%s)
    "$bench" txn-mixed --endpoints "http://127.0.0.1:$port" --clients 100 --conns 10 --rw-ratio 4 \
      --total $((mixed_secs * mixed_rate)) --rate "$mixed_rate" --key-space-size "$n" --val-size 256 \
      | awk '/summary:/ {w=$2} /Requests\/sec/ {printf "%s %s/s ", w, $2} /Error/ {printf "%s ", $0}'
    sleep 2
    rss=$(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')
    echo
    echo "$kind after $(( $(date +%s) - t0 )) s of txn-mixed: $rss disk=$(du -sm "$work/mem-$kind" | cut -f1)MB"
  fi
  stop_all
done
