#!/usr/bin/env bash
# Compares hmalloc with glibc, jemalloc, tcmalloc and mimalloc, side by side.
# On a fresh Debian 12 machine, as root, installs what is missing first; then
# builds a Release hmalloc and the benchmarks into build/bench and runs them.
#
#   bench/run.sh [options]
#     --allocators a,b,...  among glibc hmalloc jemalloc tcmalloc mimalloc (all)
#     --workloads w,...     families (churn, micro, redis, ...) or single
#                           variants (churn-t8); see --list
#     --threads 1,2,8,32    thread counts of the threaded workloads (their
#                           defaults otherwise; counts below a workload's
#                           minimum are skipped)
#     (no option)           the representative subset, 3 runs: about 8
#                           minutes (estimated from per-run times at load
#                           average 12-52)
#     --full                every family, at 1 to 64 threads on the cross-thread
#                           ones, redis and every micro-benchmark, 5 runs
#                           (about 40 minutes on 2 quiet cores, estimated)
#     --quick               1 run of a subset, a short redis load (< 3 min)
#     --scaling             only the cross-thread families (xthread, requests,
#                           prodcons, larson) at 1, 2, 4, 8, 16, 32, 64 threads:
#                           the scaling table and chart of ns per malloc/free
#     --runs N              runs of each, interleaved (default 3; --full 5,
#                           --quick 1); medians
#     --callgrind           only the callgrind count (same as --workloads callgrind)
#     --build-dir DIR       where to build (default build/bench; or
#                           HMALLOC_BENCH_BUILD_DIR)
#     --source DIR          the hmalloc tree to build (default this checkout)
#     --report DIR          also copy the summary, charts and raw results to DIR
#     --list                print the workload variants and exit
#
# Every variant runs under every allocator in the same run, interleaved run by
# run (A B C D E A B C D E ...). Each result row gives the median of the runs
# and its ratio to the best allocator of the row (1.00 = best; larger is
# worse; for throughput, best / this). A summary line per allocator is the
# geometric mean of its ratios. A run that crashes or fails its self-check
# shows FAILED on its row; the run goes on, and the script exits non-zero.
#
# Results go to bench/results/<date>/ (gitignored): runs.csv (every run),
# results.json (machine, versions, runs, medians), summary.md, charts (PNG and
# SVG per workload family); bench/results/summary.md is the latest summary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=$root/bench
source_dir=$root
build=${HMALLOC_BENCH_BUILD_DIR:-$root/build/bench}
stamp=$(date +%Y%m%d-%H%M%S)
command_line="bench/run.sh $*"

# --- What is compared ---------------------------------------------------------
# Allocators: a name and the library to LD_PRELOAD. glibc preloads libc.so.6
# itself: for the workloads that changes nothing, and it makes a program that
# links another allocator (Debian's redis-server links jemalloc) use glibc's.
multiarch=$(uname -m)-linux-gnu # Debian's library directory, before gcc is installed
declare -A preload=(
  [glibc]="/lib/$multiarch/libc.so.6"
  [hmalloc]="" # set once the build directory is known
  [jemalloc]="/usr/lib/$multiarch/libjemalloc.so.2"
  [tcmalloc]="/usr/lib/$multiarch/libtcmalloc_minimal.so.4"
  [mimalloc]="/usr/lib/$multiarch/libmimalloc.so.2"
)
all_allocators=(glibc hmalloc jemalloc tcmalloc mimalloc)
allocators=("${all_allocators[@]}")
# The Debian package each allocator comes from, for the versions recorded.
declare -A allocator_package=([glibc]=libc6 [jemalloc]=libjemalloc2
  [tcmalloc]=libtcmalloc-minimal4 [mimalloc]=libmimalloc2.0)

