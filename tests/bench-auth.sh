#!/usr/bin/env bash
# Auth benchmarks (`make bench-auth`, also the last part of `make bench`), figures only: modkv and etcd 3.4
# each with auth off and on, fresh data dirs, alternating over ROUNDS rounds (default 2).
#   auth on: simple tokens, a user whose one role holds 20 key-range permissions (bench/ and p00/…p18/),
#   its token sent with every request; bcrypt cost 10 (the default of both).
#   1. sequential puts (latency)  2. puts, 100 clients / 10 connections  3. linearizable ranges of one
#   key, same load  4. Authenticate calls per second (4 clients; each is a bcrypt check)
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
rounds=${ROUNDS:-2}

setup_auth() { # port
  local ctl=(env ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$1")
  "${ctl[@]}" user add root:rootpw >/dev/null
  "${ctl[@]}" role add bench >/dev/null
  "${ctl[@]}" role grant-permission bench readwrite bench/ --prefix >/dev/null
  for i in $(seq -w 0 18); do "${ctl[@]}" role grant-permission bench readwrite "p$i/" --prefix >/dev/null; done
  "${ctl[@]}" user add bench:benchpw >/dev/null
  "${ctl[@]}" user grant-role bench bench >/dev/null
  "${ctl[@]}" auth enable >/dev/null
}

run() { # kind auth(on|off) round
  local kind=$1 auth=$2 port=$((40379 + RANDOM % 1000 * 2)) user=()
  start "$kind" "$kind-$auth-$3" "$port" $((port + 1))
  if [ "$auth" = on ]; then setup_auth "$port"; user=(--user bench:benchpw); fi
  local b=("$bench" --endpoint "http://127.0.0.1:$port" --label "$kind" "${user[@]}")
  "${b[@]}" --mode seq --total 2000
  "${b[@]}" --mode par --clients 100 --conns 10 --total 30000
  "${b[@]}" --op range --mode par --clients 100 --conns 10 --total 50000
  if [ "$auth" = on ]; then "${b[@]}" --op authenticate --mode par --clients 4 --conns 1 --total 120; fi
  stop_all
}

for round in $(seq 1 "$rounds"); do
  echo "round $round"
  for kind in etcd modkv; do
    for auth in off on; do run "$kind" "$auth" "$round"; done
  done
done
