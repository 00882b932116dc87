/* Helpers shared by the unit tests: assertions that say what failed, and
 * running a function on several threads. */
#ifndef HM_UNIT_H
#define HM_UNIT_H

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Prints where and what failed, then exits with status 1. Safe from any
 * thread: the first failure ends the process. */
static inline _Noreturn __attribute__((format(printf, 4, 5))) void
unit_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stdout);
  _exit(1); /* not exit(): other threads may still be running */
}

/* CHECK(condition, printf-format, args...): fail with the message unless
 * the condition holds. */
#define CHECK(cond, ...)                                                                     \
  ((cond) ? (void)0 : unit_fail(__FILE__, __LINE__, #cond, __VA_ARGS__))

/* Iteration counts of the concurrent tests. Under ThreadSanitizer they run
 * some twenty times slower; fewer rounds keep them bounded, and TSan checks
 * the orderings of each round it sees. */
#ifdef __SANITIZE_THREAD__
#define UNIT_SCALE(n) ((n) / 8)
#else
#define UNIT_SCALE(n) (n)
#endif

/* Fails unconditionally, for a branch that must not be reached. */
#define FAIL(...) unit_fail(__FILE__, __LINE__, "unreachable", __VA_ARGS__)

/* Runs fn(arg_of(i)) on `count` threads and waits for them all. `args` is
 * an array of `count` elements of `arg_size` bytes, one per thread. */
static inline void unit_run_threads(unsigned count, void *(*fn)(void *), void *args,
                                    size_t arg_size)
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

/* Spins until *flag reaches `value`. After a while it yields, so that a
 * waiter does not starve the thread it waits for when cores are short. */
static inline void unit_wait_for(_Atomic unsigned *flag, unsigned value)
{
  for (unsigned spins = 0; atomic_load_explicit(flag, memory_order_acquire) != value; spins++)
    if (spins > 4096)
      sched_yield();
}

/* xorshift64*: a cheap per-thread random sequence; *state must not be 0. */
static inline uint64_t unit_rand(uint64_t *state)
{
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* One line of progress on stdout; ctest shows it with --output-on-failure
 * or -V. */
#define UNIT_PASS(what) printf("ok: %s\n", what)

#endif
