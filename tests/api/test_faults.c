/* Fault injection sweep (arch/os.h, hm_os_fail_after): for n = 1, 2, ...,
 * the nth OS call of a fixed workload fails (reserve, commit, purge,
 * release or bind, as the OS would refuse it), once or from then on,
 * until n passes the number of calls the workload makes. Each time: every allocation either succeeds
 * with intact contents or returns NULL with errno ENOMEM; calloc's blocks
 * read as zeros; nothing crashes; and once the fault is spent the
 * allocator serves every kind of block again. The workload: small, large
 * and huge blocks (calloc'ed or filled), reallocs, frees across two
 * threads, trims (which release regions, so each round maps again). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "hmalloc.h"
#include "../arch/os.h"
#include "test_common.h"

enum { BLOCKS = 24, MAX_N = 2000 };

static const size_t sizes[] = {24, 200, 3000, 40000, 100000, 300000, 1 << 20, 3 << 20,
                               5 << 20, 130000, 64};
#define SIZES (sizeof sizes / sizeof sizes[0])

struct round {
  void *block[BLOCKS];
  size_t size[BLOCKS];
  unsigned nulls;
};

static void fill(uint8_t *p, size_t size, unsigned tag)
{
  for (size_t i = 0; i < size; i += 4096)
    p[i] = (uint8_t)(tag + i / 4096);
  p[size - 1] = (uint8_t)tag;
}

static void check_fill(const uint8_t *p, size_t size, unsigned tag)
{
  for (size_t i = 0; i < size; i += 4096)
    CHECK(p[i] == (uint8_t)(tag + i / 4096), "block %p (%zu bytes): byte %zu changed", (void *)p,
          size, i);
  CHECK(p[size - 1] == (uint8_t)tag, "block %p (%zu bytes): last byte changed", (void *)p, size);
}

static void *got(struct round *r, void *p, const char *what, size_t size)
{
  if (p == NULL) {
    CHECK(errno == ENOMEM, "%s(%zu) returned NULL with errno %d, not ENOMEM", what, size, errno);
    r->nulls++;
  }
  return p;
}

static void allocate(struct round *r, unsigned from, unsigned to)
{
  for (unsigned i = from; i < to; i++) {
    size_t size = sizes[i % SIZES];
    errno = 0;
    if (i % 3 == 0) {
      uint8_t *p = got(r, hm_calloc(1, size), "calloc", size);
      if (p != NULL)
        for (size_t j = 0; j < size; j += 512)
          CHECK(p[j] == 0, "calloc(%zu): byte %zu is %u", size, j, p[j]);
      r->block[i] = p;
    } else {
      r->block[i] = got(r, hm_malloc(size), "malloc", size);
    }
    r->size[i] = size;
    if (r->block[i] != NULL)
      fill(r->block[i], size, i);
  }
}

static void release(struct round *r, unsigned from, unsigned to)
{
  for (unsigned i = from; i < to; i++)
    if (r->block[i] != NULL) {
      check_fill(r->block[i], r->size[i], i);
      hm_free(r->block[i]);
      r->block[i] = NULL;
    }
}

static void *free_half(void *arg)
{
  release(arg, 0, BLOCKS / 2);
  return NULL;
}

static void reallocate(struct round *r)
{
  for (unsigned i = BLOCKS / 2; i < BLOCKS; i += 4) {
    if (r->block[i] == NULL)
      continue;
    size_t size = r->size[i] * 3 + 1000;
    errno = 0;
    uint8_t *q = got(r, hm_realloc(r->block[i], size), "realloc", size);
    if (q == NULL) /* the old block stays */
      continue;
    check_fill(q, r->size[i], i); /* the old contents, moved or not */
    r->block[i] = q;
    r->size[i] = size;
    fill(q, size, i);
  }
}

static unsigned workload(void)
{
  struct round r = {0};
  allocate(&r, 0, BLOCKS);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_half, &r) == 0, "pthread_create failed");
  reallocate(&r);
  pthread_join(t, NULL);
  hm_trim();
  allocate(&r, 0, BLOCKS / 2);
  release(&r, 0, BLOCKS);
  hm_trim();
  return r.nulls;
}

/* Fails the nth call of `kind` (and with from_then_on every later one),
 * n = 1, 2, ... until the workload makes fewer; prints what that gave. */
static void sweep(unsigned kind, const char *name, bool from_then_on)
{
  unsigned n, nulls = 0, rounds_with_null = 0;
  for (n = 1; n <= MAX_N; n++) {
    uint64_t fired = hm_os_faults_fired();
    hm_os_fail_after(kind, n, from_then_on);
    unsigned round_nulls = workload();
    hm_os_fail_after(0, 0, false);
    nulls += round_nulls;
    rounds_with_null += round_nulls != 0;
    CHECK(workload() == 0, "%s, n = %u: allocations still fail once the fault is spent", name, n);
    if (hm_os_faults_fired() == fired)
      break; /* the workload makes fewer than n such calls */
  }
  CHECK(n <= MAX_N, "%s: the sweep did not end", name);
  printf("test_faults: %-7s %-14s %3u failure points: %u gave NULL with ENOMEM (%u NULLs), %u "
         "were absorbed; no corruption, recovered every time\n",
         name, from_then_on ? "from then on" : "once", n - 1, rounds_with_null, nulls,
         n - 1 - rounds_with_null);
}

int main(void)
{
  workload(); /* start-up's own calls out of the way */
  static const struct {
    unsigned kind;
    const char *name;
  } kinds[] = {{HM_FAULT_RESERVE, "reserve"}, {HM_FAULT_COMMIT, "commit"},
               {HM_FAULT_PURGE, "purge"},     {HM_FAULT_RELEASE, "release"},
               {HM_FAULT_BIND, "bind"},       {HM_FAULT_ALL, "any"}};
  for (unsigned i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    sweep(kinds[i].kind, kinds[i].name, false);
    sweep(kinds[i].kind, kinds[i].name, true);
  }
  return 0;
}
