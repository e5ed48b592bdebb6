#!/usr/bin/env bash
# Proxy benchmarks (`make bench-proxy`, issue 15), figures only: etcd 3.4 behind `etcd grpc-proxy start`
# and modkv behind `modkv grpc-proxy start`, one member each, fresh data dirs, everything stopped on exit.
#   1. WATCHERS watchers (100 per stream, 10 connections) of KEYS keys, then PUTS puts on those keys until
#      every watcher saw every event; directly on a member, then through a proxy (fresh processes each):
#      CPU seconds and peak RSS of the member and of the proxy over the run, and the most watchers the
#      member reported (etcd_debugging_mvcc_watcher_total; "n/a" where the member lacks the gauge)
#   2. serializable ranges of one key, 100 clients over 10 connections, RANGES in all: on the member, then
#      through the proxy (its cache); auth off, then on (one user's token sent with every read); with the
#      Range calls the member handled meanwhile and its CPU seconds
#   3. the latency a proxy adds to puts: p50/p99 on the member and through the proxy, 1 client (PUTS_SEQ
#      puts) then 100 clients over 10 connections (PUTS_PAR puts)
# KINDS="etcd modkv" by default. The machine's load average is printed: the figures are only comparable
# between runs made on an idle machine.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
watchers=${WATCHERS:-10000}
keys=${KEYS:-5}
puts=${PUTS:-200}
ranges=${RANGES:-50000}
puts_seq=${PUTS_SEQ:-2000}
puts_par=${PUTS_PAR:-20000}
kinds=${KINDS:-etcd modkv}
tck=$(getconf CLK_TCK)
summary=()

load() { cut -d' ' -f1-3 /proc/loadavg; }
cpu() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; } # user + system seconds
hwm() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }     # peak RSS, MB
rss() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
port() { echo $((42379 + RANDOM % 400 * 4)); }

start_proxy() { # kind port member-port
  local kind=$1 exe=$bin
  [ "$kind" = etcd ] && exe=etcd
  "$exe" grpc-proxy start --endpoints="http://127.0.0.1:$3" --listen-addr="127.0.0.1:$2" \
    --data-dir="$work/proxy-$2" >"$work/proxy-$2.log" 2>&1 &
  pids+=($!)
  wait_ready "$2"
}

# The member's etcd_debugging_mvcc_watcher_total every 0.2 s, into a file, until stopped.
sample_watchers() { # member-port file
  while true; do
    curl -s "http://127.0.0.1:$1/metrics" | awk '/^etcd_debugging_mvcc_watcher_total / { print $2 }' >>"$2"
    sleep 0.2
  done
}

watchers_run() { # kind via(member|proxy)
  local kind=$1 via=$2 p mpid ppid="" target samples
  p=$(port)
  start "$kind" "w-$kind-$via" "$p" $((p + 1))
  mpid=${pids[-1]}
  target=$p
  if [ "$via" = proxy ]; then
    start_proxy "$kind" $((p + 2)) "$p"
    ppid=${pids[-1]}
    target=$((p + 2))
  fi
  samples="$work/watchers-$kind-$via"
  : >"$samples"
  sample_watchers "$p" "$samples" &
  pids+=($!)
  local m0 p0 out
  m0=$(cpu "$mpid")
  [ -n "$ppid" ] && p0=$(cpu "$ppid")
  out=$("$bench" watch --endpoints "http://127.0.0.1:$target" --streams $((watchers / 100)) --watch-per-stream 100 \
    --watched-key-total "$keys" --conns 10 --clients 10 --total "$puts" --json)
  local mcpu pcpu="-" prss="-" most create events
  mcpu=$(sub "$m0" "$(cpu "$mpid")")
  if [ -n "$ppid" ]; then pcpu=$(sub "$p0" "$(cpu "$ppid")"); prss=$(hwm "$ppid"); fi
  most=$(sort -n "$samples" | tail -1)
  create=$(jq -r '.results[] | select(.name == "watch-create") | .total_secs' <<<"$out" | xargs printf "%.1f")
  events=$(jq -r '.results[] | select(.name == "watch-events") | .total_secs' <<<"$out" | xargs printf "%.1f")
  local line
  line=$(printf "%-5s %-6s member cpu %6ss peak-rss %4sMB | proxy cpu %6ss peak-rss %4sMB | member watchers max %5s | create %5ss, all events %5ss" \
    "$kind" "$via" "$mcpu" "$(hwm "$mpid")" "$pcpu" "$prss" "${most:-n/a}" "$create" "$events")
  echo "$line"
  summary+=("watch  $line")
  stop_all
}

