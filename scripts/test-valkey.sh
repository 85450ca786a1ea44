#!/usr/bin/env bash
# The end-to-end suites (tests/, the client's included) against Valkey 8.1 and 9.1, with the
# debug module: `make test-valkey`. The live fuzzer runs HC_FUZZ_SECS (default 10 here) per
# server. Every server is tried; the script fails if any suite failed on any of them.
set -euo pipefail
cd "$(dirname "$0")/.."

module=${1:-$(pwd)/target/debug/libhybridcache_module.so}
export HYBRIDCACHE_MODULE=$module
export HC_FUZZ_SECS=${HC_FUZZ_SECS:-10}
failed=()
for line in ${VALKEY_LINES:-8 9}; do
  server=$(./scripts/get-valkey.sh "$line")
  echo "== Valkey $line: $server"
  start=$(date +%s)
  if REDIS_SERVER=$server ${CARGO:-cargo} test -p hybridcache-tests --no-fail-fast; then
    echo "== Valkey $line: passed in $(( $(date +%s) - start )) s"
  else
    echo "== Valkey $line: FAILED after $(( $(date +%s) - start )) s" >&2
    failed+=("$line")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-valkey: failed on Valkey ${failed[*]}" >&2
  exit 1
fi
