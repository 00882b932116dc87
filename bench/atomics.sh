#!/usr/bin/env bash
# Counts the atomic read-modify-write instructions an allocator executes per
# malloc/free call, on the cross-thread workloads: measured, not estimated.
#
#   bench/atomics.sh [options]
#     --allocators a,b,...  among hmalloc jemalloc tcmalloc mimalloc (hmalloc);
#                           glibc is not offered: its malloc shares libc.so.6
#                           with everything else that is counted apart
#     --threads T           threads of each workload (default 4)
#     --build-dir DIR       the build of bench/run.sh (default build/bench; or
#                           HMALLOC_BENCH_BUILD_DIR); built first if missing
#     --source DIR          the hmalloc tree to build (default this checkout)
#
# How: each workload runs under valgrind --tool=callgrind --dump-instr=yes,
# which counts how many times every instruction executed, by address within
# its object. objdump -d of the allocator's objects (the preloaded library
# and what it links) gives the addresses of its
# atomic RMW instructions: every lock-prefixed instruction, and xchg with a
# memory operand (locked without a prefix). Their executions, summed, are
# the atomics. Each workload runs at two sizes (-n); the difference in
# atomics over the difference in the malloc+free calls the workload counted
# (its ops=) is the count per call, with start-up, thread creation and exit
# cancelled out. The calls the workload itself makes to libc (barriers,
# thread creation) are in libc.so.6, not counted; libc's atomics over all
# callers are shown apart.
#
# Valgrind runs one thread at a time (time-sliced), so CAS retries caused by
# true contention are rarer than on hardware; the counts are those of the
# protocol: what every call pays, remote frees included.
#
# Workloads (bench/workloads; churn is the single-thread reference, where
# every free is local):
#   churn     1 thread, random slots of a working set replaced
#   xthread   a ring of threads, every block freed by the next thread
#   requests  per-request temporaries, a shared table of objects
#   prodcons  producers malloc, consumers free
#   larson    slot arrays rotating between threads
# The table goes to stdout and to bench/results/atomics-<date>/atomics.md,
# with callgrind's outputs beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
source_dir=$root
build=${HMALLOC_BENCH_BUILD_DIR:-$root/build/bench}
threads=4
allocators=(hmalloc)
command_line="bench/atomics.sh $*"
multiarch=$(uname -m)-linux-gnu
declare -A preload=(
  [hmalloc]=""
  [jemalloc]="/usr/lib/$multiarch/libjemalloc.so.2"
  [tcmalloc]="/usr/lib/$multiarch/libtcmalloc_minimal.so.4"
  [mimalloc]="/usr/lib/$multiarch/libmimalloc.so.2"
)
# workload|threads ("T": --threads)|short -n|long -n
workloads_table="
churn|1|200000|600000
xthread|T|40000|120000
requests|T|10000|30000
prodcons|T|40000|120000
larson|T|80000|240000
"

die() {
  echo "bench/atomics.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --allocators) IFS=, read -ra allocators <<<"${2:?--allocators needs a list}"; shift ;;
    --threads) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--threads needs a number"; threads=$2; shift ;;
    --build-dir) build=${2:?--build-dir needs a directory}; shift ;;
    --source) source_dir=$(cd "${2:?--source needs a directory}" && pwd); shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
mkdir -p "$build"
build=$(cd "$build" && pwd)
preload[hmalloc]=$build/libhmalloc.so
for allocator in "${allocators[@]}"; do
  [ -n "${preload[$allocator]+set}" ] || die "unknown allocator '$allocator'"
done
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
command -v objdump >/dev/null || die "objdump is not installed (apt-get install binutils)"
[ "$(uname -m)" = x86_64 ] || die "counts x86_64 instructions only"

