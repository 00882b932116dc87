#!/usr/bin/env bash
# One run of Debian's redis-server under an allocator, driven by its own load
# tool, redis-benchmark, over loopback. bench/run.sh calls it once per
# allocator and run; it can be run alone:
#
#   bench/redis.sh [--quick] [--check] PRELOAD_LIBRARY [PORT]
#
# Starts redis-server (no persistence) on 127.0.0.1:PORT (default 6390) with
# LD_PRELOAD=PRELOAD_LIBRARY (only the server: the client runs as it is),
# waits for it to answer, runs the load passes below (each bounded by a
# timeout), reads the server's peak RSS (VmHWM) and stops it by its PID.
# Prints one line per redis-benchmark test (values of 4 KiB: NAME_4K),
#   test=NAME ops_per_s=R
# then the result line
#   workload=redis requests=N time_s=S ops_per_s=R rss_kb=K
# where R is all requests over all the passes' time. Exits non-zero if the
# server does not start, dies, or a pass fails.
#
# --check: instead, proves which allocator serves the server's malloc: runs
# it with LD_DEBUG=bindings and prints the library its `malloc` binds to
#   malloc_from=PATH
# and, under hmalloc (HMALLOC_STATS=1), the "hmalloc: stats:" line it prints
# at exit. (Debian's redis-server links jemalloc; LD_PRELOAD comes first in
# the symbol search order, so the preloaded malloc/free/realloc/
# malloc_usable_size serve it; glibc is preloaded as libc.so.6 for that.)
set -euo pipefail
quick=0 check=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --check) check=1 ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
preload=$1 port=${2:-6390}
work=$(mktemp -d /tmp/hm-redis.XXXXXX)
server_pid=""

# The load: small values over a large keyspace (the dataset grows), the
# list, set, hash and sorted-set commands, LRANGE replies (big reply
# buffers), then 4 KiB values. -P pipelines requests, so the server, not the
# loopback round trip, is the bottleneck on 2 cores.
if [ $quick = 1 ]; then requests=50000; else requests=200000; fi
passes=(
  "-t set,get,lpush,lpop,sadd,hset,zadd -r 1000000 -d 128 -c 50 -P 16 -n $requests"
  "-t lrange_100 -c 50 -P 4 -n $((requests / 10))"
  "-t set,get -r 100000 -d 4096 -c 50 -P 16 -n $((requests / 4))"
)
pass_timeout=120

fail() {
  echo "redis.sh: $*" >&2
  exit 1
}

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

# Starts the server with the environment given as arguments (NAME=VALUE...).
start_server() {
  env LD_PRELOAD="$preload" "$@" redis-server --port "$port" --bind 127.0.0.1 \
    --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" \
    --daemonize no --protected-mode yes 2>"$work/stderr" &
  server_pid=$!
  for _ in $(seq 100); do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || fail "server exited at start: $(tail -2 "$work/stderr" "$work/redis.log" 2>/dev/null)"
    sleep 0.1
  done
  fail "server did not answer PING in 10 s"
}

check_allocator() {
  start_server LD_DEBUG=bindings LD_DEBUG_OUTPUT="$work/bindings" HMALLOC_STATS=1
  redis-cli -p "$port" set hm-check value >/dev/null
  stop_server
  # "binding file /usr/bin/redis-server [0] to /path/lib.so [0]: normal symbol `malloc'"
  local from
  from=$(grep -h "binding file [^ ]*redis-server .*symbol \`malloc'" "$work"/bindings.* |
         head -1 | sed -E 's/.* to ([^ ]+) .*/\1/')
  [ -n "$from" ] || fail "no binding of malloc found in LD_DEBUG output"
  echo "malloc_from=$from"
  grep -h '^hmalloc: stats:' "$work/stderr" || true
}

# The value of option $1 in the pass $2 ("-n 1000 ..."), or nothing.
option_value() {
  local -a words
  read -ra words <<<"$2"
  local i
  for ((i = 0; i + 1 < ${#words[@]}; i++)); do
    [ "${words[i]}" = "$1" ] && echo "${words[i + 1]}" && return
  done
  return 0
}

run_load() {
  local total=0 start end pass name rps
  start_server
  start=$(date +%s.%N)
  for pass in "${passes[@]}"; do
    # shellcheck disable=SC2086 # a pass is a list of options
    timeout "$pass_timeout" redis-benchmark -p "$port" --csv $pass >"$work/pass.csv" 2>"$work/pass.err" ||
      fail "redis-benchmark $pass failed: $(tail -1 "$work/pass.err")"
    kill -0 "$server_pid" 2>/dev/null || fail "server died during: $pass"
    # CSV: "test","rps",...; the first line names the columns.
    # "LPUSH (needed to benchmark LRANGE)" fills the list: counted, not shown.
    while IFS=, read -r name rps _; do
      name=${name//\"/} rps=${rps//\"/}
      [ "$name" = test ] && continue
      total=$((total + $(option_value -n "$pass")))
      [[ $name == *"(needed"* ]] && continue
      name=${name%% (*}
      [ "$(option_value -d "$pass")" = 4096 ] && name+=_4K
      echo "test=$name ops_per_s=$rps"
    done <"$work/pass.csv"
  done
  end=$(date +%s.%N)
  local rss
  rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
  stop_server
  awk -v n="$total" -v s="$start" -v e="$end" -v k="$rss" \
    'BEGIN { printf "workload=redis requests=%d time_s=%.3f ops_per_s=%.0f rss_kb=%d\n", n, e - s, n / (e - s), k }'
}

command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
  fail "redis-server and redis-benchmark are needed (apt-get install redis-server)"
if [ $check = 1 ]; then check_allocator; else run_load; fi
