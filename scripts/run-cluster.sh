#!/usr/bin/env bash
# A local Redis Cluster with the hybridcache module: 3 primaries and 3 replicas on loopback,
# ports $BASE_PORT..$BASE_PORT+5 (default 7000-7005; cluster bus ports 10000 above), data
# in a temporary directory. Runs in the foreground; Ctrl-C (or SIGTERM) stops every server
# and removes the directory. Usage: run-cluster.sh <libhybridcache_module.so>
set -euo pipefail

module=${1:?usage: run-cluster.sh <path to libhybridcache_module.so>}
[[ -f $module ]] || { echo "run-cluster: no module library at $module" >&2; exit 1; }
base=${BASE_PORT:-7000}
if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + 5 + 10000 > 65535)); then
  echo "run-cluster: BASE_PORT=$base must be a number from 1024 to 55530" >&2
  exit 1
fi
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done

# Something accepts connections on 127.0.0.1:$1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "${ports[@]}"; do
  for p in "$port" $((port + 10000)); do
    if port_taken "$p"; then
      echo "run-cluster: port $p is taken (ports ${ports[0]}-${ports[5]} and their bus ports" \
        "$((ports[0] + 10000))-$((ports[5] + 10000)) must be free); try BASE_PORT=..." >&2
      exit 1
    fi
  done
done

dir=$(mktemp -d -t hybridcache-cluster.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
  echo "run-cluster: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The last lines of every server log, for failures.
show_logs() {
  for port in "${ports[@]}"; do
    echo "--- $dir/$port/redis.log" >&2
    tail -n 15 "$dir/$port/redis.log" >&2 2>/dev/null || true
  done
}

for port in "${ports[@]}"; do
  mkdir "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" \
    --logfile "$dir/$port/redis.log" --daemonize no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
    --save "" --appendonly no --enable-debug-command local \
    --loadmodule "$module" &
  pids+=($!)
done

for i in "${!ports[@]}"; do
  for _ in $(seq 1 100); do
    redis-cli -p "${ports[$i]}" ping >/dev/null 2>&1 && break
    kill -0 "${pids[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  if ! redis-cli -p "${ports[$i]}" ping >/dev/null 2>&1; then
    echo "run-cluster: redis-server on port ${ports[$i]} did not start" >&2
    show_logs
    exit 1
  fi
done

addresses=()
for port in "${ports[@]}"; do addresses+=("127.0.0.1:$port"); done
if ! redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes \
  >"$dir/create.log" 2>&1; then
  echo "run-cluster: redis-cli --cluster create failed:" >&2
  cat "$dir/create.log" >&2
  show_logs
  exit 1
fi

ok=""
for _ in $(seq 1 300); do
  ok=yes
  for port in "${ports[@]}"; do
    if ! redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
      ok=""
      break
    fi
  done
  [[ -n $ok ]] && break
  sleep 0.1
done
if [[ -z $ok ]]; then
  echo "run-cluster: the cluster did not reach cluster_state:ok within 30 s" >&2
  show_logs
  exit 1
fi

urls=()
for port in "${ports[@]}"; do urls+=("redis://127.0.0.1:$port/"); done
cat <<EOF
hybridcache cluster: 3 primaries + 3 replicas on 127.0.0.1:${ports[0]}-${ports[5]}
  module:  $module
  connect: redis-cli -c -p ${ports[0]}
  urls:    ${urls[*]}
  data:    $dir (removed on exit)
Ctrl-C stops it.
EOF

# Until Ctrl-C, or until a server exits on its own.
wait -n || true
echo "run-cluster: a redis-server exited on its own; stopping the others" >&2
show_logs
exit 1