if [ ! -e "$build/libhmalloc.so" ] || [ ! -x "$build/bench/larson" ]; then
  mkdir -p "$build"
  echo "bench/atomics.sh: building hmalloc (Release) from $source_dir in $build"
  { cmake -S "$source_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHMALLOC_BENCH=ON \
      -DHMALLOC_TESTS=OFF && cmake --build "$build" -j"$(nproc)"; } >"$build/build.log" 2>&1 ||
    { cat "$build/build.log" >&2; die "build failed"; }
fi
for allocator in "${allocators[@]}"; do
  [ -e "${preload[$allocator]}" ] || die "$allocator: ${preload[$allocator]} not found"
done

out=$bench/results/atomics-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
rows=$out/rows.txt
: >"$rows"

# Runs one workload under callgrind; prints its ops= count. $1 allocator,
# $2 program, $3 threads, $4 -n, $5 output file.
callgrind_run() {
  local allocator=$1 program=$2 t=$3 n=$4 file=$5 output
  if ! output=$(LD_PRELOAD=${preload[$allocator]} valgrind --tool=callgrind --dump-instr=yes \
                  --dump-line=no --compress-strings=no --compress-pos=no \
                  --callgrind-out-file="$file" "$build/bench/$program" -t "$t" -n "$n" \
                  2>"$file.log"); then
    die "$allocator: $program -t $t -n $n failed under callgrind: $(tail -1 "$file.log")"
  fi
  grep -o 'ops=[0-9]*' <<<"$output" | cut -d= -f2 | grep . ||
    die "$program printed no ops= count"
}

echo "bench/atomics.sh: ${allocators[*]}; results in $out"
while IFS='|' read -r program t n_short n_long; do
  [ -n "$program" ] || continue
  [ "$t" = T ] && t=$threads
  for allocator in "${allocators[@]}"; do
    short=$out/$allocator-$program-$n_short.out
    long=$out/$allocator-$program-$n_long.out
    ops_short=$(callgrind_run "$allocator" "$program" "$t" "$n_short" "$short")
    ops_long=$(callgrind_run "$allocator" "$program" "$t" "$n_long" "$long")
    echo "$allocator $program $t $ops_short $ops_long $short $long" >>"$rows"
    echo "  $allocator $program -t $t: -n $n_short ($ops_short calls), -n $n_long ($ops_long calls)"
  done
done <<<"$workloads_table"

python3 - "$rows" "$out/atomics.md" "$(git -C "$source_dir" describe --always --dirty 2>/dev/null || echo '?')" \
  "$command_line" "$build/bench/" <<'EOF'
"""Sums the executions of atomic RMW instructions from callgrind outputs."""
import collections
import os
import re
import subprocess
import sys

rows_path, md_path, version, command, programs = sys.argv[1:6]
ATOMIC = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
# libc, the loader, valgrind's preloads and the workload are not the allocator.
LIBC = re.compile(r"/(libc\.so|ld-linux|vgpreload_)[^/]*$")


def not_allocator(path):
    return bool(LIBC.search(path)) or path.startswith(programs)
atomics_of = {}  # object path -> {address: kind}


def kind_of(text):
    """The kind of an atomic RMW instruction, or None (objdump AT&T text)."""
    words = text.split()
    if not words:
        return None
    if words[0] == "lock" or (len(words) > 1 and words[0] in ("xacquire", "xrelease") and words[1] == "lock"):
        op = words[words.index("lock") + 1] if words.index("lock") + 1 < len(words) else "?"
        if op.startswith("cmpxchg"):
            return "cmpxchg"
        if op.startswith("xadd"):
            return "xadd"
        return "other"
    if words[0].startswith("xchg") and "(" in text:
        return "xchg"
    return None


def atomics(path):
    if path not in atomics_of:
        found = {}
        listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", path],
                                 capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            match = ATOMIC.match(line)
            if match:
                kind = kind_of(match.group(2).split("#")[0])
                if kind:
                    found[int(match.group(1), 16)] = kind
        atomics_of[path] = found
    return atomics_of[path]


def count(path):
    """object -> kind -> executions, and function -> executions (allocator
    objects), from a callgrind output (positions: instr, uncompressed; a
    calls= line's next line is the call's inclusive cost)."""
    result = collections.defaultdict(collections.Counter)
    functions = collections.Counter()
    current, function, skip = None, None, False
    with open(path) as f:
        for line in f:
            if skip:
                skip = False
                continue
            if line.startswith("ob="):
                current = line[3:].strip()
                continue
            if line.startswith("fn="):
                function = line[3:].strip()
                continue
            if line.startswith("calls="):
                skip = True
                continue
            if not line.startswith("0x") or current is None or not os.path.exists(current):
                continue
            address, _, cost = line.partition(" ")
            kind = atomics(current).get(int(address, 16))
            if kind:
                result[current][kind] += int(cost.split()[0])
                if not not_allocator(current):
                    functions[function] += int(cost.split()[0])
    return result, functions


def allocator_kinds(counts):
    total = collections.Counter()
    for path, kinds in counts.items():
        if not not_allocator(path):
            total.update(kinds)
    return total


def libc_total(counts):
    return sum(sum(k.values()) for p, k in counts.items() if "/libc.so" in p)


lines = []
add = lines.append
add("Atomic read-modify-write instructions per malloc/free call (callgrind, "
    "hmalloc %s; `%s`)\n" % (version, command.strip()))
add("| workload | threads | allocator | atomics per call | cmpxchg | xchg | xadd | other lock | "
    "libc, any caller | objects counted |")
add("|---|---|---|---|---|---|---|---|---|---|")
where = []
with open(rows_path) as f:
    for line in f:
        allocator, program, threads, ops_short, ops_long, short, long = line.split()
        (a, fa), (b, fb) = count(short), count(long)
        calls = int(ops_long) - int(ops_short)
        ka, kb = allocator_kinds(a), allocator_kinds(b)
        per = {k: (kb[k] - ka[k]) / calls for k in ("cmpxchg", "xchg", "xadd", "other")}
        objects = sorted({os.path.basename(p) for p in list(a) + list(b) if not not_allocator(p)})
        add("| %s | %s | %s | **%.3f** | %.3f | %.3f | %.3f | %.3f | %.3f | %s |" % (
            program, threads, allocator, sum(per.values()), per["cmpxchg"], per["xchg"], per["xadd"],
            per["other"], (libc_total(b) - libc_total(a)) / calls, ", ".join(objects) or "-"))
        top = sorted(((fb[f] - fa.get(f, 0)) / calls, f) for f in fb)
        top = ["%s %.3f" % (f, v) for v, f in reversed(top) if v >= 0.0005][:4]
        where.append("- %s, %s threads, %s: %s" % (program, threads, allocator,
                                                   "; ".join(top) or "none"))
add("")
add("Where (atomics per call by function of the allocator, the four largest):\n")
lines.extend(where)
add("")
add("Per call: (atomics at the long -n minus at the short -n) / (calls at the long -n minus "
    "at the short -n); calls are the malloc and free calls each workload counted. cmpxchg, "
    "xadd, other lock: lock-prefixed instructions (other: add, sub, and, or, inc, dec, bts...; "
    "a seq_cst fence compiled as a locked op on the stack counts there); xchg: xchg with a "
    "memory operand. libc: the atomics executed in libc.so.6 by every caller (the workload's "
    "own barriers and thread start-up included), not part of the allocator's count.")
text = "\n".join(lines) + "\n"
with open(md_path, "w") as f:
    f.write(text)
print()
print(text)
EOF
echo "bench/atomics.sh: table in $out/atomics.md"
