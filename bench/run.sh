#!/usr/bin/env bash
# Compares hmalloc with other allocators on the whole-program workloads of
# bench/workloads. On a fresh Debian 12 machine, as root, installs what is
# missing first; then builds a Release hmalloc into build/bench and runs.
#
#   bench/run.sh [--runs N] [--quick] [--allocators a,b,...] [--workloads w,...]
#       Each workload under each allocator (LD_PRELOAD), interleaved run by
#       run (default: 5 runs of each; glibc and hmalloc); prints the median
#       wall time, peak RSS and CPU time per allocator and their ratios to
#       the first allocator (the baseline, glibc).
#   bench/run.sh --callgrind
#       Instructions per malloc(32)+free pair on the fast path, under
#       callgrind, for every allocator installed.
#
# Raw results go to bench/results/ (gitignored) as CSV. Exits non-zero when
# a workload fails its self-check (or crashes) under some allocator.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${HMALLOC_BENCH_BUILD_DIR:-$root/build/bench}
results=$root/bench/results
stamp=$(date +%Y%m%d-%H%M%S)

# --- What is compared ---------------------------------------------------------
# Allocators: a name and the library to LD_PRELOAD (none for glibc). The first
# allocator of a run is the baseline the ratios are taken against.
multiarch=$(uname -m)-linux-gnu # Debian's library directory, before gcc is installed
declare -A preload=(
  [glibc]=""
  [hmalloc]="$build/libhmalloc.so"
  [jemalloc]="/usr/lib/$multiarch/libjemalloc.so.2"
  [tcmalloc]="/usr/lib/$multiarch/libtcmalloc_minimal.so.4"
  [mimalloc]="/usr/lib/$multiarch/libmimalloc.so.2"
)
all_allocators=(glibc hmalloc jemalloc tcmalloc mimalloc)
wall_allocators=(glibc hmalloc)

# Workloads: a label and the command line of a program in <build>/bench.
declare -A workload_command=(
  [churn]="churn"
  [xthread-2]="xthread -t 2"
  [xthread-8]="xthread -t 8"
)
workloads=(churn xthread-2 xthread-8)

# Callgrind: fastpath at two loop lengths; the difference cancels start-up.
callgrind_short=100000
callgrind_long=200000

# Each run is bounded: a hung allocator fails the run instead of the job.
run_timeout=300

packages=(build-essential cmake pkg-config liburcu-dev libhwloc-dev libbenchmark-dev valgrind
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0)

# --- Helpers ------------------------------------------------------------------
usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
}

die() {
  echo "bench/run.sh: $*" >&2
  exit 1
}

install_missing() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "bench/run.sh: installing ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to install: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_hmalloc() {
  local log=$build/build.log
  mkdir -p "$build"
  echo "bench/run.sh: building hmalloc (Release) in $build"
  if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHMALLOC_BENCH=ON \
           -DHMALLOC_TESTS=OFF &&
         cmake --build "$build" -j"$(nproc)"; } >"$log" 2>&1; then
    cat "$log" >&2
    die "build failed"
  fi
}

# Splits a comma-separated list into the named array, checking each item is
# a key of the associative array `known`.
select_items() {
  local -n into=$1 known=$2
  local list=$3 item
  IFS=, read -ra into <<<"$list"
  for item in "${into[@]}"; do
    [ -n "${known[$item]+set}" ] || die "unknown name '$item' (known: ${!known[*]})"
  done
}

preload_available() {
  local lib=${preload[$1]}
  [ -z "$lib" ] || [ -e "$lib" ]
}

# Runs a program of <build>/bench under an allocator (an empty LD_PRELOAD, for
# glibc, preloads nothing). Its stdout goes to stdout, its stderr to file $2.
run_under() {
  local allocator=$1 errors=$2 program=$build/bench/$3
  shift 3
  LD_PRELOAD=${preload[$allocator]} timeout "$run_timeout" "$program" "$@" 2>"$errors"
}

