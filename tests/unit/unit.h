/* Helpers shared by the unit tests, besides those of every test directory
 * (test_common.h: CHECK, FAIL, run_threads): scaled rounds, waiting for a
 * flag, a per-thread random sequence. */
#ifndef HM_UNIT_H
#define HM_UNIT_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_common.h"

/* Iteration counts of the concurrent tests. Under ThreadSanitizer they run
 * some twenty times slower; fewer rounds keep them bounded, and TSan checks
 * the orderings of each round it sees. */
#ifdef __SANITIZE_THREAD__
#define UNIT_SCALE(n) ((n) / 8)
#else
#define UNIT_SCALE(n) (n)
#endif

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
