/* Configuration in set-user-ID and set-group-ID programs: like glibc's
 * tunables and secure_getenv, hmalloc ignores its environment variables
 * when the kernel runs the program in secure mode (AT_SECURE), so a user
 * cannot steer a privileged program's allocator. The test copies itself,
 * makes the copy set-user-ID and set-group-ID to nobody, and runs both with
 * HMALLOC_STATS=1 and a malformed HMALLOC_PURGE_DELAY_MS: the plain run
 * warns about the value and prints statistics at exit, the privileged run
 * prints nothing of hmalloc's. Needs root (to give the copy to nobody) and
 * a kernel that honours the set-user-ID bit there (not on a nosuid mount,
 * not under no_new_privs, nobody mapped in a user namespace): skipped
 * otherwise, as the child reports whether it ran in secure mode. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
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

/* Runs `program child` with the hmalloc variables set; its stderr, and in
 * *secure whether it ran in secure mode (its exit status says). */
static char *run(const char *program, bool *secure)
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
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) <= 1, "%s child: status %d, stderr: %s",
        program, status, out);
  *secure = WEXITSTATUS(status) == 1;
  return strdup(out);
}

/* A directory of this process's own (its pid in the name), for the copy. */
static char dir[64];
static char copy[sizeof dir + 16];

static void remove_copy(void)
{
  unlink(copy);
  rmdir(dir);
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "child") == 0) {
    void *volatile p = malloc(1000);
    free(p);
    return getauxval(AT_SECURE) != 0; /* 1: secure mode */
  }
  if (geteuid() != 0) {
    printf("test_setuid: skipped (needs root)\n");
    return SKIP;
  }
  bool secure;
  char *plain = run("/proc/self/exe", &secure);
  CHECK(!secure, "the plain run was in secure mode");
  CHECK(strstr(plain, "HMALLOC_PURGE_DELAY_MS=bogus") != NULL,
        "plain run: no warning about the malformed value; stderr: %s", plain);
  CHECK(strstr(plain, "hmalloc") != NULL && strlen(plain) > 200,
        "plain run: no statistics at exit; stderr: %s", plain);

  snprintf(dir, sizeof dir, "test_setuid_%ld", (long)getpid());
  /* (chmod: nobody must reach the copy whatever the umask.) */
  CHECK(mkdir(dir, 0755) == 0 && chmod(dir, 0755) == 0, "mkdir %s failed: %s", dir,
        strerror(errno));
  snprintf(copy, sizeof copy, "%s/privileged", dir);
  atexit(remove_copy);
  copy_file("/proc/self/exe", copy);
  if (chown(copy, NOBODY, NOBODY) != 0 || chmod(copy, 06755) != 0) {
    printf("test_setuid: skipped (cannot make the copy set-user-ID nobody: %s)\n", strerror(errno));
    return SKIP;
  }
  char path[4096];
  CHECK(getcwd(path, sizeof path - sizeof copy - 1) != NULL, "getcwd failed");
  strcat(strcat(path, "/"), copy);
  char *privileged = run(path, &secure);
  if (!secure) {
    printf("test_setuid: skipped (the kernel ran the set-user-ID copy without secure mode: a "
           "nosuid mount or no_new_privs)\n");
    return SKIP;
  }
  CHECK(strstr(privileged, "hmalloc") == NULL,
        "set-user-ID run: hmalloc read its environment; stderr: %s", privileged);
  printf("test_setuid: the plain run warned and printed statistics (%zu bytes); the "
         "set-user-ID run printed nothing\n",
         strlen(plain));
  return 0;
}
