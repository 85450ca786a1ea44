#!/usr/bin/env bash
# Runs Redis's own tcl test suite, for the installed redis-server, with the hybridcache module
# loaded into every server the suite starts (`--config loadmodule <so>`): loading the module
# must not change what Redis does.
#
#   scripts/redis-suite.sh [path/to/libhybridcache_module.so]     (default: the debug build)
#
# The suite's source is that of the installed package (`apt-get source redis`, with Debian's
# patches), kept in target/redis-src; REDIS_SRC=<dir> uses a tree already unpacked instead.
# Environment: REDIS_SUITE_CLIENTS (2), REDIS_SUITE_BASEPORT (21111; the suite's servers use
# the ports from there), REDIS_SUITE_UNITS (a space-separated list replacing the one below).
# Exits non-zero if any test fails; prints how long each unit took.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
module="${1:-$root/target/debug/libhybridcache_module.so}"
module="$(realpath "$module")"
clients="${REDIS_SUITE_CLIENTS:-2}"
baseport="${REDIS_SUITE_BASEPORT:-21111}"

# A fast, representative set: 37 units, about 7 minutes with 2 clients on 2 cores (6 min 47 s
# measured with Redis 7.0.15; integration/replication 228 s and replication-psync 168 s of it
# run beside the rest), within a CI budget of 15. The replication unit in full, the data types,
# keyspace, expiry, pub/sub, transactions, scripting and functions, INFO, DUMP/RESTORE, ACL,
# tracking, lazyfree, eviction, persistence and the replication/failover/shutdown paths. Left
# out for time: unit/type/list-3 and the other long randomized units, unit/memefficiency, the
# cluster units (they need runtest-cluster) and the moduleapi suite (its own test modules).
units=(
  integration/replication
  integration/replication-psync
  integration/psync2
  integration/block-repl
  integration/failover
  integration/shutdown
  integration/rdb
  integration/aof
  unit/keyspace
  unit/type/string
  unit/type/incr
  unit/type/list
  unit/type/hash
  unit/type/set
  unit/type/zset
  unit/type/stream
  unit/type/stream-cgroups
  unit/expire
  unit/pubsub
  unit/pubsubshard
  unit/multi
  unit/scripting
  unit/info
  unit/dump
  unit/acl
  unit/other
  unit/introspection
  unit/functions
  unit/tracking
  unit/lazyfree
  unit/maxmemory
  integration/replication-2
  integration/replication-3
  integration/replication-4
  integration/psync2-reg
  integration/psync2-pingoff
  integration/psync2-master-restart
)
if [ -n "${REDIS_SUITE_UNITS:-}" ]; then
  read -r -a units <<<"$REDIS_SUITE_UNITS"
fi

# Tests skipped because they fail on this Redis without the module too.
skips=(
  # Redis 7.0.15's own test sets `repl-diskless-load yes`, which 7.0 rejects (the values are
  # disabled, on-empty-db, swapdb): the CONFIG SET error aborts the whole run with or
  # without a module.
  "/Fullsync should not free scripting engine on a replica"
  # Added to Debian's 7.0.15 with a CVE fix: it expects "Bad data format", the installed
  # binary answers "DUMP payload version or checksum are wrong" (checked without the module).
  "RESTORE fail with invalid payload size"
)

if [ ! -f "$module" ]; then
  echo "module library not found: $module (build it with: cargo build -p hybridcache-module)" >&2
  exit 2
fi
server="$(command -v redis-server || true)"
if [ -z "$server" ]; then
  echo "redis-server not found (scripts/install-deps.sh installs it)" >&2
  exit 2
fi
version="$("$server" --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Adds deb-src entries mirroring the enabled deb ones, unless some exist already: deb822
# stanzas (.sources, keeping their Signed-By, which Debian 12 needs) and one-line
# sources.list entries.
ensure_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return
  fi
  local stanzas lines f
  stanzas="$(mktemp)"
  lines="$(mktemp)"
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; each one of type deb is copied as deb-src.
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         /(^|\n)Types:[^\n]*deb([ \n]|$)/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' \
      "$f" >>"$stanzas"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list >"$lines"
  fi
  if [ ! -s "$stanzas" ] && [ ! -s "$lines" ]; then
    rm -f "$stanzas" "$lines"
    echo "no apt sources to derive deb-src entries from; set REDIS_SRC to an unpacked redis source tree" >&2
    exit 2
  fi
  if [ -s "$stanzas" ]; then
    echo "adding /etc/apt/sources.list.d/hybridcache-deb-src.sources"
    as_root install -m 0644 "$stanzas" /etc/apt/sources.list.d/hybridcache-deb-src.sources
  fi
  if [ -s "$lines" ]; then
    echo "adding /etc/apt/sources.list.d/hybridcache-deb-src.list"
    as_root install -m 0644 "$lines" /etc/apt/sources.list.d/hybridcache-deb-src.list
  fi
  rm -f "$stanzas" "$lines"
}

fetch_source() {
  local cache="$root/target/redis-src"
  local dir
  dir="$(find "$cache" -maxdepth 1 -type d -name "redis-$version*" 2>/dev/null | head -n 1)"
  if [ -n "$dir" ] && [ -x "$dir/runtest" ]; then
    echo "$dir"
    return
  fi
  ensure_deb_src >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  local missing=()
  command -v tclsh >/dev/null 2>&1 || missing+=(tcl)
  command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
  mkdir -p "$cache"
  local pkg_version
  pkg_version="$(dpkg-query -W -f='${source:Version}' redis-server 2>/dev/null || true)"
  # The installed package's exact source when the archive still has it, else the current one.
  (cd "$cache" && { [ -n "$pkg_version" ] && apt-get source -q "redis=$pkg_version" >&2 ||
    apt-get source -q redis >&2; })
  dir="$(find "$cache" -maxdepth 1 -type d -name 'redis-*' | sort | tail -n 1)"
  if [ -z "$dir" ] || [ ! -x "$dir/runtest" ]; then
    echo "apt-get source redis gave no test suite in $cache" >&2
    exit 2
  fi
  echo "$dir"
}

src="${REDIS_SRC:-}"
if [ -z "$src" ]; then
  src="$(fetch_source)"
fi
src="$(realpath "$src")"
command -v tclsh >/dev/null 2>&1 || { echo "tclsh not found (apt-get install tcl)" >&2; exit 2; }
src_version="$(sed -n 's/.*REDIS_VERSION "\(.*\)".*/\1/p' "$src/src/version.h" 2>/dev/null || true)"
if [ "$src_version" != "$version" ]; then
  echo "warning: test suite of redis $src_version, installed redis-server is $version" >&2
fi

# The suite runs src/redis-server and friends: the installed binaries.
for tool in redis-server redis-cli redis-benchmark redis-check-aof redis-check-rdb; do
  path="$(command -v "$tool" || true)"
  if [ -n "$path" ]; then
    ln -sf "$path" "$src/src/$tool"
  fi
done

args=(--clients "$clients" --baseport "$baseport" --config loadmodule "$module" --dump-logs)
for unit in "${units[@]}"; do
  args+=(--single "$unit")
done
for skip in "${skips[@]}"; do
  args+=(--skiptest "$skip")
done

echo "redis $version test suite in $src"
echo "module $module; ${#units[@]} units, $clients clients"
started=$(date +%s)
status=0
(cd "$src" && ./runtest "${args[@]}") || status=$?
elapsed=$(($(date +%s) - started))
echo "redis suite with the module: $((elapsed / 60)) min $((elapsed % 60)) s, exit status $status"
exit "$status"
