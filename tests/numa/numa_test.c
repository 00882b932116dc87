#define _GNU_SOURCE
#include "numa_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int wait_child(pid_t pid, int timeout_s)
{
  const struct timespec tick = {0, 5 * 1000 * 1000};
  for (long waited_ms = 0; waited_ms <= timeout_s * 1000L; waited_ms += 5) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return status;
    CHECK(r == 0, "waitpid(%d): %s", (int)pid, strerror(errno));
    nanosleep(&tick, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

void set_test_env(const char *const *env)
{
  /* Collect the names first: unsetenv changes environ under the walk. */
  char names[64][64];
  int n = 0;
  for (char **e = environ; *e != NULL && n < 64; e++) {
    size_t len = strcspn(*e, "=");
    bool ours = strncmp(*e, "HWLOC_", 6) == 0 || strncmp(*e, "HMALLOC_NUMA=", 13) == 0;
    if (ours && len < sizeof names[0])
      snprintf(names[n++], sizeof names[0], "%.*s", (int)len, *e);
  }
  for (int i = 0; i < n; i++)
    unsetenv(names[i]);
  for (; env != NULL && *env != NULL; env++) {
    char name[64];
    size_t len = strcspn(*env, "=");
    CHECK(len < sizeof name && (*env)[len] == '=', "bad test variable %s", *env);
    snprintf(name, sizeof name, "%.*s", (int)len, *env);
    setenv(name, *env + len + 1, 1);
  }
}

static bool run_one(const struct scenario *s, int timeout_s)
{
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    set_test_env(s->env);
    s->run();
    fflush(stdout);
    _exit(0);
  }
  int status = wait_child(pid, timeout_s);
  bool ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (status == -1)
    printf("FAIL %s: no result after %d s; killed\n", s->name, timeout_s);
  else if (!ok && WIFSIGNALED(status))
    printf("FAIL %s: killed by signal %d\n", s->name, WTERMSIG(status));
  else
    printf("%s %s\n", ok ? "PASS" : "FAIL", s->name);
  fflush(stdout);
  return ok;
}

int run_scenarios(const struct scenario *scenarios, size_t count, int argc, char **argv,
                  int timeout_s)
{
  int passed = 0, failed = 0;
  for (size_t i = 0; i < count; i++) {
    if (argc > 1 && strcmp(argv[1], scenarios[i].name) != 0)
      continue;
    if (run_one(&scenarios[i], timeout_s))
      passed++;
    else
      failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}

int allowed_cpus(int *cpus, int max)
{
  cpu_set_t set;
  CHECK(sched_getaffinity(0, sizeof set, &set) == 0, "sched_getaffinity: %s", strerror(errno));
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
    if (CPU_ISSET(cpu, &set))
      cpus[n++] = cpu;
  return n;
}

void pin_to_cpu(int cpu)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "pin to CPU %d: %s", cpu, strerror(errno));
}

/* Reads a whole /proc file into buf (NUL-terminated). */
static size_t read_file(const char *path, char *buf, size_t cap)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
  size_t len = 0;
  ssize_t n;
  while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  buf[len] = '\0';
  return len;
}

bool maps_contain(const char *needle)
{
  static char maps[1 << 20];
  read_file("/proc/self/maps", maps, sizeof maps);
  return strstr(maps, needle) != NULL;
}

int thread_count(void)
{
  DIR *d = opendir("/proc/self/task");
  CHECK(d != NULL, "opendir /proc/self/task: %s", strerror(errno));
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

bool numa_maps_line(const void *p, char *line, size_t cap)
{
  static char maps[1 << 20];
  read_file("/proc/self/numa_maps", maps, sizeof maps);
  /* The mapping holding p: the line with the highest start not above it. */
  unsigned long best = 0;
  bool found = false;
  for (char *l = maps; *l != '\0';) {
    char *end = strchrnul(l, '\n');
    unsigned long start = strtoul(l, NULL, 16);
    if (start <= (uintptr_t)p && (!found || start > best)) {
      best = start;
      found = true;
      snprintf(line, cap, "%.*s", (int)(end - l), l);
    }
    l = *end ? end + 1 : end;
  }
  return found;
}

static int saved_stderr = -1;
static int capture_fd = -1;

void capture_stderr_begin(void)
{
  char path[] = "/tmp/numa-test-stderr-XXXXXX";
  capture_fd = mkstemp(path);
  CHECK(capture_fd >= 0, "mkstemp: %s", strerror(errno));
  unlink(path);
  fflush(stderr);
  saved_stderr = dup(STDERR_FILENO);
  CHECK(saved_stderr >= 0 && dup2(capture_fd, STDERR_FILENO) >= 0, "dup: %s", strerror(errno));
}

const char *capture_stderr_end(char *buf, size_t cap)
{
  fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  ssize_t n = pread(capture_fd, buf, cap - 1, 0);
  close(capture_fd);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

int count_lines_with(const char *text, const char *needle)
{
  int n = 0;
  for (const char *l = text; *l != '\0';) {
    const char *end = strchrnul(l, '\n');
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(end - l), l);
    if (strstr(line, needle) != NULL)
      n++;
    l = *end ? end + 1 : end;
  }
  return n;
}

int count_lines(const char *text)
{
  return count_lines_with(text, "");
}

void *fresh_mapping(size_t size)
{
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED, "mmap %zu: %s", size, strerror(errno));
  return p;
}

void drop_mapping(void *p, size_t size)
{
  munmap(p, size);
}