# Workload families, in the order they run:
#   family|kind|minimum threads|full|default|quick|command
# kind: workload (a program of <build>/bench printing a result line), micro
# (Google Benchmark), server (bench/redis.sh), timeline (burst -m timeline,
# once per allocator), callgrind (instructions per malloc+free, once; the
# command is a list of programs, a row each: see callgrind_counts).
# full, default, quick: the thread counts of the family in --full, in the
# default run and in --quick; "-": in that run, without -t (the family takes
# none); empty: not in that run. A family named by --workloads runs at the
# counts of the run chosen, or at its --full counts if that run leaves it out.
# --full covers 1 to 64 threads on the cross-thread families (xthread,
# requests, prodcons, larson: the scaling table) and 1, 2, 8, 32 elsewhere;
# the default run is the representative subset (3 runs): fast path,
# cross-thread at 2 and 32 threads, server-like requests, latency, large
# blocks, and memory return (the timeline; burst's peak and idle RSS are in
# --quick and --full): about 8 minutes, estimated from the per-run times of
# bench/report/issue9/default on the 2 loaded cores here (large and the
# timeline are half of it); --full takes ~40. --threads 1,2,8,32 runs every count on
# every threaded family chosen (their minimum allowing). The counts of
# atomic instructions per call are bench/atomics.sh's.
families_table="
churn|workload|1|1|1|1|churn
xthread|workload|1|1 2 4 8 16 32 64|2 32|2|xthread
requests|workload|1|1 2 4 8 16 32 64|8|8|requests
prodcons|workload|2|1 2 4 8 16 32 64|2|2|prodcons
larson|workload|1|1 2 4 8 16 32 64|2|2|larson
latency|workload|1|2 8|2|2|latency
falseshare|workload|2|2||2|falseshare
mixed|workload|1|1 8||1|mixed
threadchurn|workload|1|32|||threadchurn
burst|workload|-|-||-|burst
large|workload|1|1|1|1|large
batchfree|workload|-|-|-|-|batchfree
batchfree-random|workload|-|-|||batchfree -m random
heapreq|workload|1|1 4|4|1|heapreq
heapreq-malloc|workload|1|1 4|||heapreq -m malloc
micro|micro|-|-||-|micro
redis|server|-|-||-|redis
timeline|timeline|-|-|-||burst -m timeline
callgrind|callgrind|-|-|-||fastpath fastpath:batch fastpath:sized batchfree fastpath:align64 fastpath:malloc64 fastpath:align4096 fastpath:malloc4096
"
# The cross-thread families, run at these counts by --scaling.
scaling_families=xthread,requests,prodcons,larson
scaling_threads=1,2,4,8,16,32,64

# Callgrind: each program at two counts (-n); the difference in instructions
# over the difference in malloc+free pairs cancels start-up. Per program:
# "short long pairs-per-count what"; PROGRAM:MODE runs PROGRAM -m MODE.
# fastpath: one malloc(32)+free per iteration; :batch, 64 pairs of 16..128 B
# per iteration, all 64 allocated before the frees; :sized, free_sized.
# batchfree: 16384 pairs per round; from round 3 on, a round reuses the
# memory of the previous one (steady state). :alignN against :mallocN, the
# cost of aligned_alloc over malloc of the same size.
declare -A callgrind_counts=(
  [fastpath]="100000 200000 1 malloc(32)+free"
  [fastpath:batch]="2000 4000 64 pair of a batch of 64 (16..128 B)"
  [fastpath:sized]="100000 200000 1 malloc(32)+free_sized"
  [batchfree]="4 12 16384 batchfree pair (64 B, freed in allocation order)"
  [fastpath:align64]="50000 100000 1 aligned_alloc(64, 64)+free"
  [fastpath:malloc64]="50000 100000 1 malloc(64)+free"
  [fastpath:align4096]="50000 100000 1 aligned_alloc(4096, 4096)+free"
  [fastpath:malloc4096]="50000 100000 1 malloc(4096)+free"
)
# Google Benchmark: time per benchmark (seconds); --quick runs a subset.
micro_min_time=0.05
micro_quick_filter='BM_malloc_free/(16|256|4096|65536|1048576)$|BM_batch_random/64|BM_producer'

# Each run is bounded: a hung allocator fails the run instead of the job
# (HMALLOC_BENCH_TIMEOUT seconds, default 300).
run_timeout=${HMALLOC_BENCH_TIMEOUT:-300}