setup_auth() { # port
  # etcdctl logs a warning for the first attempt of `auth enable` (root has no root role until it grants it).
  local ctl=(env ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$1")
  "${ctl[@]}" user add root:rootpw >/dev/null
  "${ctl[@]}" role add bench >/dev/null
  "${ctl[@]}" role grant-permission bench readwrite bench/ --prefix >/dev/null
  "${ctl[@]}" user add bench:benchpw >/dev/null
  "${ctl[@]}" user grant-role bench bench >/dev/null
  "${ctl[@]}" auth enable >/dev/null 2>&1
}

# "qps p50 p99" of a modkv-bench --json summary.
figures() { jq -r '.results[0] | "\(.qps | floor)/s p50 \(.percentiles_ms.p50) ms p99 \(.percentiles_ms.p99) ms errors \(.errors | length)"'; }

# The Range calls a member has handled (grpc_server_handled_total, every code).
ranges_handled() { # member-port
  curl -s "http://127.0.0.1:$1/metrics" |
    awk '/^grpc_server_handled_total\{/ && /grpc_method="Range"/ { n += $2 } END { printf "%d", n }'
}

ranges_run() { # kind auth(off|on)
  local kind=$1 auth=$2 p mpid user=()
  p=$(port)
  start "$kind" "r-$kind-$auth" "$p" $((p + 1))
  mpid=${pids[-1]}
  start_proxy "$kind" $((p + 2)) "$p"
  ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$p" put bench/k "$(head -c 256 /dev/zero | tr '\0' v)" >/dev/null
  if [ "$auth" = on ]; then
    setup_auth "$p"
    user=(--user bench:benchpw)
  fi
  for via in member proxy; do
    local target=$p line r0 c0 figs
    [ "$via" = proxy ] && target=$((p + 2))
    r0=$(ranges_handled "$p")
    c0=$(cpu "$mpid")
    figs=$("$bench" range bench/k --consistency s --clients 100 --conns 10 --total "$ranges" \
      --endpoints "http://127.0.0.1:$target" "${user[@]}" --json | figures)
    line=$(printf "%-5s %-6s auth %-3s serializable range: %s | member handled %6d Ranges, cpu %5ss" "$kind" "$via" \
      "$auth" "$figs" $(($(ranges_handled "$p") - r0)) "$(sub "$c0" "$(cpu "$mpid")")")
    echo "$line"
    summary+=("range  $line")
  done
  stop_all
}

puts_run() { # kind
  local kind=$1 p
  p=$(port)
  start "$kind" "p-$kind" "$p" $((p + 1))
  start_proxy "$kind" $((p + 2)) "$p"
  for load in "1 1 $puts_seq" "100 10 $puts_par"; do
    read -r clients conns total <<<"$load"
    for via in member proxy; do
      local target=$p line
      [ "$via" = proxy ] && target=$((p + 2))
      line=$(printf "%-5s %-6s put, %3s clients: %s" "$kind" "$via" "$clients" "$("$bench" put --clients "$clients" \
        --conns "$conns" --total "$total" --val-size 256 --endpoints "http://127.0.0.1:$target" --json | figures)")
      echo "$line"
      summary+=("put    $line")
    done
  done
  stop_all
}

echo "bench-proxy $(date -u +%FT%TZ): $(nproc) cores, load average $(load) (other work on the machine skews the figures)"
echo "1. $watchers watchers of $keys keys, then $puts puts"
for kind in $kinds; do
  for via in member proxy; do watchers_run "$kind" "$via"; done
done
echo "2. serializable ranges of one key (256 B), 100 clients / 10 connections, $ranges each"
for kind in $kinds; do
  for auth in off on; do ranges_run "$kind" "$auth"; done
done
echo "3. puts of 256 B: 1 client ($puts_seq), 100 clients / 10 connections ($puts_par)"
for kind in $kinds; do puts_run "$kind"; done

echo
echo "summary (load average at the end $(load)):"
printf '%s\n' "${summary[@]}"
