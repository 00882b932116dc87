/* Linux implementation of arch/os.h. */
#define _GNU_SOURCE
#include "../os.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

size_t hm_os_page_size(void)
{
  static size_t page;
  if (page == 0)
    page = (size_t)sysconf(_SC_PAGESIZE);
  return page;
}

static void *map(size_t size)
{
  /* MAP_NORESERVE: reservations are address space, not a promise of memory;
   * pages are charged when first touched. */
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void *hm_os_reserve(size_t size, size_t align, bool commit)
{
  (void)commit; /* Linux commits on first touch */
  if (size == 0 || size + align < size)
    return NULL;
  /* Try the exact size first: the kernel places new mappings next to the
   * previous ones, so once granule-sized mappings are aligned, the next one
   * usually is too and the over-map-and-trim is saved. */
  void *p = map(size);
  if (p == NULL)
    return NULL;
  if (((uintptr_t)p & (align - 1)) == 0)
    return p;
  munmap(p, size);
  /* Over-map and trim to the alignment. */
  size_t over = size + align - hm_os_page_size();
  uint8_t *raw = map(over);
  if (raw == NULL)
    return NULL;
  uint8_t *aligned = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
  size_t head = (size_t)(aligned - raw);
  size_t tail = over - head - size;
  if (head)
    munmap(raw, head);
  if (tail)
    munmap(aligned + size, tail);
  return aligned;
}

void hm_os_release(void *p, size_t size)
{
  if (p != NULL && size != 0)
    munmap(p, size);
}

bool hm_os_commit(void *p, size_t size)
{
  (void)p;
  (void)size;
  return true;
}

void hm_os_decommit(void *p, size_t size)
{
  madvise(p, size, MADV_DONTNEED);
}

const char *hm_os_getenv(const char *name)
{
  /* Walk environ directly: getenv is allocation-free in glibc, but this
   * runs before libc may be fully initialised and must never allocate. */
  size_t len = strlen(name);
  if (environ == NULL)
    return NULL;
  for (char **e = environ; *e != NULL; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
      return *e + len + 1;
  return NULL;
}

void hm_os_write_error(const char *msg, size_t len)
{
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, msg, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    msg += n;
    len -= (size_t)n;
  }
}

uint64_t hm_os_random(void)
{
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == sizeof r && r != 0)
    return r;
  /* No entropy yet (early boot): mix the clock and an address. */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&r ^ (uint64_t)ts.tv_sec;
  return r | 1;
}

static pthread_key_t thread_exit_key;

bool hm_os_thread_exit_init(void (*on_exit)(void *))
{
  return pthread_key_create(&thread_exit_key, on_exit) == 0;
}

void hm_os_thread_attach(void *value)
{
  pthread_setspecific(thread_exit_key, value);
}

void hm_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
  pthread_atfork(prepare, parent, child);
}

void hm_os_abort(void)
{
  abort();
}
