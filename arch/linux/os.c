/* Linux implementation of arch/os.h. */
#define _GNU_SOURCE
#include "../os.h"
#include "fault.h"

#include <stdatomic.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

extern char **environ;

size_t hm_os_page_size(void)
{
  static _Atomic size_t page;
  size_t size = atomic_load_explicit(&page, memory_order_relaxed);
  if (size == 0) {
    size = (size_t)sysconf(_SC_PAGESIZE);
    atomic_store_explicit(&page, size, memory_order_relaxed);
  }
  return size;
}

static _Atomic uintptr_t address_limit = (uintptr_t)1 << HM_OS_ADDRESS_BITS;

void hm_os_set_address_limit(uintptr_t limit)
{
  atomic_store_explicit(&address_limit, limit ? limit : (uintptr_t)1 << HM_OS_ADDRESS_BITS,
                        memory_order_relaxed);
}

static bool below_limit(const void *p, size_t size)
{
  return (uintptr_t)p + size <= atomic_load_explicit(&address_limit, memory_order_relaxed);
}

static _Atomic uint32_t refusals;

uint32_t hm_os_refusals(void)
{
  return atomic_load_explicit(&refusals, memory_order_relaxed);
}

static void *map(size_t size)
{
  /* MAP_NORESERVE: reservations are address space, not a promise of memory;
   * pages are charged when first touched. */
  void *p = hm_os_fault(HM_FAULT_RESERVE)
                ? MAP_FAILED
                : mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p != MAP_FAILED && below_limit(p, size))
    return p;
  if (p != MAP_FAILED)
    munmap(p, size);
  errno = ENOMEM;
  atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed);
  return NULL;
}

void *hm_os_reserve(size_t size, size_t align, bool commit)
{
  return hm_os_reserve_skewed(size, align, 0, commit);
}

void *hm_os_reserve_skewed(size_t size, size_t align, size_t skew, bool commit)
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
  if ((((uintptr_t)p + skew) & (align - 1)) == 0)
    return p;
  munmap(p, size);
  /* Over-map and trim to the alignment. */
  size_t over = size + align - hm_os_page_size();
  uint8_t *raw = map(over);
  if (raw == NULL)
    return NULL;
  uint8_t *aligned =
      (uint8_t *)((((uintptr_t)raw + skew + align - 1) & ~(uintptr_t)(align - 1)) - skew);
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
  if (p != NULL && size != 0 && !hm_os_fault(HM_FAULT_RELEASE))
    munmap(p, size);
}

bool hm_os_commit(void *p, size_t size)
{
  (void)p;
  (void)size;
  /* Linux commits on first touch: only an injected fault refuses. */
  if (!hm_os_fault(HM_FAULT_COMMIT))
    return true;
  atomic_fetch_add_explicit(&refusals, 1, memory_order_relaxed);
  return false;
}

void hm_os_decommit(void *p, size_t size)
{
  madvise(p, size, MADV_DONTNEED);
}

bool hm_os_purge(void *p, size_t size, bool now)
{
  if (hm_os_fault(HM_FAULT_PURGE))
    return false;
#ifdef MADV_FREE
  /* MADV_FREE is Linux 4.5+; an older kernel answers EINVAL, and then the
   * purge must be immediate. */
  static _Atomic bool lazy_unsupported;
  if (!now && !atomic_load_explicit(&lazy_unsupported, memory_order_relaxed)) {
    if (madvise(p, size, MADV_FREE) == 0)
      return false;
    if (errno == EINVAL)
      atomic_store_explicit(&lazy_unsupported, true, memory_order_relaxed);
  }
#else
  (void)now;
#endif
  return madvise(p, size, MADV_DONTNEED) == 0;
}

void hm_os_huge_pages(void *p, size_t size)
{
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE); /* EINVAL without THP: then nothing to do */
#else
  (void)p;
  (void)size;
#endif
}

size_t hm_os_huge_page_size(void)
{
#if defined(MADV_HUGEPAGE) && (defined(__x86_64__) || defined(__aarch64__))
  return (size_t)2 << 20; /* PMD size with 4 KiB base pages */
#else
  return 0;
#endif
}

