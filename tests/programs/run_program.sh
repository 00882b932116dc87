#!/usr/bin/env bash
# Runs a real program's workload twice, without and with libhmalloc.so
# preloaded, and checks that
#   - both runs succeed within a time limit and print the same output
#     (stderr too, apart from hmalloc's statistics lines);
#   - hmalloc served the allocations: HMALLOC_STATS=1 makes every preloaded
#     process print "hmalloc: stats: ..., mallocs N, ..." at exit, and the
#     busiest process must show at least the program's minimum of mallocs.
#
#   run_program.sh <python|sqlite|sort|git> <path to libhmalloc.so>
#
# Everything happens in a temporary directory removed on exit; no network.
# Each workload also runs this script (`--workload NAME DIR`), so under
# LD_PRELOAD the shell driving it allocates through hmalloc as well.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
TIME_LIMIT=60 # seconds per run; `timeout` kills the run's process group

export LC_ALL=C # byte order for sort, no translated messages
export PYTHONHASHSEED=0

# ---- workloads: each prints to stdout what must not depend on malloc ----

workload_python() {
  # Every allocation through malloc, not only those above pymalloc's 512 B.
  PYTHONMALLOC=malloc python3 "$here/alloc_heavy.py"
}

workload_sqlite() {
  sqlite3 "$1/test.db" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, payload TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, x % 97, 'name' || ((x * 7919) % 200003), (x * 31 % 1000) / 8.0,
                     substr(printf('%064d', x * x), 1, 8 + x % 57)
FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_grp_val ON t(grp, val);
SELECT grp, count(*), sum(val), min(name), max(name) FROM t GROUP BY grp ORDER BY grp LIMIT 12;
SELECT count(DISTINCT name), sum(length(payload)), avg(val) FROM t;
SELECT name, val FROM t WHERE name BETWEEN 'name1000' AND 'name1010' ORDER BY name;
SELECT grp, group_concat(id, ',') FROM (SELECT grp, id FROM t WHERE val > 124 ORDER BY id)
  GROUP BY grp ORDER BY grp LIMIT 3;
UPDATE t SET val = val * 2, payload = payload || payload WHERE grp IN (3, 5, 7);
DELETE FROM t WHERE id % 10 = 0;
SELECT count(*), total(val), sum(length(payload)) FROM t;
SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.grp = b.grp + 1
  GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 5;
VACUUM;
PRAGMA integrity_check;
SQL
}

workload_sort() {
  # 500k pseudo-random lines of words and numbers.
  # 500k pseudo-random lines of words and numbers (exact in awk's doubles).
  awk 'BEGIN { s = 12345; for (i = 0; i < 500000; i++) {
         s = (s * 69069 + 1) % 4294967296;
         printf "%d %d w%d\n", s, s % 1000, int(s / 7) % 5000 } }' >"$1/input"
  sort "$1/input" | sha256sum
  # A small buffer and two threads: temporary files and a threaded merge.
  sort -S 8M --parallel=2 -T "$1" -k2,2n -k3,3 "$1/input" | sha256sum
  sort -u -k3,3 "$1/input" | wc -l
  sort -s -k3,3 "$1/input" | sha256sum
  sort -k3,3 "$1/input" | uniq -c -f2 | sort -k1,1nr -k2 | sed -n 1,3p
}

workload_git() {
  export HOME="$1" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
  export GIT_AUTHOR_NAME=Tester GIT_AUTHOR_EMAIL=tester@example.com
  export GIT_COMMITTER_NAME=Tester GIT_COMMITTER_EMAIL=tester@example.com
  export GIT_AUTHOR_DATE='2024-01-01T00:00:00 +0000' GIT_COMMITTER_DATE='2024-01-01T00:00:00 +0000'
  git init -q -b main "$1/repo"
  cd "$1/repo"
  # 300 files in 10 directories, then a second commit touching 60 of them.
  mkdir d0 d1 d2 d3 d4 d5 d6 d7 d8 d9
  awk 'BEGIN { for (f = 0; f < 300; f++) {
         path = sprintf("d%d/file%03d.txt", f % 10, f);
         for (l = 0; l < 40 + f % 60; l++)
           printf "line %d of file %d: %d\n", l, f, (l * f * 40503) % 65536 > path;
         close(path) } }'
  git add -A
  git commit -q -m "Add 300 generated files"
  for f in $(seq 0 5 299); do echo "changed $f" >>"d$((f % 10))/file$(printf %03d "$f").txt"; done
  git rm -q d9/file299.txt
  git commit -q -a -m "Change 60 files, remove one"
  git log --stat
  git gc --quiet
  git fsck --full --no-progress
  git log --oneline --shortstat
  git diff --stat HEAD~1 HEAD | tail -1
  git grep -c 'changed' | sha256sum
  git rev-parse HEAD 'HEAD^{tree}'
}

