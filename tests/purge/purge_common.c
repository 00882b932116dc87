#define _GNU_SOURCE
#include "purge_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Reads a /proc file into buf (NUL-terminated, truncated to cap - 1) or,
 * with a NULL buf, counts its lines; read(2) only: nothing allocates. */
static size_t read_proc(const char *path, char *buf, size_t cap)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0, "cannot open %s: errno %d", path, errno);
  char chunk[4096];
  size_t len = 0, lines = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR)
      continue;
    CHECK(n >= 0, "read of %s failed: errno %d", path, errno);
    if (n == 0)
      break;
    for (ssize_t i = 0; i < n; i++)
      lines += chunk[i] == '\n';
    if (buf != NULL && len + 1 < cap) {
      size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
      memcpy(buf + len, chunk, take);
      len += take;
    }
  }
  close(fd);
  if (buf != NULL)
    buf[len] = '\0';
  return lines;
}

size_t rss_bytes(void)
{
  char buf[256];
  read_proc("/proc/self/statm", buf, sizeof buf);
  unsigned long size, resident;
  CHECK(sscanf(buf, "%lu %lu", &size, &resident) == 2, "cannot parse /proc/self/statm: %s",
        buf);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

size_t maps_lines(void)
{
  return read_proc("/proc/self/maps", NULL, 0);
}

long minor_faults(void)
{
  struct rusage ru;
  CHECK(getrusage(RUSAGE_SELF, &ru) == 0, "getrusage failed");
  return ru.ru_minflt;
}

unsigned thread_count(void)
{
  /* num_threads of /proc/self/stat: listing /proc/self/task would take
   * opendir, which allocates. */
  char buf[1024];
  read_proc("/proc/self/stat", buf, sizeof buf);
  /* Field 20 (num_threads); the command (field 2) ends at the last ')'. */
  const char *p = strrchr(buf, ')');
  CHECK(p != NULL, "cannot parse /proc/self/stat");
  unsigned field = 2, threads = 0;
  for (; *p && field < 20; p++)
    if (*p == ' ')
      field++;
  CHECK(sscanf(p, "%u", &threads) == 1, "no thread count in /proc/self/stat");
  return threads;
}

size_t max_map_count(void)
{
  char buf[64];
  read_proc("/proc/sys/vm/max_map_count", buf, sizeof buf);
  return (size_t)strtoul(buf, NULL, 10);
}

double mib(size_t bytes)
{
  return (double)bytes / (double)MiB;
}

int64_t purge_delay_ms(void)
{
  const char *v = getenv("HMALLOC_PURGE_DELAY_MS");
  CHECK(v != NULL && *v != '\0', "HMALLOC_PURGE_DELAY_MS must be set (the test's ENV)");
  return strtoll(v, NULL, 10);
}

bool background_thread(void)
{
  const char *v = getenv("HMALLOC_BACKGROUND_THREAD");
  return v != NULL && strcmp(v, "1") == 0;
}

bool test_mode_is(const char *mode)
{
  const char *v = getenv("PURGE_TEST_MODE");
  return v != NULL && strcmp(v, mode) == 0;
}

void sleep_ms(int64_t ms)
{
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void slow_path(void)
{
  char *volatile p = t_malloc(256 * KiB);
  CHECK(p != NULL, "%s(256 KiB) failed", T_NAMES);
  p[0] = 1;
  t_free(p);
}

/* One round: sleep a delay and a bit (a pass runs at most once per delay,
 * on a clock that may be a tick, 4 ms, coarse), then take a slow path
 * unless the background thread runs the passes. */
static void purge_round(void)
{
  sleep_ms(purge_delay_ms() + 20);
  if (!background_thread())
    slow_path();
}

void wait_for_purge(int rounds)
{
  for (int i = 0; i < rounds; i++)
    purge_round();
}

/* Waits `rounds`, then more while measure() is above `bound`; returns it. */
static size_t wait_below(size_t (*measure)(void), size_t bound, int rounds)
{
  wait_for_purge(rounds);
  int64_t waited = rounds * (purge_delay_ms() + 20);
  size_t value = measure();
  for (; value > bound && waited < WAIT_CAP_MS; waited += purge_delay_ms() + 20) {
    purge_round();
    value = measure();
  }
  return value;
}

size_t wait_for_rss(size_t bound, int rounds)
{
  return wait_below(rss_bytes, bound, rounds);
}

size_t wait_for_maps(size_t bound, int rounds)
{
  return wait_below(maps_lines, bound, rounds);
}

void *map_array(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  CHECK(p != MAP_FAILED, "mmap of %zu bytes for the test's arrays failed", bytes);
  return p;
}

void unmap_array(void *p, size_t bytes)
{
  CHECK(munmap(p, bytes) == 0, "munmap failed");
}

/* Byte j of a block is byte j % 8 of word base + (j / 8) * PATTERN_STEP. */
static uint8_t byte_at(uint64_t base, size_t j)
{
  return (uint8_t)((base + (j / 8) * PATTERN_STEP) >> (8 * (j % 8)));
}

void fill(void *p, size_t size, uint64_t seed)
{
  pattern_fill(p, size, pattern_base(p, size, seed));
}

static void verify_bytes(const void *p, size_t size, uint64_t base, size_t from, size_t to,
                         const char *what)
{
  const uint8_t *b = p;
  for (size_t j = from; j < to; j++)
    if (b[j] != byte_at(base, j))
      fail("%s: byte %zu of the %zu-byte block %p is %#x, expected %#x", what, j, size, p,
           b[j], byte_at(base, j));
}

/* Checks bytes [0, len) of p against the pattern of a block of `size`
 * bytes filled at `at`. */
static void verify_prefix(const void *p, const void *at, size_t size, size_t len, uint64_t seed,
                          const char *what)
{
  uint64_t base = pattern_base(at, size, seed);
  size_t bad = pattern_mismatch(p, len, base);
  if (bad < len)
    verify_bytes(p, size, base, bad, len, what);
}

void verify(const void *p, size_t size, uint64_t seed, const char *what)
{
  verify_prefix(p, p, size, size, seed, what);
}

void verify_moved(const void *p, const void *was, size_t size, size_t len, uint64_t seed,
                  const char *what)
{
  verify_prefix(p, was, size, len, seed, what);
}

void verify_ends(const void *p, size_t size, uint64_t seed, const char *what)
{
  uint64_t base = pattern_base(p, size, seed);
  size_t head = size < 16 ? size : 16;
  verify_bytes(p, size, base, 0, head, what);
  verify_bytes(p, size, base, size > 16 ? size - 16 : head, size, what);
}

size_t block_size_of(const struct block_set *s, size_t i)
{
  struct rng r = {s->seed ^ (i * 0xD1B54A32D192ED03ull)};
  return (size_t)rng_range(&r, 16, 256);
}

void blocks_alloc(struct block_set *s, size_t bytes, uint64_t seed)
{
  s->seed = seed;
  if (s->p == NULL || s->cap < bytes / 16 + 1) {
    if (s->p != NULL)
      blocks_release_array(s);
    s->cap = bytes / 16 + 1;
    s->p = map_array(s->cap * sizeof *s->p);
  }
  s->count = 0;
  s->bytes = 0;
  while (s->bytes < bytes) {
    size_t size = block_size_of(s, s->count);
    void *p = t_malloc(size);
    CHECK(p != NULL, "%s(%zu) failed after %zu blocks", T_NAMES, size, s->count);
    fill(p, size, seed);
    s->p[s->count++] = p;
    s->bytes += size;
  }
}

void block_free(struct block_set *s, size_t i, const char *what)
{
  size_t size = block_size_of(s, i);
  verify_ends(s->p[i], size, s->seed, what);
  t_free(s->p[i]);
  s->p[i] = NULL;
  s->bytes -= size;
}

void blocks_free_range(struct block_set *s, size_t from, size_t to, const char *what)
{
  for (size_t i = from; i < to; i++)
    block_free(s, i, what);
}

void blocks_verify(const struct block_set *s, const char *what)
{
  for (size_t i = 0; i < s->count; i++)
    if (s->p[i] != NULL)
      verify_ends(s->p[i], block_size_of(s, i), s->seed, what);
}

void blocks_release_array(struct block_set *s)
{
  unmap_array(s->p, s->cap * sizeof *s->p);
  s->p = NULL;
  s->count = s->cap = 0;
}
