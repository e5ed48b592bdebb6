#!/usr/bin/env bash
# Resident memory after N puts of unique keys with 256-byte values (`make bench-mem N=1000000`), figures only:
# etcd 3.4 and modkv, one member each, fresh data dirs, loaded by modkv-bench with 100 clients over 10
# connections; prints VmRSS / VmHWM / anonymous and file-backed RSS and the data dir's size on disk.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
n=${N:-300000}
for kind in ${KINDS:-modkv etcd}; do
  port=$((41379 + RANDOM % 500 * 2))
  start "$kind" "mem-$kind" "$port" $((port + 1))
  pid=${pids[-1]}
  "$bench" --endpoint "http://127.0.0.1:$port" --label "$kind" --mode par --clients 100 --conns 10 --total "$n" >/dev/null
  sleep 2
  rss=$(grep -E 'VmRSS|VmHWM|RssAnon|RssFile' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')
  echo "$kind keys=$n $rss disk=$(du -sm "$work/mem-$kind" | cut -f1)MB"
  stop_all
done