packages=(build-essential cmake pkg-config libhwloc-dev libbenchmark-dev valgrind
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 gnuplot-nox python3 redis-server)

# --- Helpers ------------------------------------------------------------------
usage() {
  # The comment at the top of this file, up to the first line of code.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
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
  # Installing redis-server starts its service where systemd runs; the
  # benchmark starts its own server on another port.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_hmalloc() {
  local log=$build/build.log
  mkdir -p "$build"
  echo "bench/run.sh: building hmalloc (Release) from $source_dir in $build"
  if ! { cmake -S "$source_dir" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHMALLOC_BENCH=ON \
           -DHMALLOC_TESTS=OFF &&
         cmake --build "$build" -j"$(nproc)"; } >"$log" 2>&1; then
    cat "$log" >&2
    die "build failed"
  fi
}

preload_available() {
  local lib=${preload[$1]}
  [ -z "$lib" ] || [ -e "$lib" ]
}

# Runs a program of <build>/bench under an allocator. Its stdout goes to
# stdout, its stderr to file $2.
run_under() {
  local allocator=$1 errors=$2 program=$build/bench/$3
  shift 3
  LD_PRELOAD=${preload[$allocator]} timeout "$run_timeout" "$program" "$@" 2>"$errors"
}

# --- The variants to run ------------------------------------------------------
# Each variant is a label (family, or family-tN) with its family, kind,
# thread count and command.
declare -A family_kind=() family_min=() family_full=() family_default=() family_quick=()
declare -A family_command=()
families=()
declare -A variant_family=() variant_threads=() variant_command=()
variants=()

read_families() {
  local family kind min full default quick command
  while IFS='|' read -r family kind min full default quick command; do
    [ -n "$family" ] || continue
    families+=("$family")
    family_kind[$family]=$kind family_min[$family]=$min family_full[$family]=$full
    family_default[$family]=$default family_quick[$family]=$quick
    family_command[$family]=$command
  done <<<"$families_table"
}

add_variant() {
  local label=$1 family=$2 threads=$3 command=$4
  variants+=("$label")
  variant_family[$label]=$family variant_threads[$label]=$threads
  variant_command[$label]=$command
}

# Expands families into variants: $1 the run (quick, default or full), $2 the
# --threads list or "", $3 1 if --workloads names the families (then a
# family that run leaves out runs at its --full counts).
expand_variants() {
  local mode=$1 thread_list=$2 named=$3 family threads t
  for family in "${families[@]}"; do
    case $mode in
      quick) threads=${family_quick[$family]} ;;
      default) threads=${family_default[$family]} ;;
      full) threads=${family_full[$family]} ;;
    esac
    [ -z "$threads" ] && [ "$named" = 1 ] && threads=${family_full[$family]}
    [ -n "$threads" ] || continue
    if [ "$threads" = - ]; then
      add_variant "$family" "$family" 1 "${family_command[$family]}"
      continue
    fi
    [ -n "$thread_list" ] && threads=${thread_list//,/ }
    for t in $threads; do
      [ "$t" -ge "${family_min[$family]}" ] || continue
      add_variant "$family-t$t" "$family" "$t" "${family_command[$family]} -t $t"
    done
  done
}

