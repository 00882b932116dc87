#!/bin/sh
# Cost of hm_topology_current_node(): instructions per call under callgrind
# and nanoseconds per call natively, with no table (one node) and with a
# synthetic two-node table. Not a test: it only prints.
#   tests/numa/measure_cost.sh BUILD_DIR
# Under valgrind, glibc cannot register rseq and the CPUID valgrind shows has
# no RDPID, so the table case there takes the getcpu fallback; natively it
# takes rseq (see "CPU from" in the output).
set -eu
cost=${1:?usage: $0 BUILD_DIR}/tests/numa/numa_cost
calls=1000000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in one table; do
  "$cost" $mode 100000000
  GLIBC_TUNABLES=glibc.pthread.rseq=0 "$cost" $mode 20000000 | sed 's/^/rseq off: /'
  if command -v valgrind >/dev/null; then
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$cost" $mode $calls >/dev/null 2>&1
    ir=$(callgrind_annotate --inclusive=yes "$out/cg" | awk '/:probe \[/ {gsub(",", "", $1); print $1}')
    echo "$mode under callgrind: $((ir / calls)) instructions per call (ret included)"
  fi
done
