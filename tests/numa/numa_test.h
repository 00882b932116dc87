/* Helpers shared by the NUMA topology tests (assertions: test_common.h):
 * scenarios run in forked children with their own environment and
 * a bounded wait, CPU pinning, stderr capture and /proc queries. */
#ifndef NUMA_TEST_H
#define NUMA_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* CHECK: where and what failed, then _exit(1); safe from any thread. */
#include "test_common.h"

/* A scenario runs in a child forked from the (single-threaded, untouched)
 * test process, so each one starts the topology afresh. `env` holds up to
 * 7 "NAME=value" strings set after every HWLOC_* and HMALLOC_NUMA variable
 * was removed. */
struct scenario {
  const char *name;
  void (*run)(void);
  const char *env[8];
};

/* Runs every scenario (or only the one named by argv[1]), each bounded by
 * `timeout_s` (the child is killed by PID past it); prints PASS/FAIL lines
 * and "N passed, N failed". Returns the exit status for main. */
int run_scenarios(const struct scenario *scenarios, size_t count, int argc, char **argv,
                  int timeout_s);

/* Waits for `pid` at most `timeout_s`; on timeout kills it (SIGKILL, by
 * PID) and reaps it. Returns the wait status, or -1 on timeout. */
int wait_child(pid_t pid, int timeout_s);

/* Removes every HWLOC_* variable and HMALLOC_NUMA, then sets `env`. */
void set_test_env(const char *const *env);

/* The CPUs this process may run on (at most `max`), and pinning to one. */
int allowed_cpus(int *cpus, int max);
void pin_to_cpu(int cpu);

/* Whether /proc/self/maps mentions `needle` (e.g. "libhwloc"). */
bool maps_contain(const char *needle);
/* Threads of this process (/proc/self/task). */
int thread_count(void);
/* The /proc/self/numa_maps line of the mapping that holds `p`, into
 * `line`; false if there is none. */
bool numa_maps_line(const void *p, char *line, size_t cap);

/* Sends stderr to a temporary file until capture_stderr_end, which puts it
 * back and returns what was written (NUL-terminated, truncated to cap). */
void capture_stderr_begin(void);
const char *capture_stderr_end(char *buf, size_t cap);
/* Lines of `text` containing `needle`; lines of text in all. */
int count_lines_with(const char *text, const char *needle);
int count_lines(const char *text);

/* A fresh anonymous mapping nobody has touched, and its release. */
void *fresh_mapping(size_t size);
void drop_mapping(void *p, size_t size);

#endif