# The median of the numbers on stdin, one a line.
median() {
  sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

describe_machine() {
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "glibc $(ldd --version | head -1 | awk '{print $NF}'), hmalloc $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')"
}

# --- Wall time and peak RSS ---------------------------------------------------
# The metrics read from a workload's result line, and how each is printed.
# time_s is the wall time; cpu_s (user+system) is steadier on a loaded machine.
metrics=(time_s rss_kb cpu_s)
declare -A metric_format=([time_s]=%.3f [rss_kb]=%.0f [cpu_s]=%.3f)

# values["metric workload allocator"]: the metric's values over the good runs,
# one a line; failure["workload allocator"]: why a run failed.
declare -A values=() failure=()

# Sets the array `measured` to the values of the metrics in the result line
# $1, in the order of `metrics`; fails if one is missing.
parse_result() {
  local line=" $1 " metric
  measured=()
  for metric in "${metrics[@]}"; do
    [[ $line =~ \ $metric=([0-9.]+)\  ]] || return 1
    measured+=("${BASH_REMATCH[1]}")
  done
}

run_wall() {
  local csv=$results/wall-$stamp.csv errors=$results/wall-$stamp.stderr
  local total=$((${#workloads[@]} * runs * ${#wall_allocators[@]})) done=0
  local workload run allocator key line command status i measured fields
  for allocator in "${wall_allocators[@]}"; do
    preload_available "$allocator" || die "$allocator: ${preload[$allocator]} not found"
  done
  mkdir -p "$results"
  echo "workload,allocator,run,$(IFS=,; echo "${metrics[*]}"),status" >"$csv"
  describe_machine
  echo "runs: $runs of each workload under each of: ${wall_allocators[*]} (interleaved)"
  for workload in "${workloads[@]}"; do
    read -ra command <<<"${workload_command[$workload]}"
    for ((run = 1; run <= runs; run++)); do
      for allocator in "${wall_allocators[@]}"; do
        done=$((done + 1))
        key="$workload $allocator"
        if line=$(run_under "$allocator" "$errors.one" "${command[@]}") && parse_result "$line"; then
          status=ok line=""
          for i in "${!metrics[@]}"; do
            values[${metrics[i]} $key]+="${measured[i]}"$'\n'
            line+="${metrics[i]}=${measured[i]} "
          done
          fields=$(IFS=,; echo "${measured[*]}") line=${line% }
        else
          status="FAILED (exit $?)"
          fields=$(printf ',%.0s' "${metrics[@]:1}") # the metrics' fields, empty
          failure[$key]=$(head -1 "$errors.one")
          line="$status ${failure[$key]}"
        fi
        if [ -s "$errors.one" ]; then
          sed "s/^/$workload $allocator run $run: /" "$errors.one" >>"$errors"
        fi
        echo "$workload,$allocator,$run,$fields,$status" >>"$csv"
        printf '[%2d/%d] %-10s %-9s run %d/%d  %s\n' "$done" "$total" "$workload" "$allocator" \
          "$run" "$runs" "$line"
      done
    done
  done
  rm -f "$errors.one"
  [ -s "$errors" ] || rm -f "$errors"
  print_wall_summary
  echo "raw results: $csv"
  [ ${#failure[@]} -eq 0 ]
}

# Per workload and allocator: the median of each metric, then its ratio to
# the baseline allocator's median.
print_wall_summary() {
  local baseline=${wall_allocators[0]} workload allocator key metric median_value
  local -A base=()
  local -a row
  echo
  echo "medians of $runs runs (ratios: allocator / $baseline)"
  printf '%-10s %-9s' workload allocator
  printf ' %9s' "${metrics[@]}"
  printf ' %10s' "${metrics[@]/%_*/_ratio}"
  echo
  for workload in "${workloads[@]}"; do
    base=()
    for allocator in "${wall_allocators[@]}"; do
      key="$workload $allocator"
      printf '%-10s %-9s' "$workload" "$allocator"
      if [ -n "${failure[$key]+set}" ]; then
        printf ' FAILED: %s\n' "${failure[$key]}"
        continue
      fi
      row=()
      for metric in "${metrics[@]}"; do
        median_value=$(median <<<"${values[$metric $key]%$'\n'}")
        if [ "$allocator" = "$baseline" ]; then base[$metric]=$median_value; fi
        # shellcheck disable=SC2059 # the format comes from metric_format
        printf " %9s" "$(printf "${metric_format[$metric]}" "$median_value")"
        row+=("$(ratio "$median_value" "${base[$metric]:-0}")")
      done
      printf ' %10s' "${row[@]}"
      echo
    done
  done
}

# --- Callgrind: instructions per malloc+free ----------------------------------
# Total Ir of fastpath -n N, from the summary line of callgrind's output.
# Fails unless the preloaded library shows up among the objects callgrind saw
# (proof that the allocator, not glibc, served the calls). Reasons for a
# failure go to stderr.
callgrind_ir() {
  local allocator=$1 n=$2 out=$3 lib=${preload[$1]}
  if ! LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file="$out" \
         "$build/bench/fastpath" -n "$n" >/dev/null 2>"$out.log"; then
    echo "$allocator: fastpath -n $n failed under callgrind: $(tail -1 "$out.log")" >&2
    return 1
  fi
  # Objects are named at their first mention, as ob= or cob= (a callee's).
  if [ -n "$lib" ] && ! grep -E '^c?ob=' "$out" | grep -qF "$(basename "$lib")"; then
    echo "$allocator: $(basename "$lib") not among the objects callgrind saw" >&2
    return 1
  fi
  awk '/^summary:/ { print $2; found = 1 } END { exit !found }' "$out"
}

run_callgrind() {
  local dir=$results/callgrind-$stamp csv=$results/callgrind-$stamp.csv
  local allocator short long per_pair failed=0 allocators=()
  for allocator in "${all_allocators[@]}"; do
    if preload_available "$allocator"; then allocators+=("$allocator"); fi
  done
  mkdir -p "$dir"
  echo "allocator,n_short,ir_short,n_long,ir_long,ir_per_pair" >"$csv"
  echo "callgrind: fastpath -n $callgrind_short and -n $callgrind_long under: ${allocators[*]}"
  printf '%-9s %12s %12s %10s\n' allocator "Ir($callgrind_short)" "Ir($callgrind_long)" "Ir/pair"
  for allocator in "${allocators[@]}"; do
    if short=$(callgrind_ir "$allocator" "$callgrind_short" "$dir/$allocator-$callgrind_short.out") &&
       long=$(callgrind_ir "$allocator" "$callgrind_long" "$dir/$allocator-$callgrind_long.out"); then
      per_pair=$(awk -v a="$short" -v b="$long" -v n=$((callgrind_long - callgrind_short)) \
        'BEGIN { printf "%.1f", (b - a) / n }')
      printf '%-9s %12s %12s %10s\n' "$allocator" "$short" "$long" "$per_pair"
      echo "$allocator,$callgrind_short,$short,$callgrind_long,$long,$per_pair" >>"$csv"
    else
      printf '%-9s FAILED\n' "$allocator"
      echo "$allocator,$callgrind_short,,$callgrind_long,,FAILED" >>"$csv"
      failed=1
    fi
  done
  echo "raw results: $csv (callgrind outputs in $dir)"
  return $failed
}

# --- Main ---------------------------------------------------------------------
runs=5
mode=wall
while [ $# -gt 0 ]; do
  case $1 in
    --runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"; runs=$2; shift ;;
    --quick) runs=1 ;;
    --callgrind) mode=callgrind ;;
    --allocators) select_items wall_allocators preload "${2:-}"; shift ;;
    --workloads) select_items workloads workload_command "${2:-}"; shift ;;
    -h|--help) usage ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

install_missing
build_hmalloc
if [ "$mode" = callgrind ]; then
  run_callgrind
else
  run_wall
fi
