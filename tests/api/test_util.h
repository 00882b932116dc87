/* Helpers shared by the tests of tests/api: assertions, byte patterns that
 * detect overlapping or moved blocks, values the compiler cannot see
 * through, and a runner for code that must live in a child process. */
#ifndef HM_API_TEST_UTIL_H
#define HM_API_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CHECK fails the test (exit status 1) with the location, the condition and
 * a printf-style explanation, without flushing stdout. Safe in atexit
 * handlers and destructors. */
#define TEST_CHECK_NO_FLUSH
#include "test_common.h"

/* Fills n bytes with a pattern that depends on the position and the seed,
 * so a block that moved, overlaps another or lost its tail is noticed. */
void tu_fill(void *p, size_t n, uint8_t seed);
/* The process's mapped address space (VmSize), in bytes. */
size_t tu_vm_size(void);
/* Whether p holds tu_fill's pattern over n bytes. */
bool tu_holds(const void *p, size_t n, uint8_t seed);
/* Whether n bytes are zero: all_zero, from test_common.h. */

/* The address is laundered: glibc declares aligned_alloc and memalign
 * with alloc_align, and GCC would otherwise fold the test to true. */
static inline bool tu_aligned(const void *p, size_t align)
{
  uintptr_t v = (uintptr_t)p;
  __asm__ volatile("" : "+r"(v));
  return (v & (align - 1)) == 0;
}

/* The value, hidden from the optimiser: keeps GCC from folding or warning
 * about a deliberately absurd size or a deliberately bad pointer. */
static inline size_t tu_opaque_size(size_t n)
{
  __asm__ volatile("" : "+r"(n));
  return n;
}

static inline void *tu_opaque_ptr(void *p)
{
  __asm__ volatile("" : "+r"(p));
  return p;
}

/* What a child run by tu_run_child did. */
struct tu_child {
  int status;     /* from waitpid */
  char err[8192]; /* its stderr, NUL-terminated (truncated if longer) */
  size_t err_len;
};

/* Runs body(arg) in a fork()ed child with stderr captured through a pipe.
 * The child exits 0 when body returns; SIGALRM ends it after `timeout_s`
 * seconds, so the run is bounded. Returns once the child is reaped. */
void tu_run_child(void (*body)(void *), void *arg, unsigned timeout_s, struct tu_child *out);
/* "exit 3", "signal 6 (Aborted)": for failure messages. */
const char *tu_describe_status(int status, char *buf, size_t cap);

/* A death test: body(NULL), in a child, must abort (SIGABRT) after exactly
 * one line on stderr that starts with one of ok[] and ends with the
 * pointer the body recorded with tu_record() before its fatal call. */
#define TU_MAX_OK 6
struct tu_death_case {
  const char *name;
  void (*body)(void *);
  const char *ok[TU_MAX_OK]; /* acceptable starts of the line, NULL-ended */
};

/* In a death test's body: records p as the pointer about to be passed to
 * the fatal call, and returns it hidden from the optimiser. */
void *tu_record(void *p);
/* Runs each case in a child (no core files), prints "ok" or "FAIL" and
 * the reason per case; returns the number of cases that failed. */
int tu_run_death_cases(const struct tu_death_case *cases, size_t n);
/* A death test's exit status when the function it calls is not in the
 * C library it runs on (free_sized before glibc 2.38). */
#define TU_UNAVAILABLE 77

/* Runs each case the same way and prints a table row per case: what the
 * allocator linked did (its one line, a signal, or nothing), for README's
 * table of misuses; asserts nothing. */
void tu_report_death_cases(const struct tu_death_case *cases, size_t n);

#endif