# Keeps the variants named (by label or family) in the comma list $1.
select_variants() {
  local -A wanted=()
  local name label kept=()
  IFS=, read -ra names <<<"$1"
  for name in "${names[@]}"; do
    # A variant at a count the run chosen does not have (latency-t8): made.
    if [ -z "${variant_family[$name]+set}" ] && [[ $name =~ ^(.+)-t([1-9][0-9]*)$ ]] &&
       [ -n "${family_kind[${BASH_REMATCH[1]}]+set}" ] &&
       [ "${family_full[${BASH_REMATCH[1]}]}" != - ] &&
       [ "${BASH_REMATCH[2]}" -ge "${family_min[${BASH_REMATCH[1]}]}" ]; then
      add_variant "$name" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" \
        "${family_command[${BASH_REMATCH[1]}]} -t ${BASH_REMATCH[2]}"
    fi
    [ -n "${family_kind[$name]+set}" ] || [ -n "${variant_family[$name]+set}" ] ||
      die "unknown workload '$name' (see --list)"
    wanted[$name]=1
  done
  for label in "${variants[@]}"; do
    if [ -n "${wanted[$label]+set}" ] || [ -n "${wanted[${variant_family[$label]}]+set}" ]; then
      kept+=("$label")
    fi
  done
  variants=("${kept[@]}")
  [ ${#variants[@]} -gt 0 ] || die "no workload left to run"
}

select_allocators() {
  local name
  IFS=, read -ra allocators <<<"$1"
  for name in "${allocators[@]}"; do
    [ -n "${preload[$name]+set}" ] || die "unknown allocator '$name' (known: ${all_allocators[*]})"
  done
}

kind_of() { echo "${family_kind[${variant_family[$1]}]}"; }

# Runs of a variant: timeline and callgrind are one per allocator.
runs_of() {
  case $(kind_of "$1") in
    timeline | callgrind) echo 1 ;;
    *) echo "$runs" ;;
  esac
}

# --- Raw results ----------------------------------------------------------------
# runs.csv: one row per run (and, for micro and redis, per benchmark or test).
csv_columns=(kind family workload threads allocator run status time_s cpu_s rss_kb idle_rss_kb
  ops_per_s ns_per_op ir_per_pair detail)
metric_columns=(time_s cpu_s rss_kb idle_rss_kb ops_per_s ns_per_op ir_per_pair)

# Appends a row: kind family workload threads allocator run status, then
# metric=value words (any of metric_columns), then the detail text in $8.
csv_row() {
  local kind=$1 family=$2 workload=$3 threads=$4 allocator=$5 run=$6 status=$7 metrics=$8
  local detail=${9:-} column
  local -A value=()
  local word
  for word in $metrics; do
    value[${word%%=*}]=${word#*=}
  done
  local row="$kind,$family,$workload,$threads,$allocator,$run,$status"
  for column in "${metric_columns[@]}"; do row+=",${value[$column]:-}"; done
  detail=${detail//\"/\'}
  echo "$row,\"$detail\"" >>"$csv"
}

# The metric=value words of a result line whose keys are metric columns.
metric_words() {
  local word words=() column
  for word in $1; do
    for column in "${metric_columns[@]}"; do
      [ "${word%%=*}" = "$column" ] && words+=("$word")
    done
  done
  echo "${words[*]}"
}

# The other key=value words a workload adds to its result line (heapreq's
# api=...), past the standard ones: kept in the detail column.
extra_words() {
  local word words=() column known
  for word in $1; do
    known=0
    case ${word%%=*} in workload | threads | iterations) known=1 ;; esac
    for column in "${metric_columns[@]}"; do
      [ "${word%%=*}" = "$column" ] && known=1
    done
    [ $known = 1 ] || words+=("$word")
  done
  echo "${words[*]}"
}

# --- Runners: each runs one variant once under one allocator, appends its
# rows to the CSV and prints a short result; non-zero when the run failed.
# $1 label, $2 allocator, $3 run number; $errors: a file for stderr.

# Why a run failed, from its exit code ($1) and its stderr ($errors).
failure_text() {
  local code=$1 why
  case $code in
    0) why="no result line" ;;
    124) why="timed out after ${run_timeout}s" ;;
    1[3-9][0-9] | 2[0-9][0-9]) why="killed by signal $((code - 128))" ;;
    *) why="exit $code" ;;
  esac
  echo "FAILED ($why) $(head -1 "$errors")"
}

run_workload() {
  local label=$1 allocator=$2 run=$3 family=${variant_family[$1]} output line extra code=0
  local -a command
  read -ra command <<<"${variant_command[$label]}"
  output=$(run_under "$allocator" "$errors" "${command[@]}") || code=$?
  line=$(grep '^workload=' <<<"$output" | tail -1)
  if [ $code -eq 0 ] && [[ $line == *time_s=* ]]; then
    extra=$(extra_words "$line")
    csv_row workload "$family" "$label" "${variant_threads[$label]}" "$allocator" "$run" ok \
      "$(metric_words "$line")" "$extra"
    echo "$(metric_words "$line")${extra:+ $extra}"
    return 0
  fi
  line=$(failure_text $code)
  csv_row workload "$family" "$label" "${variant_threads[$label]}" "$allocator" "$run" FAILED "" "$line"
  echo "$line"
  return 1
}

