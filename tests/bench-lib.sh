# Shared by the benchmark scripts (tests/bench.sh, tests/bench-auth.sh): servers started with fresh data
# dirs under one temporary dir, stopped on exit. Source it; it sets -euo pipefail.
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/modkv
bench=$target/release/modkv-bench
plugins=$target/plugins
work=$(mktemp -d /tmp/modkv-bench.XXXXXX)
pids=()
# Stops the servers started so far (each section runs alone: idle servers still tick and wake up).
stop_all() {
  if [ -f "$work/cluster.pids" ]; then
    while read -r p; do pids+=("$p"); done <"$work/cluster.pids"
    rm -f "$work/cluster.pids"
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # Each gets 15 s to stop after SIGTERM (etcd's and modkv's drains take far less), then SIGKILL.
  for p in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      echo "server pid $p did not stop within 15 s of SIGTERM: killed" >&2
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  pids=()
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() { # port (30 s: a member starting on a machine busy with builds can take a while)
  for _ in $(seq 1 300); do
    ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$1" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $1 did not start" >&2; return 1
}

start() { # kind name client-port peer-port [extra args…]
  local kind=$1 name=$2 cport=$3 pport=$4; shift 4
  local exe=$bin; [ "$kind" = etcd ] && exe=etcd
  "$exe" --name "$name" --data-dir "$work/$name" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "$name=http://127.0.0.1:$pport" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_ready "$cport"
}

# Members m0…m<members-1> of one cluster, in the background, on data dirs $work/<kind>-m<i> (fresh, or
# those of an earlier launch: a restart): member i's client port is base + 2i, its peer port base + 2i + 1;
# their pids go to $pids. `kind` etcd runs etcd, anything else $bin.
launch_cluster() { # kind base-port members
  local kind=$1 base=$2 members=$3 cluster="" i exe=$bin
  [ "$kind" = etcd ] && exe=etcd
  for i in $(seq 0 $((members - 1))); do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 2 * i + 1))"; done
  for i in $(seq 0 $((members - 1))); do
    local c=$((base + 2 * i)) p=$((base + 2 * i + 1))
    "$exe" --name "m$i" --data-dir "$work/$kind-m$i" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$cluster" >>"$work/$kind-m$i.log" 2>&1 &
    pids+=($!)
  done
}

cluster_ready() { # base-port members: waits until every member is healthy
  local i
  for i in $(seq 0 $(($2 - 1))); do wait_ready $(($1 + 2 * i)); done
}

cluster_endpoints() { # base-port members: the members' client URLs, comma-separated
  local i out=""
  for i in $(seq 0 $(($2 - 1))); do out+="${out:+,}http://127.0.0.1:$(($1 + 2 * i))"; done
  echo "$out"
}

largest_member() { # the index in $pids of the member with the largest resident memory
  local i best=0 best_i=0 kb
  for i in "${!pids[@]}"; do
    kb=$(awk '/VmRSS/ {print $2}' "/proc/${pids[$i]}/status")
    if [ "$kb" -gt "$best" ]; then best=$kb; best_i=$i; fi
  done
  echo "$best_i"
}
