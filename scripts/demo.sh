#!/usr/bin/env bash
# make demo: a throwaway redis-server with the module, two instances (A, B) of the catalogue
# service (demo/) on free loopback ports, and the scripted story that changes
# data through one and reads it on the other (`demo story`). Everything is stopped on exit;
# the exit code is the story's, so this is a smoke test too.
#   scripts/demo.sh [module.so]   (default target/release/libhybridcache_module.so)
set -euo pipefail
cd "$(dirname "$0")/.."
module=${1:-target/release/libhybridcache_module.so}
cargo=${CARGO:-cargo}
bin=target/release/hybridcache-demo

[ -f "$module" ] || { echo "demo: no module at $module (run: make build)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "demo: redis-server not found (run: make deps)" >&2; exit 1; }
module=$(cd "$(dirname "$module")" && pwd)/$(basename "$module")

echo "demo: building the service (cargo build --release -p hybridcache-demo)"
"$cargo" build --quiet --release -p hybridcache-demo

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
  --loadmodule "$module" --daemonize no --logfile "$dir/redis.log" &
pids+=($!)
for _ in $(seq 1 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  echo "demo: redis-server did not start; its log:" >&2
  cat "$dir/redis.log" >&2
  exit 1
fi
export REDIS_URL="redis://127.0.0.1:$redis_port/"

port_a=$(free_port)
port_b=$(free_port)
while [ "$port_b" = "$port_a" ]; do port_b=$(free_port); done
"$bin" serve --name A --port "$port_a" >"$dir/a.log" 2>&1 &
pids+=($!)
"$bin" serve --name B --port "$port_b" >"$dir/b.log" 2>&1 &
pids+=($!)
echo "demo: redis-server with the module on 127.0.0.1:$redis_port; instances A on :$port_a and B on :$port_b"

status=0
timeout 120 "$bin" story "http://127.0.0.1:$port_a" "http://127.0.0.1:$port_b" || status=$?
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 124 ] && echo "demo: the story did not finish within 120 s" >&2
  for who in a b; do
    echo "--- instance ${who^^} log:" >&2
    tail -n 20 "$dir/$who.log" >&2
  done
  echo "--- redis log:" >&2
  tail -n 20 "$dir/redis.log" >&2
fi
exit "$status"