run_timeline() {
  local label=$1 allocator=$2 run=$3 output line code=0
  local -a command
  read -ra command <<<"${variant_command[$label]}"
  output=$(run_under "$allocator" "$errors" "${command[@]}") || code=$?
  line=$(grep '^workload=' <<<"$output" | tail -1)
  if [ $code -eq 0 ] && [ -n "$line" ]; then
    # sample t_s=T rss_kb=K phase=P -> allocator,t_s,rss_kb,phase
    grep '^sample ' <<<"$output" | sed -E "s/^sample t_s=([^ ]+) rss_kb=([^ ]+) phase=(.*)/$allocator,\1,\2,\3/" \
      >>"$out/timeline.csv"
    csv_row timeline timeline "$label" 1 "$allocator" "$run" ok "$(metric_words "$line")"
    echo "$(grep -c '^sample ' <<<"$output") samples, peak RSS $(metric_words "$line" | grep -o 'rss_kb=[0-9]*')"
    return 0
  fi
  line=$(failure_text $code)
  csv_row timeline timeline "$label" 1 "$allocator" "$run" FAILED "" "$line"
  echo "$line"
  return 1
}

run_micro() {
  local label=$1 allocator=$2 run=$3 json=$out/micro/$2-$3.json
  local -a filter=()
  [ "$mode" != full ] && filter=(--benchmark_filter="$micro_quick_filter")
  local code=0 line
  mkdir -p "$out/micro"
  run_under "$allocator" "$errors" micro --benchmark_min_time="$micro_min_time" \
    --benchmark_format=json "${filter[@]}" >"$json" || code=$?
  if [ $code -eq 0 ] && python3 "$bench/report.py" micro-rows "$json" "$allocator" "$run" >>"$csv"; then
    echo "$(grep -c '"name"' "$json") benchmarks"
    return 0
  fi
  line=$(failure_text $code)
  csv_row micro micro micro - "$allocator" "$run" FAILED "" "$line"
  echo "$line"
  return 1
}

run_server() {
  local label=$1 allocator=$2 run=$3 output line word
  local -a options=()
  [ "$mode" != full ] && options=(--quick)
  if output=$("$bench/redis.sh" "${options[@]}" "${preload[$allocator]}" 2>"$errors") &&
     line=$(grep '^workload=redis' <<<"$output"); then
    while read -r word rest; do
      csv_row server redis-tests "redis:${word#test=}" - "$allocator" "$run" ok "$rest"
    done < <(grep '^test=' <<<"$output")
    csv_row server redis redis - "$allocator" "$run" ok "$(metric_words "$line")"
    echo "$(metric_words "$line")"
    return 0
  fi
  csv_row server redis redis - "$allocator" "$run" FAILED "" "FAILED $(tail -1 "$errors")"
  echo "FAILED $(tail -1 "$errors")"
  return 1
}

# Total Ir of PROGRAM -n N, from the summary line of callgrind's output.
# Fails unless the preloaded library shows up among the objects callgrind saw
# (proof that the allocator, not glibc, served the calls). Reasons for a
# failure go to stderr.
callgrind_ir() {
  local allocator=$1 program=${2%%:*} n=$3 file=$4 lib=${preload[$1]} mode=()
  [[ $2 == *:* ]] && mode=(-m "${2#*:}")
  if ! LD_PRELOAD=$lib valgrind --tool=callgrind --callgrind-out-file="$file" \
         "$build/bench/$program" -n "$n" "${mode[@]}" >/dev/null 2>"$file.log"; then
    # (An allocator without free_sized: not a failure, nothing to count.)
    grep -q 'free_sized not found' "$file.log" && return 2
    echo "$allocator: $program -n $n failed under callgrind: $(tail -1 "$file.log")" >&2
    return 1
  fi
  # Objects are named at their first mention, as ob= or cob= (a callee's).
  if [ -n "$lib" ] && ! grep -E '^c?ob=' "$file" | grep -qF "$(basename "$lib")"; then
    echo "$allocator: $(basename "$lib") not among the objects callgrind saw" >&2
    return 1
  fi
  awk '/^summary:/ { print $2; found = 1 } END { exit !found }' "$file"
}

