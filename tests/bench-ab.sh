#!/usr/bin/env bash
# A/B of two modkv binaries (`make bench-ab A=<old modkv> B=<new modkv>`), figures only: each round starts
# A then B (one member, fresh data dir, fsync on) and runs the same loads against each, so a busy machine
# slows both alike. ROUNDS rounds (default 3).
#   1. sequential puts (one client): latency   2. puts, 100 clients / 10 connections: throughput
#   3. linearizable ranges of one key, same load
# Used to show what one change costs or gains (issue 11's refactors, issue 16's tuning).
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
rounds=${ROUNDS:-3}
a=${A:?A=<path of the first modkv binary>}
b=${B:?B=<path of the second modkv binary>}

run() { # label binary round
  local label=$1 port=$((40379 + RANDOM % 1000 * 2))
  bin=$2 start modkv "$label-$3" "$port" $((port + 1))
  local r=("$bench" --endpoint "http://127.0.0.1:$port" --label "$label")
  "${r[@]}" --mode seq --total 2000
  "${r[@]}" --mode par --clients 100 --conns 10 --total 30000
  "${r[@]}" --op range --mode par --clients 100 --conns 10 --total 50000
  stop_all
}

echo "A = $a"
echo "B = $b"
for round in $(seq 1 "$rounds"); do
  echo "round $round"
  run A "$a" "$round"
  run B "$b" "$round"
done
