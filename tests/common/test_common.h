/* Helpers shared by every test directory: failure reports, a deterministic
 * random generator, the block contents pattern, a zero check and running a
 * function on several threads. hm_test() compiles test_common.c into every
 * test and puts this directory on the include path.
 *
 * CHECK(condition, printf-format, args...) fails unless the condition holds.
 * By default it reports "FAIL file:line: condition: message" through
 * test_fail(); a directory chooses otherwise by defining, before including
 * this header:
 *   TEST_CHECK_PLAIN     "<test>: FAIL: message" through fail(), with one
 *                        write(2) (purge, stress);
 *   TEST_CHECK_NO_FLUSH  as the default, without flushing stdout (api). */
#ifndef HM_TEST_COMMON_H
#define HM_TEST_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Prints "FAIL file:line: cond: message" on stderr, flushes stdout, then
 * _exit(1) (not exit(): other threads may still be running, or the check
 * may run in an atexit handler or a destructor). Safe from any thread. */
_Noreturn void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same without flushing stdout. */
_Noreturn void test_fail_no_flush(const char *file, int line, const char *cond, const char *fmt,
                                  ...) __attribute__((format(printf, 4, 5)));

/* Prints "<test>: FAIL: <message>" with write(2) (no stdio lock, no
 * allocation: it may run in a fork child or with a broken heap) and exits 1
 * at once, without running exit handlers while other threads still run. */
_Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One line "<test>: <message>" on stderr, the same way, for progress and
 * measurements. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The name fail() and note() print; by default the program's. */
void set_test_name(const char *name);

#if defined(TEST_CHECK_PLAIN)
#define CHECK(cond, ...) ((cond) ? (void)0 : fail(__VA_ARGS__))
#elif defined(TEST_CHECK_NO_FLUSH)
#define CHECK(cond, ...)                                                                           \
  ((cond) ? (void)0 : test_fail_no_flush(__FILE__, __LINE__, #cond, __VA_ARGS__))
#else
#define CHECK(cond, ...) ((cond) ? (void)0 : test_fail(__FILE__, __LINE__, #cond, __VA_ARGS__))
/* Fails unconditionally, for a branch that must not be reached. */
#define FAIL(...) test_fail(__FILE__, __LINE__, "unreachable", __VA_ARGS__)
#endif

/* splitmix64: small, fast, and the same sequence on every run. */
struct rng {
  uint64_t state;
};

static inline uint64_t rng_next(struct rng *r)
{
  uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
  return rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
  return lo + rng_below(r, hi - lo + 1);
}

/* Block contents: 64-bit word i of a block is base + i * PATTERN_STEP, with
 * base mixed from the block's address, its size and a seed; a last partial
 * word keeps its low-order bytes (byte j is byte j % 8 of word j / 8). A
 * block handed out twice, purged while in use or moved without its
 * contents shows up. */
#define PATTERN_STEP 0x9E3779B97F4A7C15ull

uint64_t pattern_base(const void *addr, size_t size, uint64_t seed);
/* Writes the pattern of `base` over the `len` bytes at p. */
void pattern_fill(void *p, size_t len, uint64_t base);
/* The offset of the first 8-byte word (or of the last partial one) of the
 * `len` bytes at p that differs from the pattern of `base`; len if none. */
size_t pattern_mismatch(const void *p, size_t len, uint64_t base);
/* Fails, with the first bad word and the count of bad ones, unless the
 * `len` bytes at p hold the pattern of `base` (a block, or where a realloc
 * moved it). `where` opens the message. */
void pattern_expect(const void *p, size_t len, uint64_t base, const char *where);

/* Seconds on the monotonic clock. */
double now_s(void);
/* Waits for the fork child `pid` (the fork_index-th): fails if it is killed
 * or exits non-zero, and kills it and fails if it still runs after
 * `deadline_s` seconds (a child that hangs is deadlocked). */
void wait_fork_child(pid_t pid, unsigned fork_index, unsigned deadline_s);

/* Whether the n bytes at p are all zero. */
bool all_zero(const void *p, size_t n);

/* Runs fn(args + i * arg_size) on `count` threads and waits for them all.
 * Inline, so that its checks are the including directory's CHECK. */
static inline void run_threads(unsigned count, void *(*fn)(void *), void *args, size_t arg_size)
{
  pthread_t threads[count];
  for (unsigned i = 0; i < count; i++) {
    int err = pthread_create(&threads[i], NULL, fn, (char *)args + i * arg_size);
    CHECK(err == 0, "pthread_create failed: %d", err);
  }
  for (unsigned i = 0; i < count; i++) {
    int err = pthread_join(threads[i], NULL);
    CHECK(err == 0, "pthread_join failed: %d", err);
  }
}

#endif
