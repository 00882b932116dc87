#define _GNU_SOURCE
#include "test_common.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char *file, int line, const char *cond, const char *fmt, va_list ap)
{
  fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

void test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  report(file, line, cond, fmt, ap);
  va_end(ap);
  fflush(stdout);
  _exit(1);
}

void test_fail_no_flush(const char *file, int line, const char *cond, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  report(file, line, cond, fmt, ap);
  va_end(ap);
  _exit(1);
}

static const char *test_name;

void set_test_name(const char *name)
{
  test_name = name;
}

/* vsnprintf into a stack buffer and one write(2): no stdio lock (a fork
 * child's parent may have had threads holding it), no allocation. */
static void print_line(const char *kind, const char *fmt, va_list ap)
{
  char line[1024];
  const char *name = test_name ? test_name : program_invocation_short_name;
  int n = snprintf(line, sizeof line, "%s: %s", name, kind);
  if (n < 0 || (size_t)n >= sizeof line)
    n = 0;
  int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
  if (len > sizeof line - 2)
    len = sizeof line - 2;
  line[len++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, len);
  (void)ignored;
}

void fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  print_line("FAIL: ", fmt, ap);
  va_end(ap);
  _exit(1);
}

void note(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  print_line("", fmt, ap);
  va_end(ap);
}

uint64_t pattern_base(const void *addr, size_t size, uint64_t seed)
{
  struct rng r = {(uint64_t)(uintptr_t)addr ^ (size * 0xC2B2AE3D27D4EB4Full) ^ seed};
  return rng_next(&r);
}

void pattern_fill(void *p, size_t len, uint64_t base)
{
  uint8_t *b = p;
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = base + i * PATTERN_STEP;
    memcpy(b + i * 8, &w, 8);
  }
  uint64_t last = base + words * PATTERN_STEP;
  memcpy(b + words * 8, &last, len % 8);
}

size_t pattern_mismatch(const void *p, size_t len, uint64_t base)
{
  const uint8_t *b = p;
  size_t words = len / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w;
    memcpy(&w, b + i * 8, 8);
    if (w != base + i * PATTERN_STEP)
      return i * 8;
  }
  uint64_t last = base + words * PATTERN_STEP;
  if (memcmp(b + words * 8, &last, len % 8) != 0)
    return words * 8;
  return len;
}

void pattern_expect(const void *p, size_t len, uint64_t base, const char *where)
{
  size_t bad = pattern_mismatch(p, len, base);
  if (bad == len)
    return;
  size_t bad_words = 0;
  for (size_t off = bad; off + 8 <= len; off += 8)
    bad_words += pattern_mismatch((const uint8_t *)p + off, 8, base + off / 8 * PATTERN_STEP) == 0;
  uint64_t got = 0, want = base + bad / 8 * PATTERN_STEP;
  memcpy(&got, (const uint8_t *)p + bad, len - bad < 8 ? len - bad : 8);
  fail("%s: corrupted block %p (%zu bytes checked, pattern %#llx): first bad byte at offset "
       "%zu, word there %#llx, expected %#llx; %zu bad words",
       where, p, len, (unsigned long long)base, bad, (unsigned long long)got,
       (unsigned long long)want, bad_words);
}

double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void wait_fork_child(pid_t pid, unsigned fork_index, unsigned deadline_s)
{
  /* A pidfd becomes readable when the child exits: poll waits for that,
   * bounded, without a sleep. */
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0)
    fail("fork %u: pidfd_open(%d) failed: errno %d", fork_index, (int)pid, errno);
  struct pollfd exited = {.fd = fd, .events = POLLIN};
  int ready;
  while ((ready = poll(&exited, 1, (int)deadline_s * 1000)) < 0 && errno == EINTR) {
  }
  close(fd);
  int status;
  if (ready == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail("fork %u: child %d still running after %u s: deadlocked", fork_index, (int)pid,
         deadline_s);
  }
  if (waitpid(pid, &status, 0) != pid)
    fail("fork %u: waitpid(%d) failed: errno %d", fork_index, (int)pid, errno);
  if (WIFSIGNALED(status))
    fail("fork %u: child %d killed by signal %d", fork_index, (int)pid, WTERMSIG(status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("fork %u: child %d exited with status %d", fork_index, (int)pid, WEXITSTATUS(status));
}

/* Chunks without an early exit inside, so the loop vectorises: the tests
 * check hundreds of megabytes. */
#define CHUNK_WORDS 512

bool all_zero(const void *p, size_t n)
{
  const uint8_t *b = p;
  size_t words = n / 8;
  for (size_t start = 0; start < words; start += CHUNK_WORDS) {
    size_t end = words - start < CHUNK_WORDS ? words : start + CHUNK_WORDS;
    uint64_t any = 0;
    for (size_t w = start; w < end; w++) {
      uint64_t v;
      memcpy(&v, b + 8 * w, 8);
      any |= v;
    }
    if (any != 0)
      return false;
  }
  for (size_t i = 8 * words; i < n; i++)
    if (b[i] != 0)
      return false;
  return true;
}
