/* Shared helpers of the whole-program workloads: command line, a seeded
 * generator, block patterns that the workloads verify before every free,
 * and the one result line that bench/run.sh parses.
 *
 * The workloads call the standard malloc/free only, so the allocator under
 * test is chosen with LD_PRELOAD and nothing here depends on hmalloc. */
#ifndef HM_BENCH_COMMON_H
#define HM_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_args {
  unsigned threads;
  uint64_t iterations;
  uint64_t seed;
  const char *mode; /* -m MODE: a workload's variant (NULL: the default) */
};

/* Parses `NAME [-t THREADS] [-n ITERATIONS] [-s SEED] [-m MODE]`, starting
 * from the defaults already in *args; prints usage and exits 2 on a bad
 * option. */
void bench_parse_args(int argc, char **argv, struct bench_args *args);

/* splitmix64: a stateless mix (for values derived from a counter, so a
 * consumer can recompute what a producer made) and a stream built on it. */
uint64_t bench_mix(uint64_t x);

struct bench_rng {
  uint64_t state;
};

static inline uint64_t bench_rng_next(struct bench_rng *rng)
{
  rng->state += 0x9e3779b97f4a7c15ull;
  return bench_mix(rng->state);
}

/* A value in [lo, hi] from a 64-bit random value (the bias is negligible
 * for the small ranges used here). */
static inline size_t bench_in_range(uint64_t random, size_t lo, size_t hi)
{
  return lo + (size_t)(random % (hi - lo + 1));
}

/* Fills a block with a pattern unique to tag, and checks it is intact. */
void bench_fill(void *block, size_t size, uint64_t tag);
bool bench_intact(const void *block, size_t size, uint64_t tag);

/* The same for big blocks, sparsely: one word per 4 KiB page and the last
 * word. Every page is touched (the cost a program pays for fresh memory)
 * without the time going into memory bandwidth. size >= 8. */
void bench_fill_pages(void *block, size_t size, uint64_t tag);
bool bench_intact_pages(const void *block, size_t size, uint64_t tag);

/* A self-describing block: its tag and size in a 16-byte header, the
 * pattern of the tag after it, so whoever frees it can check it without
 * knowing who made it. bench_object_new rounds size up to the header's. */
void *bench_object_new(size_t size, uint64_t tag);
/* Verifies the object (failing the run, naming `holder`, if it changed)
 * and frees it. */
void bench_object_free(void *object, const char *holder);

/* The self-check failed or the program cannot go on: one stderr line, exit 1. */
__attribute__((noreturn, format(printf, 1, 2))) void bench_fail(const char *format, ...);

/* malloc that treats NULL as a failure of the run. */
void *bench_malloc(size_t size);

/* Runs body(items + i * item_size) for i < count. One item runs on the calling
 * thread, without creating any thread: a single-threaded process keeps the
 * single-thread fast paths some allocators have (glibc's SINGLE_THREAD_P). */
void bench_run_parallel(unsigned count, void *(*body)(void *), void *items, size_t item_size);

/* CLOCK_MONOTONIC in seconds. */
double bench_now(void);

/* The process's resident set now, in KiB (/proc/self/statm); -1 if unknown. */
long bench_rss_kb(void);

/* A size log-uniformly distributed in [lo, hi] (many small, few big), from a
 * 64-bit random value. */
size_t bench_log_uniform(uint64_t random, size_t lo, size_t hi);

/* Prints the result line
 *   workload=NAME threads=T iterations=N time_s=S rss_kb=K cpu_s=C
 * S: the wall time measured by the caller; K: the peak RSS of the process
 * (getrusage ru_maxrss); C: the process's user+system CPU time, which on a
 * loaded machine is steadier than the wall time. */
void bench_report(const char *name, const struct bench_args *args, double seconds);

/* The same, with extra " key=value" fields appended (extra may be NULL). */
void bench_report_extra(const char *name, const struct bench_args *args, double seconds,
                        const char *extra);

/* The same, with " ops=OPS ns_per_op=X" before extra: OPS the malloc and
 * free calls the workload made in the measured time (counted as they are
 * made, not derived from its parameters), X the wall time over OPS: the
 * time per allocator call of the whole process, all threads together. */
void bench_report_ops(const char *name, const struct bench_args *args, double seconds,
                      uint64_t ops, const char *extra);

#endif
