#define _GNU_SOURCE
#define TEST_CHECK_PLAIN
#include "heap_test.h"

#include <dirent.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

void hb_fill(struct hblock *b, uint64_t tag)
{
  b->tag = tag;
  pattern_fill(b->p, b->size, pattern_base(b->p, b->size, tag));
}

void hb_verify(const struct hblock *b, const char *where)
{
  pattern_expect(b->p, b->size, pattern_base(b->p, b->size, b->tag), where);
}

void hb_verify_moved(const void *q, size_t len, const struct hblock *origin, const char *where)
{
  pattern_expect(q, len, pattern_base(origin->p, origin->size, origin->tag), where);
}

struct collect {
  struct visited *out;
  size_t cap, count;
  const char *where;
};

static int collect_one(void *block, size_t size, void *arg)
{
  struct collect *c = arg;
  if (c->count == c->cap)
    fail("%s: hm_heap_visit reported more than %zu blocks", c->where, c->cap);
  c->out[c->count++] = (struct visited){block, size, 0};
  return 0;
}

static int by_address(const void *a, const void *b)
{
  uintptr_t x = (uintptr_t)((const struct visited *)a)->block;
  uintptr_t y = (uintptr_t)((const struct visited *)b)->block;
  return x < y ? -1 : x > y;
}

/* Shell sort: no allocation (qsort may call malloc, which is the allocator
 * under test in the override build). */
static void sort_visited(struct visited *v, size_t n)
{
  static const size_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
  for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
    size_t gap = gaps[g];
    for (size_t i = gap; i < n; i++) {
      struct visited t = v[i];
      size_t j = i;
      for (; j >= gap && by_address(&v[j - gap], &t) > 0; j -= gap)
        v[j] = v[j - gap];
      v[j] = t;
    }
  }
}

size_t heap_collect(hm_heap *h, struct visited *out, size_t cap, const char *where)
{
  struct collect c = {out, cap, 0, where};
  int r = hm_heap_visit(h, collect_one, &c);
  if (r != 0)
    fail("%s: hm_heap_visit returned %d though the callback always returned 0", where, r);
  sort_visited(out, c.count);
  for (size_t i = 1; i < c.count; i++) {
    if (out[i].block == out[i - 1].block)
      fail("%s: hm_heap_visit reported block %p twice", where, out[i].block);
    if ((uintptr_t)out[i - 1].block + out[i - 1].size > (uintptr_t)out[i].block)
      fail("%s: hm_heap_visit reported overlapping blocks %p (%zu bytes) and %p", where,
           out[i - 1].block, out[i - 1].size, out[i].block);
  }
  return c.count;
}

size_t visited_find(const struct visited *v, size_t n, const void *p)
{
  uintptr_t a = (uintptr_t)p;
  size_t lo = 0, hi = n; /* the last block starting at or below p */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)v[mid].block <= a)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0)
    return n;
  const struct visited *e = &v[lo - 1];
  if (a == (uintptr_t)e->block || a < (uintptr_t)e->block + e->size)
    return lo - 1;
  return n;
}

void heap_check_exact(hm_heap *h, const struct hblock *b, size_t n, struct visited *scratch,
                      size_t cap, const char *where)
{
  size_t count = heap_collect(h, scratch, cap, where);
  size_t live = 0, bytes = 0;
  for (size_t i = 0; i < count; i++)
    bytes += scratch[i].size;
  for (size_t i = 0; i < n; i++) {
    if (b[i].p == NULL)
      continue;
    live++;
    size_t k = visited_find(scratch, count, b[i].p);
    if (k == count)
      fail("%s: live block %p (%zu bytes, alignment %zu) is not among the %zu "
           "blocks "
           "hm_heap_visit reported",
           where, b[i].p, b[i].size, b[i].align, count);
    if (scratch[k].matched++ != 0)
      fail("%s: visited block %p (%zu bytes) holds two live allocations (one "
           "is %p)",
           where, scratch[k].block, scratch[k].size, b[i].p);
    if (b[i].align <= 16) {
      if (scratch[k].block != b[i].p)
        fail("%s: block %p (%zu bytes, usable %zu) reported as %p (%zu bytes)", where, b[i].p,
             b[i].size, hb_usable(b[i].p), scratch[k].block, scratch[k].size);
      size_t usable = hb_usable(b[i].p);
      if (scratch[k].size != usable)
        fail("%s: hm_heap_visit reports %zu bytes for %p, the usable size is "
             "%zu",
             where, scratch[k].size, b[i].p, usable);
    } else if (scratch[k].size < b[i].size + ((uintptr_t)b[i].p - (uintptr_t)scratch[k].block)) {
      fail("%s: aligned block %p (%zu bytes) does not fit in the visited block "
           "%p (%zu bytes)",
           where, b[i].p, b[i].size, scratch[k].block, scratch[k].size);
    }
  }
  if (count != live) {
    for (size_t i = 0; i < count; i++)
      if (scratch[i].matched == 0)
        fail("%s: hm_heap_visit reported %zu blocks, %zu are live; %p (%zu "
             "bytes) is not",
             where, count, live, scratch[i].block, scratch[i].size);
  }
  struct hm_heap_stats st;
  memset(&st, 0xEE, sizeof st);
  hm_heap_stats_get(h, &st);
  if (st.blocks_in_use != live || st.bytes_in_use != bytes)
    fail("%s: hm_heap_stats_get: %zu blocks, %zu bytes in use; the test has "
         "%zu live blocks, "
         "hm_heap_visit reported %zu bytes",
         where, st.blocks_in_use, st.bytes_in_use, live, bytes);
  if (st.bytes_held < st.bytes_in_use)
    fail("%s: hm_heap_stats_get: bytes_held %zu < bytes_in_use %zu", where, st.bytes_held,
         st.bytes_in_use);
}

void *map_array(size_t bytes)
{
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    fail("mmap of %zu bytes for bookkeeping failed", bytes);
  return p;
}

void unmap_array(void *p, size_t bytes)
{
  if (p != NULL)
    munmap(p, bytes);
}

unsigned thread_count(void)
{
  DIR *d = opendir("/proc/self/task");
  if (d == NULL)
    fail("opendir(/proc/self/task) failed");
  unsigned n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

void wait_zero(_Atomic size_t *counter, void (*help)(void *), void *arg, double bound_s,
               const char *what)
{
  double deadline = 0;
  for (unsigned spins = 0; atomic_load_explicit(counter, memory_order_acquire) != 0; spins++) {
    if (help != NULL)
      help(arg);
    sched_yield();
    if (spins % 1024 == 0) {
      double now = now_s();
      if (deadline == 0)
        deadline = now + bound_s;
      else if (now > deadline)
        fail("%s: still %zu outstanding after %.0f s", what,
             atomic_load_explicit(counter, memory_order_acquire), bound_s);
    }
  }
}
