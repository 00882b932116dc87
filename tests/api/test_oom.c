/* Out of memory: under RLIMIT_AS, allocating until malloc fails must give
 * NULL with errno ENOMEM, never a crash, and once everything is freed
 * malloc must work again. Each phase runs in a child of its own, with the
 * address space limited to what the child uses + 256 MiB. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "test_util.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)
#define HEADROOM (256 * MiB)

static void limit_address_space(void)
{
  size_t limit = tu_vm_size() + HEADROOM;
  struct rlimit rl = {limit, limit};
  CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit(RLIMIT_AS, %zu) failed", limit);
}

/* Blocks of `size` bytes until malloc fails, chained through their first
 * word (no array to allocate). Bounded: with the limit in force, far more
 * than HEADROOM bytes means the limit does not work. */
static void *exhaust(size_t size, size_t *count)
{
  void *head = NULL;
  *count = 0;
  for (;;) {
    errno = 0;
    void **p = malloc(size);
    if (p == NULL) {
      int e = errno;
      CHECK(e == ENOMEM, "malloc(%zu) failed with errno %d (%s), expected ENOMEM", size, e,
            strerror(e));
      return head;
    }
    *p = head;
    head = p;
    ++*count;
    CHECK(*count * size <= 4 * HEADROOM, "%zu blocks of %zu bytes: the limit is not enforced",
          *count, size);
  }
}

static void free_all(void *head)
{
  while (head != NULL) {
    void *next = *(void **)head;
    free(head);
    head = next;
  }
}

/* A block of `size` bytes can be had and holds what is written to it. */
static void expect_malloc_works(size_t size, const char *when)
{
  void *p = malloc(size);
  CHECK(p != NULL, "%s: malloc(%zu) failed", when, size);
  tu_fill(p, size < 4096 ? size : 4096, 11);
  CHECK(tu_holds(p, size < 4096 ? size : 4096, 11), "%s: block does not hold its data", when);
  free(p);
}

static void exhaust_and_recover(void *arg)
{
  size_t size = *(size_t *)arg;
  limit_address_space();
  size_t count;
  void *blocks = exhaust(size, &count);
  CHECK(count > 0, "not one block of %zu bytes under a limit of +256 MiB", size);
  fprintf(stderr, "%zu bytes: %zu blocks before ENOMEM\n", size, count);
  free_all(blocks);
  expect_malloc_works(size, "after freeing everything");
  expect_malloc_works(64, "after freeing everything");
  /* As many blocks as before fit again: nothing freed was lost. */
  size_t again;
  blocks = exhaust(size, &again);
  CHECK(again >= count, "%zu bytes: %zu blocks the second time, %zu the first", size, again,
        count);
  free_all(blocks);
}

/* Memory freed as small blocks serves large ones, and the reverse. */
static void small_then_large(void *arg)
{
  (void)arg;
  limit_address_space();
  size_t count;
  free_all(exhaust(64, &count));
  expect_malloc_works(1 * MiB, "after exhausting and freeing 64-byte blocks");
  free_all(exhaust(1 * MiB, &count));
  expect_malloc_works(64, "after exhausting and freeing 1 MiB blocks");
}

/* Every NULL that an allocation failure returns says ENOMEM: small
 * blocks of many classes, each allocated until it fails several times in
 * a row (later failures take other paths: no span, no region, a heap's
 * partial spans), then of every class again after a few frees. */
static void errno_on_every_null(void *arg)
{
  (void)arg;
  limit_address_space();
  static const size_t sizes[] = {16, 48, 100, 256, 1000, 3000, 12000, 40000, 128 * KiB};
  void *head = NULL;
  size_t nulls = 0;
  for (int round = 0; round < 2; round++)
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
      for (size_t failed = 0, n = 0; failed < 16 && n < (4 * HEADROOM) / 16; n++) {
        errno = 0;
        void **p = malloc(sizes[i]);
        if (p == NULL) {
          int e = errno;
          CHECK(e == ENOMEM, "malloc(%zu) returned NULL with errno %d (%s), expected ENOMEM",
                sizes[i], e, strerror(e));
          failed++;
          nulls++;
          continue;
        }
        *p = head;
        head = p;
      }
  CHECK(nulls > 0, "no allocation failed under a limit of +256 MiB");
  free_all(head);
}