if [ "${1:-}" = --workload ]; then
  "workload_$2" "$3"
  exit
fi

# ---- the comparison ----

if [ $# -ne 2 ]; then
  echo "usage: $0 <python|sqlite|sort|git> <path to libhmalloc.so>" >&2
  exit 2
fi
name=$1
lib=$(realpath "$2")
case $name in
  python | sqlite) min_mallocs=10000 ;;
  sort | git) min_mallocs=1000 ;;
  *) echo "run_program.sh: unknown program '$name'" >&2; exit 2 ;;
esac
[ -f "$lib" ] || { echo "run_program.sh: no library at $lib" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/plain" "$tmp/hmalloc"

fail() {
  echo "run_program.sh $name: FAIL: $*" >&2
  exit 1
}

# run_workload <dir> [env assignments...]: stdout and stderr into <dir>.
run_workload() {
  local dir=$1
  shift
  local status=0
  env "$@" timeout -k 5 "$TIME_LIMIT" "$self" --workload "$name" "$dir" \
    >"$dir.out" 2>"$dir.err" || status=$?
  if [ "$status" -ne 0 ]; then
    tail -20 "$dir.err" >&2
    [ "$status" -eq 124 ] && fail "$dir: still running after $TIME_LIMIT s"
    fail "$dir: the workload exited with status $status"
  fi
}

run_workload "$tmp/plain"
run_workload "$tmp/hmalloc" LD_PRELOAD="$lib" HMALLOC_STATS=1

if ! cmp -s "$tmp/plain.out" "$tmp/hmalloc.out"; then
  diff "$tmp/plain.out" "$tmp/hmalloc.out" | head -20 >&2 || true
  fail "the output differs under LD_PRELOAD=$lib"
fi
grep -v -e '^hmalloc: stats: ' -e '^hmalloc: arena ' "$tmp/hmalloc.err" >"$tmp/hmalloc.err.program" || true
if ! cmp -s "$tmp/plain.err" "$tmp/hmalloc.err.program"; then
  diff "$tmp/plain.err" "$tmp/hmalloc.err.program" | head -20 >&2 || true
  fail "stderr differs under LD_PRELOAD=$lib (hmalloc's statistics lines left out)"
fi

# coreutils close stderr in an atexit handler (gnulib's close_stdout), before
# hmalloc's statistics are written at exit: sort's own line is lost, the
# ones of the shell and awk remain. Check that sort maps the library.
if [ "$name" = sort ] && ! LD_PRELOAD="$lib" sort /proc/self/maps | grep -qF "$lib"; then
  fail "sort did not map $lib under LD_PRELOAD"
fi

stats=$(grep -c '^hmalloc: stats: ' "$tmp/hmalloc.err" || true)
[ "$stats" -gt 0 ] || fail "no 'hmalloc: stats:' line: was libhmalloc.so loaded?"
max_mallocs=$(sed -n 's/^hmalloc: stats: .*, mallocs \([0-9]*\),.*/\1/p' "$tmp/hmalloc.err" | sort -n | tail -1)
[ "${max_mallocs:-0}" -ge "$min_mallocs" ] ||
  fail "the busiest process made ${max_mallocs:-0} mallocs through hmalloc, expected >= $min_mallocs"
echo "run_program.sh $name: ok: same output; $stats processes reported hmalloc stats, the busiest $max_mallocs mallocs"