size_t hm_os_resident(void *p, size_t size)
{
  unsigned char pages[512];
  size_t page = hm_os_page_size(), resident = 0;
  for (size_t done = 0; done < size;) {
    size_t chunk = size - done < sizeof pages * page ? size - done : sizeof pages * page;
    if (mincore((uint8_t *)p + done, chunk, pages) != 0)
      return resident;
    for (size_t i = 0; i < chunk / page; i++)
      resident += (pages[i] & 1) * page;
    done += chunk;
  }
  return resident;
}

bool hm_os_remap(void *p, size_t old_size, void *to, size_t new_size)
{
  return mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to) != MAP_FAILED;
}

bool hm_os_resize(void *p, size_t old_size, size_t new_size)
{
  return below_limit(p, new_size) && mremap(p, old_size, new_size, 0) != MAP_FAILED;
}

int64_t hm_os_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool hm_os_thread_start(void *(*fn)(void *), void *arg)
{
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0)
    return false;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* The new thread inherits the signal mask: block everything around the
   * creation, so that no signal of the program lands on the helper. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  int err = pthread_create(&thread, &attr, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  return err == 0;
}

void hm_os_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ms)
{
  struct timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000};
  syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, timeout_ms < 0 ? NULL : &ts, NULL, 0);
}

void hm_os_wake(_Atomic uint32_t *word)
{
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void hm_os_yield(void)
{
  sched_yield();
}

bool hm_os_barrier_init(void)
{
  return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

void hm_os_barrier(void)
{
  syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}

const char *hm_os_getenv(const char *name)
{
  /* Walk environ directly: getenv is allocation-free in glibc, but this
   * runs before libc may be fully initialised and must never allocate.
   * In a set-user-ID or set-group-ID program (AT_SECURE) nothing is read,
   * as secure_getenv and glibc's tunables do: the user who starts it must
   * not steer a privileged process's allocator. */
  size_t len = strlen(name);
  if (environ == NULL || getauxval(AT_SECURE) != 0)
    return NULL;
  for (char **e = environ; *e != NULL; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
      return *e + len + 1;
  return NULL;
}

static int error_fd = STDERR_FILENO;

void hm_os_keep_error_output(void)
{
  int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (fd >= 0)
    error_fd = fd;
}

void hm_os_write_error(const char *msg, size_t len)
{
  while (len > 0) {
    ssize_t n = write(error_fd, msg, len);
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

uint32_t hm_os_thread_id(void)
{
  return (uint32_t)syscall(SYS_gettid);
}

bool hm_os_thread_alive(uint32_t id)
{
  /* Signal 0 checks without sending; ESRCH: no such thread in the process
   * (a thread that has exited is reaped at once). */
  int saved = errno;
  bool alive = syscall(SYS_tgkill, getpid(), (pid_t)id, 0) == 0 || errno != ESRCH;
  errno = saved;
  return alive;
}

void hm_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
  pthread_atfork(prepare, parent, child);
}

void hm_os_abort(void)
{
  abort();
}

/* The object (shared library or executable) that holds `address`. */
static void *object_of(const void *address)
{
  Dl_info info;
  return address != NULL && dladdr(address, &info) ? info.dli_fbase : NULL;
}

bool hm_os_foreign_free(void *p)
{
  /* Valgrind's malloc-replacing tools redirect every malloc and free of the
   * process, this library's included: the one call hmalloc makes to a
   * public free lands in valgrind's, which reports an invalid pointer
   * itself. (Under a tool that replaces nothing, it is hmalloc's free,
   * which aborts on it.) */
  if (RUNNING_ON_VALGRIND) {
    free(p);
    return true;
  }
  /* A sanitizer's allocator says which blocks are its own; any other
   * allocator's block, or a stray pointer, is invalid here. */
  int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "__sanitizer_get_ownership");
  void (*foreign_free)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "free");
  if (owns == NULL || foreign_free == NULL || !owns(p) ||
      object_of((void *)foreign_free) == object_of((void *)hm_os_foreign_free))
    return false;
  foreign_free(p);
  return true;
}