# One row per program of the variant's command (each under callgrind_counts);
# the results of all on one line. Non-zero if any failed.
run_callgrind() {
  local label=$1 allocator=$2 run=$3 dir=$out/callgrind program n_short n_long pairs what
  local short long per_pair failed=0 texts=() line one_errors=$errors.callgrind rc
  local -a programs
  read -ra programs <<<"${variant_command[$label]}"
  mkdir -p "$dir"
  : >"$errors"
  for program in "${programs[@]}"; do
    read -r n_short n_long pairs what <<<"${callgrind_counts[$program]}"
    rc=0
    short=$(callgrind_ir "$allocator" "$program" "$n_short" "$dir/$allocator-$program-$n_short.out" 2>"$one_errors") || rc=$?
    if [ $rc -eq 2 ]; then
      texts+=("$program: the allocator has no free_sized")
      continue
    fi
    if [ $rc -eq 0 ] &&
       long=$(callgrind_ir "$allocator" "$program" "$n_long" "$dir/$allocator-$program-$n_long.out" 2>"$one_errors"); then
      per_pair=$(awk -v a="$short" -v b="$long" -v n=$(((n_long - n_short) * pairs)) \
        'BEGIN { printf "%.1f", (b - a) / n }')
      csv_row callgrind callgrind "$program" 1 "$allocator" "$run" ok "ir_per_pair=$per_pair" \
        "Ir($n_short)=$short Ir($n_long)=$long"
      texts+=("$per_pair instructions per $what")
    else
      csv_row callgrind callgrind "$program" 1 "$allocator" "$run" FAILED "" "FAILED $(head -1 "$one_errors")"
      texts+=("$program FAILED $(head -1 "$one_errors")")
      cat "$one_errors" >>"$errors"
      failed=1
    fi
  done
  rm -f "$one_errors"
  line=$(printf '%s; ' "${texts[@]}")
  echo "${line%; }"
  return $failed
}

# --- The run --------------------------------------------------------------------
package_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"
}

# meta.env: what the results were measured on, read by report.py.
write_meta() {
  local allocator
  {
    echo "date=$(date -Iseconds)"
    echo "command=$command_line"
    echo "machine=$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "load_average_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs=$runs"
    # A dirty tree is identified by its diff, too.
    echo "hmalloc_diff_sha1=$(git -C "$source_dir" diff HEAD -- src arch include 2>/dev/null | sha1sum | cut -c1-12)"
    echo "allocators=${allocators[*]}"
    echo "hmalloc=$(git -C "$source_dir" describe --always --dirty 2>/dev/null || echo 'not a git checkout') ($source_dir)"
    for allocator in "${allocators[@]}"; do
      [ -n "${allocator_package[$allocator]+set}" ] &&
        echo "version_$allocator=${allocator_package[$allocator]} $(package_version "${allocator_package[$allocator]}")"
    done
    echo "version_compiler=$(cc --version | head -1)"
    echo "version_benchmark=libbenchmark-dev $(package_version libbenchmark-dev)"
    echo "version_redis=redis-server $(package_version redis-server)"
    echo "version_valgrind=valgrind $(package_version valgrind)"
  } >"$out/meta.env"
}

# Proves, once per allocator, which library serves redis-server's malloc,
# and that hmalloc served it (its stats line at exit).
check_server_allocators() {
  local allocator report
  for allocator in "${allocators[@]}"; do
    if report=$("$bench/redis.sh" --check "${preload[$allocator]}" 2>&1); then
      echo "redis-server under $allocator: $(tr '\n' ' ' <<<"$report")" | tee -a "$out/server-check.txt"
    else
      echo "redis-server under $allocator: check FAILED: $report" | tee -a "$out/server-check.txt"
    fi
  done
}

