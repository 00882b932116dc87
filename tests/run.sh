#!/usr/bin/env bash
# Builds hmalloc with -Werror and runs the whole test suite through ctest.
# On a fresh Debian 12 machine, as root, installs what is missing first.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${HMALLOC_BUILD_DIR:-$here/build/tests}

packages=(build-essential cmake pkg-config libhwloc-dev python3 sqlite3 git coreutils valgrind
  clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHMALLOC_WERROR=ON -DHMALLOC_TESTS=ON
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