/* Memory freed back to hmalloc serves the next allocation at once, even a
 * huge one that needs a mapping of its own: hmalloc gives back what it
 * keeps (empty regions, cached runs and mappings) when the OS refuses. */
static void fill_free_then_huge(void *arg)
{
  size_t size = *(size_t *)arg;
  limit_address_space();
  size_t count;
  free_all(exhaust(size, &count));
  expect_malloc_works(16 * MiB, "right after freeing everything");
}

/* Threads started before the limit, whose first malloc comes once memory
 * is exhausted: each must get a block or NULL with ENOMEM, never an abort
 * (the first read section of a thread used to register it with liburcu,
 * whose registry grows with a mapping and aborts when it cannot). */
#define LATE_THREADS 100

static pthread_barrier_t late_start;

static void *late_thread(void *arg)
{
  int *err = arg;
  pthread_barrier_wait(&late_start);
  errno = 0;
  void *p = malloc(64);
  *err = p == NULL ? errno : 0;
  free(p);
  pthread_barrier_wait(&late_start); /* all of them alive at once */
  return NULL;
}

static void late_first_malloc(void *arg)
{
  (void)arg;
  static pthread_t threads[LATE_THREADS];
  static int errs[LATE_THREADS];
  pthread_attr_t attr;
  CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 64 * KiB) == 0,
        "pthread_attr failed");
  CHECK(pthread_barrier_init(&late_start, NULL, LATE_THREADS + 1) == 0, "barrier failed");
  for (size_t i = 0; i < LATE_THREADS; i++)
    CHECK(pthread_create(&threads[i], &attr, late_thread, &errs[i]) == 0, "pthread_create failed");
  limit_address_space();
  size_t count;
  void *blocks = exhaust(64, &count);
  void *more = exhaust(16 * KiB, &count); /* every span class's last room, too */
  /* And the last pages of address space, which a granule no longer fits. */
  size_t pages = 0;
  while (mmap(NULL, 4 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) !=
         MAP_FAILED)
    pages++;
  fprintf(stderr, "the last %zu pages of address space mapped\n", pages);
  pthread_barrier_wait(&late_start);
  pthread_barrier_wait(&late_start);
  size_t nulls = 0;
  for (size_t i = 0; i < LATE_THREADS; i++) {
    CHECK(pthread_join(threads[i], NULL) == 0, "pthread_join failed");
    CHECK(errs[i] == 0 || errs[i] == ENOMEM, "a late thread's malloc failed with errno %d (%s)",
          errs[i], strerror(errs[i]));
    nulls += errs[i] != 0;
  }
  fprintf(stderr, "%zu of %d late threads got NULL\n", nulls, LATE_THREADS);
  free_all(more);
  free_all(blocks);
}

static bool run_phase(const char *name, void (*body)(void *), void *arg)
{
  static struct tu_child r;
  tu_run_child(body, arg, 60, &r);
  char status[64];
  bool ok = WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0;
  printf("%s %s (%s)\n%s", ok ? "ok  " : "FAIL", name,
         tu_describe_status(r.status, status, sizeof status), r.err);
  return ok;
}

int main(void)
{
  setvbuf(stdout, NULL, _IOLBF, 0);
  size_t small = 64, large = 1 * MiB, huge = 16 * MiB;
  bool ok = true;
  ok &= run_phase("64-byte blocks", exhaust_and_recover, &small);
  ok &= run_phase("1 MiB blocks", exhaust_and_recover, &large);
  ok &= run_phase("16 MiB blocks", exhaust_and_recover, &huge);
  ok &= run_phase("64-byte blocks, then 1 MiB blocks", small_then_large, NULL);
  ok &= run_phase("errno on every NULL", errno_on_every_null, NULL);
  ok &= run_phase("a thread's first malloc once memory is exhausted", late_first_malloc, NULL);
  ok &= run_phase("64-byte blocks freed, then 16 MiB", fill_free_then_huge, &small);
  ok &= run_phase("1 MiB blocks freed, then 16 MiB", fill_free_then_huge, &large);
  return ok ? 0 : 1;
}
