#define _GNU_SOURCE
#include "test_util.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* The pattern, eight bytes at a time: a different word at every position,
 * so a block shifted by any multiple of 8 bytes does not match itself. */
static inline uint64_t pattern_word(size_t w, uint8_t seed)
{
  return (w + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0x0101010101010101ull);
}

void tu_fill(void *p, size_t n, uint8_t seed)
{
  uint8_t *b = p;
  size_t words = n / 8;
  for (size_t w = 0; w < words; w++) {
    uint64_t v = pattern_word(w, seed);
    memcpy(b + 8 * w, &v, 8);
  }
  uint64_t tail = pattern_word(words, seed);
  memcpy(b + 8 * words, &tail, n % 8);
}

/* Chunks without an early exit inside, so the loop vectorises: the tests
 * check hundreds of megabytes. */
#define CHUNK_WORDS 512

bool tu_holds(const void *p, size_t n, uint8_t seed)
{
  const uint8_t *b = p;
  size_t words = n / 8;
  for (size_t start = 0; start < words; start += CHUNK_WORDS) {
    size_t end = words - start < CHUNK_WORDS ? words : start + CHUNK_WORDS;
    uint64_t diff = 0;
    for (size_t w = start; w < end; w++) {
      uint64_t v;
      memcpy(&v, b + 8 * w, 8);
      diff |= v ^ pattern_word(w, seed);
    }
    if (diff != 0)
      return false;
  }
  uint64_t tail = pattern_word(words, seed);
  return memcmp(b + 8 * words, &tail, n % 8) == 0;
}

static void child_main(int write_fd, void (*body)(void *), void *arg, unsigned timeout_s)
{
  dup2(write_fd, STDERR_FILENO);
  close(write_fd);
  alarm(timeout_s);
  body(arg);
  _exit(0);
}

void tu_run_child(void (*body)(void *), void *arg, unsigned timeout_s, struct tu_child *out)
{
  int fds[2];
  CHECK(pipe(fds) == 0, "pipe failed");
  fflush(NULL); /* nothing buffered may be written twice */
  pid_t pid = fork();
  CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    close(fds[0]);
    child_main(fds[1], body, arg, timeout_s);
  }
  close(fds[1]);
  out->err_len = 0;
  for (;;) {
    char chunk[512];
    ssize_t n = read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(n >= 0, "read from the child's stderr failed");
    if (n == 0)
      break;
    size_t room = sizeof out->err - 1 - out->err_len;
    size_t take = (size_t)n < room ? (size_t)n : room;
    memcpy(out->err + out->err_len, chunk, take);
    out->err_len += take;
  }
  out->err[out->err_len] = '\0';
  close(fds[0]);
  CHECK(waitpid(pid, &out->status, 0) == pid, "waitpid failed");
}

const char *tu_describe_status(int status, char *buf, size_t cap)
{
  if (WIFEXITED(status))
    snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, cap, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, cap, "status 0x%x", status);
  return buf;
}

/* Shared with the children: the pointer the fatal call was passed. */
static volatile uintptr_t *recorded;

void *tu_record(void *p)
{
  *recorded = (uintptr_t)p;
  return tu_opaque_ptr(p);
}

/* NULL if the child died as the case expects, else what went wrong. */
static const char *judge(const struct tu_death_case *c, const struct tu_child *r, char *why,
                         size_t cap)
{
  char status[64];
  if (!WIFSIGNALED(r->status) || WTERMSIG(r->status) != SIGABRT) {
    snprintf(why, cap, "ended with %s, expected SIGABRT",
             tu_describe_status(r->status, status, sizeof status));
    return why;
  }
  const char *newline = strchr(r->err, '\n');
  if (newline == NULL || newline[1] != '\0') {
    snprintf(why, cap, "stderr is not exactly one line");
    return why;
  }
  size_t len = 0;
  for (size_t i = 0; i < TU_MAX_OK && c->ok[i] != NULL && len == 0; i++)
    if (strncmp(r->err, c->ok[i], strlen(c->ok[i])) == 0)
      len = strlen(c->ok[i]);
  if (len == 0) {
    snprintf(why, cap, "the line does not start with \"%s\"%s", c->ok[0],
             c->ok[1] != NULL ? " (or the other forms accepted)" : "");
    return why;
  }
  char *end;
  uintmax_t printed = strtoumax(r->err + len, &end, 16);
  if (end == r->err + len || end != newline || printed != *recorded) {
    snprintf(why, cap, "the line does not end with the pointer passed, 0x%" PRIxPTR,
             (uintptr_t)*recorded);
    return why;
  }
  return NULL;
}

/* Before the cases: the children abort on purpose (no core files) and
 * record their pointer in memory shared with the parent. */
static void death_setup(void)
{
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  recorded =
      mmap(NULL, sizeof *recorded, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(recorded != MAP_FAILED, "mmap failed");
}

int tu_run_death_cases(const struct tu_death_case *cases, size_t n)
{
  death_setup();
  setvbuf(stdout, NULL, _IOLBF, 0);
  int failures = 0;
  for (size_t i = 0; i < n; i++) {
    const struct tu_death_case *c = &cases[i];
    static struct tu_child r;
    *recorded = 0;
    tu_run_child(c->body, NULL, 20, &r);
    char why[256];
    if (judge(c, &r, why, sizeof why) != NULL) {
      fprintf(stderr, "FAIL %s: %s; stderr was:\n%s\n", c->name, why, r.err);
      failures++;
    } else {
      printf("ok   %s: %s", c->name, r.err);
    }
  }
  if (failures)
    fprintf(stderr, "%d of %zu death tests failed\n", failures, n);
  return failures;
}

void tu_report_death_cases(const struct tu_death_case *cases, size_t n)
{
  death_setup();
  for (size_t i = 0; i < n; i++) {
    static struct tu_child r;
    tu_run_child(cases[i].body, NULL, 20, &r);
    /* The first line of stderr, its pointer cut off. */
    char line[160] = "";
    sscanf(r.err, "%159[^\n]", line);
    char *pointer = strstr(line, " 0x");
    if (pointer != NULL)
      *pointer = '\0';
    char status[64];
    if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      printf("| %s | not detected |\n", cases[i].name);
    else if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == TU_UNAVAILABLE)
      printf("| %s | (no such function) |\n", cases[i].name);
    else
      printf("| %s | %s: `%s` |\n", cases[i].name,
             tu_describe_status(r.status, status, sizeof status), line);
  }
}

size_t tu_vm_size(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f != NULL, "cannot open /proc/self/status");
  char line[256];
  size_t kib = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
      break;
  fclose(f);
  CHECK(kib != 0, "no VmSize in /proc/self/status");
  return kib * 1024;
}
