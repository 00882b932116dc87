#!/bin/sh
# Cost of NUMA awareness per malloc+free pair, through libhmalloc.so as
# LD_PRELOAD: callgrind instructions ((Ir(2N) - Ir(N)) / N, which cancels
# start-up) and native ns, on the fast path (malloc(32)/free), a refill path
# (4 KiB blocks, 15 to a span) and large runs (1 MiB), for
#   numa-off   HMALLOC_NUMA=0
#   default    nothing set: on a one-node machine hwloc must not even load
#   2-node     HWLOC_SYNTHETIC="node:2 pu:1": a table, two arenas
# Purging is off (HMALLOC_PURGE_DELAY_MS=-1): its passes are driven by the
# clock, so under callgrind they would land in one run and not the other.
# Not a test: it only prints (no timing is asserted anywhere).
#   tests/numa/measure_alloc_cost.sh BUILD_DIR
# Under valgrind glibc cannot register rseq and the CPUID it shows has no
# RDPID, so with a table the current CPU comes from the vDSO's getcpu there;
# natively it comes from rseq.
set -eu
# Time-driven purge passes would land in some runs and not others.
export HMALLOC_PURGE_DELAY_MS=-1
build=${1:?usage: $0 BUILD_DIR}
lib=$build/libhmalloc.so
cost=$build/tests/numa/numa_alloc_cost
[ -x "$cost" ] && [ -f "$lib" ] || { echo "build $cost and $lib first"; exit 2; }

# Runs the driver with the configuration's variables, on CPU 0: with two
# nodes, a process that moves between CPUs would also move between arenas.
run() {
  config=$1
  shift
  case $config in
    numa-off) taskset -c 0 env HMALLOC_NUMA=0 "$@" ;;
    default) taskset -c 0 env -u HMALLOC_NUMA "$@" ;;
    2-node) taskset -c 0 env HWLOC_SYNTHETIC="node:2 pu:1" "$@" ;;
  esac
}

ir() { # config mode n -> instructions of the whole run
  run "$1" valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null \
    --toggle-collect=measured_loop \
    env LD_PRELOAD="$lib" "$cost" "$2" "$3" 2>&1 | awk '/Collected/ {n = $4} END {print n}'
}

printf '%-9s %-7s %12s %12s   %s\n' config path "Ir/pair" "ns/pair" "native run"
for mode in fast refill large; do
  case $mode in
    fast) n=100000 native=20000000 ;;
    refill) n=32000 native=4000000 ;;
    large) n=4000 native=400000 ;;
  esac
  for config in numa-off default 2-node; do
    a=$(ir $config $mode $n)
    b=$(ir $config $mode $((2 * n)))
    line=$(run $config env LD_PRELOAD="$lib" "$cost" $mode $native)
    ns=$(echo "$line" | awk '{print $2}')
    per=$(awk -v a="$a" -v b="$b" -v n="$n" 'BEGIN {printf "%.2f", (b - a) / n}')
    printf '%-9s %-7s %12s %12s   %s\n' $config $mode "$per" "$ns" "$line"
  done
done
