#!/usr/bin/env bash
# Benchmarks that print figures and assert nothing (`make bench`): modkv against the reference etcd 3.4 on
# this machine, each with a fresh data dir under /tmp, loopback only, bounded in count.
#   1. sequential puts (one client): latency        2. 100 clients over 10 connections: throughput
#   3. modkv with the json-guard hook on the written prefix vs no plugins, and what one call costs in
#      the host (server/examples/plugin-call-cost.rs)
#   4. the hello plugin route with wrk (requests/s, p99)
#   5. three-member clusters: modkv against etcd, puts through the leader
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

put_bench() { # label port [extra bench args…]
  local label=$1 port=$2; shift 2
  "$bench" --endpoint "http://127.0.0.1:$port" --label "$label" --mode seq --total 3000 "$@"
  "$bench" --endpoint "http://127.0.0.1:$port" --label "$label" --mode par --clients 100 --conns 10 --total 50000 "$@"
}

start etcd etcd 24379 24380
start modkv modkv 25379 25380
put_bench etcd 24379
put_bench modkv 25379

stop_all
mkdir -p "$work/plugins-guard"
cp "$plugins/json-guard.wasm" "$plugins/json-guard.toml" "$work/plugins-guard/"
start modkv plain 26379 26380
start modkv guarded 27379 27380 --plugin-dir "$work/plugins-guard"
put_bench modkv-no-plugins 26379 --key-prefix json/ --json-values
put_bench modkv-json-guard 27379 --key-prefix json/ --json-values
curl -s "http://127.0.0.1:27379/metrics" | grep -E '^modkv_plugin_call_duration_seconds_(sum|count)\{plugin="json-guard",hook="pre_put"\}'
"$target/release/examples/plugin-call-cost" "$plugins/json-guard.wasm" "$plugins/json-guard.toml"

stop_all
mkdir -p "$work/plugins-hello"
cp "$plugins/hello.wasm" "$plugins/hello.toml" "$work/plugins-hello/"
start modkv hello 28379 28380 --plugin-dir "$work/plugins-hello"
echo "wrk: GET /hello (hello plugin), 4 threads, 64 connections, 10 s"
wrk -t4 -c64 -d10s --latency "http://127.0.0.1:28379/hello" | grep -E "Requests/sec|Latency|99%|50%"
echo "wrk: GET /version (built in), same load, for comparison"
wrk -t4 -c64 -d10s --latency "http://127.0.0.1:28379/version" | grep -E "Requests/sec|Latency|99%|50%"
grep -h "plugins (startup)" "$work"/guarded.log "$work"/hello.log || true

# kind base-port: three members m1..m3 on base+0/1, base+2/3, base+4/5; prints the leader's client URL.
# Run in a command substitution (a subshell): the members' pids go to $work/cluster.pids for stop_all.
cluster() {
  local kind=$1 base=$2 exe=$bin ic="" i
  [ "$kind" = etcd ] && exe=etcd
  for i in 1 2 3; do ic="$ic${ic:+,}$kind-m$i=http://127.0.0.1:$((base + 2 * i - 1))"; done
  for i in 1 2 3; do
    local c=$((base + 2 * i - 2)) p=$((base + 2 * i - 1))
    "$exe" --name "$kind-m$i" --data-dir "$work/$kind-m$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$ic" --initial-cluster-token "bench-$kind" >"$work/$kind-m$i.log" 2>&1 &
    echo $! >>"$work/cluster.pids"
  done
  for i in 1 2 3; do wait_ready $((base + 2 * i - 2)) >&2; done
  ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$base,127.0.0.1:$((base + 2)),127.0.0.1:$((base + 4))" \
    endpoint status | awk -F', ' '$5 == "true" { print "http://" $1 }'
}
stop_all
echo "three-member clusters (same machine, loopback): puts through the leader"
leader=$(cluster etcd 31379)
"$bench" --endpoint "$leader" --label etcd-3 --mode seq --total 2000
"$bench" --endpoint "$leader" --label etcd-3 --mode par --clients 100 --conns 10 --total 30000
stop_all
leader=$(cluster modkv 32379)
"$bench" --endpoint "$leader" --label modkv-3 --mode seq --total 2000
"$bench" --endpoint "$leader" --label modkv-3 --mode par --clients 100 --conns 10 --total 30000
