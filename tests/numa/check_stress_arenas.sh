#!/bin/sh
# Runs a test with HMALLOC_STATS=1 (set by ctest) and checks, from the
# "hmalloc: arena N: ..." lines it prints at exit, that the process had
# NODES arenas and that at least MIN_USED of them formed spans and took
# cross-node frees (real threads only reach the nodes of the CPUs they may
# run on: never more than nproc of them).
#   check_stress_arenas.sh NODES MIN_USED EXECUTABLE [ARGS...]
nodes=$1 min_used=$2
shift 2
cpus=$(nproc)
[ "$cpus" -lt "$min_used" ] && min_used=$cpus
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>"$out"
status=$?
cat "$out" >&2
if [ "$status" -ne 0 ]; then
  echo "FAIL: $1 exited with status $status"
  exit 1
fi
arenas=$(grep -c '^hmalloc: arena [0-9]*:' "$out")
used=$(grep '^hmalloc: arena [0-9]*:' "$out" |
  grep -v 'spans 0,' | grep -vc 'cross-node frees 0$')
if [ "$arenas" -ne "$nodes" ]; then
  echo "FAIL: $arenas arena lines, expected $nodes (HMALLOC_STATS=1 and HWLOC_SYNTHETIC set?)"
  exit 1
fi
if [ "$used" -lt "$min_used" ]; then
  echo "FAIL: $used of $nodes arenas formed spans and took cross-node frees, expected $min_used"
  exit 1
fi
echo "$used of $nodes arenas used"
echo "1 passed, 0 failed"
