#!/usr/bin/env bash
# Runs a command against a throwaway redis-server with the hybridcache module, on a free
# loopback port: with-redis.sh <module.so> <command...>. REDIS_URL is set for the command.
set -euo pipefail
module=$1; shift
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
  --loadmodule "$module" --daemonize no --logfile "$dir/redis.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
REDIS_URL="redis://127.0.0.1:$port/" "$@"