run_all() {
  local total=0 done=0 label allocator run n kind result status failed=0 runner
  for label in "${variants[@]}"; do total=$((total + $(runs_of "$label") * ${#allocators[@]})); done
  echo "$(IFS=,; echo "${csv_columns[*]}")" >"$csv"
  echo "allocator,t_s,rss_kb,phase" >"$out/timeline.csv"
  write_meta
  echo "machine: $(sed -n 's/^machine=//p' "$out/meta.env"), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "allocators: ${allocators[*]}; $total runs; results in $out"
  for label in "${variants[@]}"; do
    kind=$(kind_of "$label")
    [ "$kind" = server ] && check_server_allocators
    runner=run_$kind
    n=$(runs_of "$label")
    for ((run = 1; run <= n; run++)); do
      for allocator in "${allocators[@]}"; do
        done=$((done + 1))
        if result=$($runner "$label" "$allocator" "$run"); then status=0; else status=1; failed=1; fi
        if [ -s "$errors" ]; then
          sed "s/^/$label $allocator run $run: /" "$errors" >>"$out/stderr.txt"
        fi
        printf '[%3d/%d] %-14s %-9s run %d/%d  %s\n' "$done" "$total" "$label" "$allocator" \
          "$run" "$n" "$result"
      done
    done
  done
  rm -f "$errors"
  echo "load_average_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/meta.env"
  return $failed
}

# --- Main -----------------------------------------------------------------------
runs=""
mode=default
thread_list=""
workload_list=""
report_dir=""
list_only=0
while [ $# -gt 0 ]; do
  case $1 in
    --runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"; runs=$2; shift ;;
    --quick) mode=quick ;;
    --full) mode=full ;;
    --scaling) workload_list=$scaling_families thread_list=$scaling_threads ;;
    --callgrind) workload_list=callgrind ;;
    --allocators) select_allocators "${2:-}"; shift ;;
    --workloads) workload_list=${2:-}; shift ;;
    --threads) [[ ${2:-} =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--threads needs a list like 1,2,8"; thread_list=$2; shift ;;
    --build-dir) build=${2:?--build-dir needs a directory}; shift ;;
    --source) source_dir=$(cd "${2:?--source needs a directory}" && pwd); shift ;;
    --report) report_dir=${2:?--report needs a directory}; shift ;;
    --list) list_only=1 ;;
    -h|--help) usage ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
preload[hmalloc]=$build/libhmalloc.so

read_families
# Runs of each: --runs, else 1 (--quick), 3 (default) or 5 (--full).
if [ -z "$runs" ]; then
  case $mode in quick) runs=1 ;; default) runs=3 ;; full) runs=5 ;; esac
fi
# A named workload runs even if the run chosen would leave it out.
expand_variants "$mode" "$thread_list" "$([ -n "$workload_list" ] && echo 1 || echo 0)"
[ -n "$workload_list" ] && select_variants "$workload_list"
if [ $list_only = 1 ]; then
  for label in "${variants[@]}"; do printf '%-15s %s\n' "$label" "${variant_command[$label]}"; done
  exit 0
fi

install_missing
build_hmalloc
for allocator in "${allocators[@]}"; do
  preload_available "$allocator" || die "$allocator: ${preload[$allocator]} not found"
done
out=$bench/results/$stamp
csv=$out/runs.csv
errors=$out/stderr.one
mkdir -p "$out"
status=0
run_all || status=1
python3 "$bench/report.py" report "$out" || status=1
cp "$out/summary.md" "$bench/results/summary.md"
if [ -n "$report_dir" ]; then
  mkdir -p "$report_dir"
  cp "$out"/summary.md "$out"/runs.csv "$out"/results.json "$out"/timeline.csv "$report_dir"/
  cp "$out"/*.png "$out"/*.svg "$report_dir"/ 2>/dev/null || true
  [ -f "$out/server-check.txt" ] && cp "$out/server-check.txt" "$report_dir"/
  echo "report copied to $report_dir"
fi
echo "results: $out (summary: $out/summary.md)"
exit $status
