/* A second free of a large block says "double free" until its granules
 * are reused (src/large.c: the first granule keeps pointing to the header,
 * marked freed), also when the freed run was purged in between: at the
 * free itself (HMALLOC_PURGE_DELAY_MS=0) or by a trim. A purge is not a
 * reuse. Each case runs in a child, which must die of SIGABRT after the
 * one line `hmalloc: free(): double free 0x...`. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "purge_common.h"

#define LARGE (1 * MiB)

static _Noreturn void free_twice(bool trim_between)
{
  /* A small block in use keeps the (one) region mapped through the trim:
   * pointers into a released region are rightly invalid. */
  void *keep = t_malloc(64);
  char *p = t_malloc(LARGE);
  CHECK(keep != NULL && p != NULL, "%s failed", T_NAMES);
  CHECK(((uintptr_t)keep ^ (uintptr_t)p) < 64 * MiB, "set-up: the large block %p is not in "
        "the region of the small one %p", (void *)p, keep);
  memset(p, 1, LARGE);
  t_free(p);
  if (trim_between)
    t_trim();
  t_free(p);
  fail("the second free of %p returned", (void *)p);
}

/* Runs free_twice in a child; returns its stderr (NUL-terminated). */
static void run_child(bool trim_between, char *err, size_t cap)
{
  int fds[2];
  CHECK(pipe(fds) == 0, "pipe failed");
  pid_t pid = fork();
  CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    free_twice(trim_between);
  }
  close(fds[1]);
  size_t len = 0;
  for (ssize_t n; len + 1 < cap && (n = read(fds[0], err + len, cap - 1 - len)) > 0;)
    len += (size_t)n;
  err[len] = '\0';
  close(fds[0]);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
        "a double free%s did not abort (status %#x); stderr: %s",
        trim_between ? " after a trim" : "", status, err);
}

int main(void)
{
  bool trim_between = purge_delay_ms() != 0; /* delay 0: the free purges */
  char err[512];
  run_child(trim_between, err, sizeof err);
  const char *how = trim_between ? "after a trim" : "with delay 0 (purged at the free)";
  CHECK(strstr(err, "hmalloc: free(): double free 0x") == err && strchr(err, '\n') != NULL &&
            strchr(err, '\n')[1] == '\0',
        "a double free of a large block %s printed: %s", how, err);
  note("a double free of a purged large block %s: %s", how, err);
  return 0;
}
