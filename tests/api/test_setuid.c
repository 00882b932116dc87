/* Configuration in set-user-ID and set-group-ID programs: like glibc's
 * tunables and secure_getenv, hmalloc ignores its environment variables
 * when the kernel runs the program in secure mode (AT_SECURE), so a user
 * cannot steer a privileged program's allocator. The test copies itself,
 * makes the copy set-user-ID and set-group-ID to nobody, and runs both with
 * HMALLOC_STATS=1 and a malformed HMALLOC_PURGE_DELAY_MS: the plain run
 * warns about the value and prints statistics at exit, the privileged run
 * prints nothing of hmalloc's. Needs root (to give the copy to nobody);
 * skipped otherwise. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

#define SKIP 77
#define NOBODY 65534

static void copy_file(const char *from, const char *to)
{
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  CHECK(in >= 0 && out >= 0, "cannot copy %s to %s", from, to);
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    CHECK(write(out, buf, (size_t)n) == n, "short write to %s", to);
  CHECK(n == 0, "cannot read %s", from);
  close(in);
  close(out);
}

/* Runs `program child` with the hmalloc variables set; its stderr. */
static char *run(const char *program)
{
  int pipefd[2];
  CHECK(pipe(pipefd) == 0, "pipe failed");
  pid_t pid = fork();
  CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[0]);
    setenv("HMALLOC_STATS", "1", 1);
    setenv("HMALLOC_PURGE_DELAY_MS", "bogus", 1);
    execl(program, program, "child", (char *)NULL);
    _exit(127);
  }
  close(pipefd[1]);
  static char out[1 << 16];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof out - 1 && (n = read(pipefd[0], out + len, sizeof out - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = '\0';
  close(pipefd[0]);
  int status;
  CHECK(waitpid(pid, &status, 0) == pid, "waitpid failed");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s child: status %d, stderr: %s",
        program, status, out);
  return strdup(out);
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "child") == 0) {
    void *volatile p = malloc(1000);
    free(p);
    return 0;
  }
  if (geteuid() != 0) {
    printf("test_setuid: skipped (needs root)\n");
    return SKIP;
  }
  char copy[] = "test_setuid_privileged";
  copy_file("/proc/self/exe", copy);
  CHECK(chown(copy, NOBODY, NOBODY) == 0 && chmod(copy, 06755) == 0,
        "cannot make %s set-user-ID nobody", copy);

  char *plain = run("/proc/self/exe");
  CHECK(strstr(plain, "HMALLOC_PURGE_DELAY_MS=bogus") != NULL,
        "plain run: no warning about the malformed value; stderr: %s", plain);
  CHECK(strstr(plain, "hmalloc") != NULL && strlen(plain) > 200,
        "plain run: no statistics at exit; stderr: %s", plain);

  char path[4096];
  CHECK(getcwd(path, sizeof path - sizeof copy - 1) != NULL, "getcwd failed");
  strcat(strcat(path, "/"), copy);
  char *privileged = run(path);
  unlink(copy);
  CHECK(strstr(privileged, "hmalloc") == NULL,
        "set-user-ID run: hmalloc read its environment; stderr: %s", privileged);
  printf("test_setuid: the plain run warned and printed statistics (%zu bytes); the "
         "set-user-ID run printed nothing\n",
         strlen(plain));
  return 0;
}
