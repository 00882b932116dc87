/* Conformance of the private heap API (include/hmalloc.h, "Private heaps"):
 * every hm_heap_* function, its edge cases and errors, the byte limit,
 * hm_heap_stats_get and hm_heap_visit against the test's own account of
 * the live blocks (also after frees by another thread), and the global
 * statistics back where they were once the heaps are destroyed.
 *
 * Built twice: test_heap_api (hmalloc_api: blocks freed with hm_free) and
 * test_heap_api_override (libhmalloc.so: plain free, realloc and
 * malloc_usable_size on the heaps' blocks). */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "heap_test.h"

#define SEED 0x4EA9A91ull

/* Values the compiler cannot see through: keeps GCC from folding or
 * warning about a deliberately absurd size. */
static inline size_t opaque_size(size_t n)
{
  __asm__ volatile("" : "+r"(n));
  return n;
}

static inline bool aligned_to(const void *p, size_t align)
{
  uintptr_t v = (uintptr_t)p;
  __asm__ volatile("" : "+r"(v));
  return (v & (align - 1)) == 0;
}

static struct rng rng;

/* Bookkeeping outside the allocator (heap_test.h). */
#define MAX_BLOCKS 8192
static struct hblock *blocks;   /* [MAX_BLOCKS] */
static struct visited *scratch; /* [MAX_BLOCKS] */

static void expect_errno(const void *p, int err, const char *call)
{
  CHECK(p == NULL, "%s returned %p, expected NULL", call, p);
  CHECK(errno == err, "%s: errno %d (%s), expected %d (%s)", call, errno, strerror(errno), err,
        strerror(err));
}

/* A block from a heap: not NULL, 16-aligned, at least `size` usable. */
static void check_block(const void *p, size_t size, const char *call)
{
  CHECK(p != NULL, "%s(%zu) failed: %s", call, size, strerror(errno));
  CHECK(aligned_to(p, 16), "%s(%zu) = %p is not 16-aligned", call, size, p);
  size_t usable = hb_usable(p);
  CHECK(usable >= size, "%s(%zu) = %p: usable size %zu", call, size, p, usable);
}

/* Fills the whole usable size: every byte of it must be writable. */
static void take(struct hblock *b, void *p, size_t size, size_t align)
{
  *b = (struct hblock){.p = p, .size = hb_usable(p), .align = align};
  (void)size;
  hb_fill(b, rng_next(&rng));
}

static void drop(struct hblock *b, const char *where)
{
  hb_verify(b, where);
  t_free(b->p);
  *b = (struct hblock){0};
}

static bool in_heap(hm_heap *h, const void *p)
{
  size_t n = heap_collect(h, scratch, MAX_BLOCKS, "in_heap");
  return visited_find(scratch, n, p) < n;
}

static struct hm_heap_stats heap_stats(hm_heap *h)
{
  struct hm_heap_stats st;
  memset(&st, 0xEE, sizeof st);
  hm_heap_stats_get(h, &st);
  return st;
}

/* ---- threads hmalloc starts ---- */

static size_t thread_cost;
static unsigned threads_at_start;

/* The bytes in use that threads hmalloc started since the baseline (its
 * background purge thread, after a burst) may hold: glibc's thread
 * structures, allocated through hmalloc in the override build. */
static size_t threads_started_cost(void)
{
  unsigned now = thread_count();
  return now > threads_at_start ? (now - threads_at_start) * thread_cost : 0;
}

/* ---- a helper thread, for frees from another thread ----
 * One persistent thread, started before any baseline is taken: creating a
 * thread allocates (glibc's thread structures, through hmalloc in the
 * override build), and the global statistics must not see that. */

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_cond = PTHREAD_COND_INITIALIZER;
static void (*helper_job)(void *);
static void *helper_arg;
static bool helper_done, helper_quit;
static pthread_t helper;

static void *helper_main(void *unused)
{
  (void)unused;
  pthread_mutex_lock(&helper_lock);
  for (;;) {
    while (helper_job == NULL && !helper_quit)
      pthread_cond_wait(&helper_cond, &helper_lock);
    if (helper_job == NULL)
      break;
    void (*job)(void *) = helper_job;
    pthread_mutex_unlock(&helper_lock);
    job(helper_arg);
    pthread_mutex_lock(&helper_lock);
    helper_job = NULL;
    helper_done = true;
    pthread_cond_broadcast(&helper_cond);
  }
  pthread_mutex_unlock(&helper_lock);
  return NULL;
}

/* Runs job(arg) on the helper thread and waits (bounded) until it is done. */
static void on_other_thread(void (*job)(void *), void *arg)
{
  pthread_mutex_lock(&helper_lock);
  helper_job = job;
  helper_arg = arg;
  helper_done = false;
  pthread_cond_broadcast(&helper_cond);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 60;
  while (!helper_done) {
    int err = pthread_cond_timedwait(&helper_cond, &helper_lock, &deadline);
    CHECK(err == 0 || helper_done, "the helper thread did not finish its job in 60 s");
  }
  pthread_mutex_unlock(&helper_lock);
}

struct free_job {
  struct hblock *b;
  size_t n;
};

static void free_job_run(void *arg)
{
  struct free_job *j = arg;
  for (size_t i = 0; i < j->n; i++)
    if (j->b[i].p != NULL)
      drop(&j->b[i], "free by another thread");
}

/* Frees the blocks listed (NULL entries skipped) on the helper thread. */
static void free_elsewhere(struct hblock *b, size_t n)
{
  struct free_job j = {b, n};
  on_other_thread(free_job_run, &j);
}

static void free_one_elsewhere(struct hblock *b)
{
  free_elsewhere(b, 1);
}

/* ---- create, destroy, options ---- */

static void test_create(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create(NULL) failed: %s", strerror(errno));
  void *p = hm_heap_malloc(h, 100);
  check_block(p, 100, "hm_heap_malloc");
  CHECK(in_heap(h, p), "a block of the heap is not visited");
  hm_heap_destroy(h);

  const int nodes[] = {-1, 0};
  for (size_t i = 0; i < 2; i++) {
    hm_heap_options opt = HM_HEAP_OPTIONS_INIT;
    CHECK(opt.node == -1 && opt.limit == 0, "HM_HEAP_OPTIONS_INIT is {%d, %zu}", opt.node,
          opt.limit);
    opt.node = nodes[i];
    h = hm_heap_create(&opt);
    CHECK(h != NULL, "hm_heap_create(node %d) failed: %s", nodes[i], strerror(errno));
    for (size_t s = 1; s <= 8 * MiB; s *= 4) {
      p = hm_heap_malloc(h, s);
      check_block(p, s, "hm_heap_malloc");
      memset(p, 0x5A, s);
    }
    hm_heap_destroy(h);
  }

  const int bad_nodes[] = {1000, INT_MAX, -2, INT_MIN};
  for (size_t i = 0; i < sizeof bad_nodes / sizeof bad_nodes[0]; i++) {
    hm_heap_options opt = {.node = bad_nodes[i], .limit = 0};
    errno = 0;
    h = hm_heap_create(&opt);
    char call[64];
    snprintf(call, sizeof call, "hm_heap_create(node %d)", bad_nodes[i]);
    if (h != NULL)
      hm_heap_destroy(h);
    expect_errno(h, EINVAL, call);
  }

  /* Many at once: distinct handles, distinct blocks. */
  enum { N = 200 };
  static hm_heap *heaps[N];
  static void *first[N];
  for (size_t i = 0; i < N; i++) {
    heaps[i] = hm_heap_create(NULL);
    CHECK(heaps[i] != NULL, "hm_heap_create #%zu failed", i);
    first[i] = hm_heap_malloc(heaps[i], 48);
    check_block(first[i], 48, "hm_heap_malloc");
    memset(first[i], (int)i, 48);
    for (size_t j = 0; j < i; j++) {
      CHECK(heaps[i] != heaps[j], "hm_heap_create returned %p twice", (void *)heaps[i]);
      CHECK(first[i] != first[j], "two heaps handed out %p", first[i]);
    }
  }
  for (size_t i = 0; i < N; i++) {
    const unsigned char *c = first[i];
    for (size_t k = 0; k < 48; k++)
      CHECK(c[k] == (unsigned char)i, "block %p of heap %zu was overwritten", first[i], i);
    CHECK(heap_stats(heaps[i]).blocks_in_use == 1, "heap %zu counts %zu blocks", i,
          heap_stats(heaps[i]).blocks_in_use);
  }
  for (size_t i = 0; i < N; i += 2)
    hm_heap_destroy(heaps[i]);
  for (size_t i = 1; i < N; i += 2) { /* the others are unharmed */
    CHECK(in_heap(heaps[i], first[i]), "heap %zu lost its block", i);
    hm_heap_destroy(heaps[i]);
  }

  hm_heap_destroy(NULL); /* nothing */
  note("create: ok");
}

static void test_null_heap(void)
{
  errno = 0;
  expect_errno(hm_heap_malloc(NULL, 16), EINVAL, "hm_heap_malloc(NULL, 16)");
  errno = 0;
  expect_errno(hm_heap_calloc(NULL, 1, 16), EINVAL, "hm_heap_calloc(NULL, 1, 16)");
  errno = 0;
  expect_errno(hm_heap_realloc(NULL, NULL, 16), EINVAL, "hm_heap_realloc(NULL, NULL, 16)");
  errno = 0;
  expect_errno(hm_heap_aligned_alloc(NULL, 64, 16), EINVAL,
               "hm_heap_aligned_alloc(NULL, 64, 16)");
  errno = 0;
  expect_errno(hm_heap_malloc(NULL, 0), EINVAL, "hm_heap_malloc(NULL, 0)");
  hm_heap_destroy(NULL);
  note("NULL heap: ok");
}

/* ---- sizes ---- */

/* The class sizes of README.md: 16..128 by 16, then eight steps per power
 * of two up to 128 KiB. */
static size_t class_sizes(size_t *out)
{
  size_t n = 0;
  for (size_t s = 16; s <= 128; s += 16)
    out[n++] = s;
  for (size_t p = 128; p < 128 * KiB; p *= 2)
    for (size_t k = 1; k <= 8; k++)
      out[n++] = p + k * (p / 8);
  return n;
}

static void test_sizes(void)
{
  static size_t classes[96], sizes[400];
  size_t nc = class_sizes(classes);
  CHECK(nc == 88 && classes[87] == 128 * KiB, "%zu classes, the last %zu", nc, classes[nc - 1]);
  size_t n = 0;
  sizes[n++] = 0;
  sizes[n++] = 1;
  for (size_t i = 0; i < nc; i++) {
    sizes[n++] = classes[i] - 1;
    sizes[n++] = classes[i];
    sizes[n++] = classes[i] + 1;
  }
  const size_t big[] = {256 * KiB, 1 * MiB, 4 * MiB - 128, 4 * MiB, 4 * MiB + 1, 8 * MiB};
  for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
    sizes[n++] = big[i];

  struct hm_stats g0;
  hm_stats_get(&g0);
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  heap_check_exact(h, blocks, 0, scratch, MAX_BLOCKS, "a new heap");
  for (size_t i = 0; i < n; i++) {
    void *p = hm_heap_malloc(h, sizes[i]);
    check_block(p, sizes[i], "hm_heap_malloc");
    take(&blocks[i], p, sizes[i], 0);
  }
  /* Every block still holds its pattern once all are written: no overlap. */
  for (size_t i = 0; i < n; i++)
    hb_verify(&blocks[i], "after all sizes were written");
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      CHECK(blocks[i].p != blocks[j].p, "%p handed out twice", blocks[i].p);
  heap_check_exact(h, blocks, n, scratch, MAX_BLOCKS, "all sizes");
  struct hm_stats g1;
  hm_stats_get(&g1);
  CHECK(g1.mallocs - g0.mallocs >= n, "hm_stats_get counts %zu mallocs for %zu heap blocks",
        g1.mallocs - g0.mallocs, n);
  CHECK(g1.huge_live >= g0.huge_live + 2, "2 huge blocks live, hm_stats_get: %zu before, %zu now",
        g0.huge_live, g1.huge_live);

  /* malloc(0): distinct blocks. */
  void *zero[8];
  for (size_t i = 0; i < 8; i++) {
    zero[i] = hm_heap_malloc(h, 0);
    check_block(zero[i], 0, "hm_heap_malloc");
    for (size_t j = 0; j < i; j++)
      CHECK(zero[i] != zero[j], "hm_heap_malloc(0) returned %p twice", zero[i]);
    for (size_t j = 0; j < n; j++)
      CHECK(zero[i] != blocks[j].p, "hm_heap_malloc(0) returned the live block %p", zero[i]);
  }
  for (size_t i = 0; i < 8; i++)
    t_free(zero[i]);

  /* Half freed here, the rest by the destroy. */
  for (size_t i = 0; i < n; i += 2)
    drop(&blocks[i], "free of every other size");
  heap_check_exact(h, blocks, n, scratch, MAX_BLOCKS, "half freed");
  for (size_t i = 1; i < n; i += 2)
    hb_verify(&blocks[i], "after half were freed");
  hm_heap_destroy(h);
  memset(blocks, 0, n * sizeof blocks[0]);

  errno = 0;
  h = hm_heap_create(NULL);
  expect_errno(hm_heap_malloc(h, opaque_size(SIZE_MAX)), ENOMEM, "hm_heap_malloc(SIZE_MAX)");
  errno = 0;
  expect_errno(hm_heap_malloc(h, opaque_size(PTRDIFF_MAX)), ENOMEM,
               "hm_heap_malloc(PTRDIFF_MAX)");
  errno = 0;
  expect_errno(hm_heap_malloc(h, opaque_size((size_t)1 << 62)), ENOMEM, "hm_heap_malloc(2^62)");
  CHECK(heap_stats(h).blocks_in_use == 0, "failed allocations left %zu blocks",
        heap_stats(h).blocks_in_use);
  hm_heap_destroy(h);
  note("sizes: ok (%zu sizes)", n);
}

/* ---- calloc ---- */

static void test_calloc(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  const size_t sizes[] = {1,         16,        100,       1000,    4096,    10000,
                          65536,     131072,    131073,    200000,  1 * MiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t s = sizes[i];
    void *a = hm_heap_calloc(h, s, 1);
    void *b = hm_heap_calloc(h, 1, s);
    void *c = hm_heap_calloc(h, (s + 15) / 16, 16);
    check_block(a, s, "hm_heap_calloc");
    check_block(b, s, "hm_heap_calloc");
    check_block(c, (s + 15) / 16 * 16, "hm_heap_calloc");
    CHECK(all_zero(a, s) && all_zero(b, s) && all_zero(c, (s + 15) / 16 * 16),
          "hm_heap_calloc of %zu bytes is not zeroed", s);
    CHECK(in_heap(h, a) && in_heap(h, b) && in_heap(h, c), "calloc'd blocks not in the heap");
    memset(a, 0xA5, s);
    memset(b, 0xA5, s);
    memset(c, 0xA5, s);
  }
  void *z = hm_heap_calloc(h, 0, 100);
  CHECK(z != NULL, "hm_heap_calloc(0, 100) failed");
  t_free(z);
  errno = 0;
  expect_errno(hm_heap_calloc(h, opaque_size(SIZE_MAX / 2 + 1), 2), ENOMEM,
               "hm_heap_calloc(SIZE_MAX/2+1, 2)");
  errno = 0;
  expect_errno(hm_heap_calloc(h, opaque_size((size_t)1 << 32), (size_t)1 << 32), ENOMEM,
               "hm_heap_calloc(2^32, 2^32)");
  errno = 0;
  expect_errno(hm_heap_calloc(h, 2, opaque_size(SIZE_MAX)), ENOMEM,
               "hm_heap_calloc(2, SIZE_MAX)");

  /* Reset, then calloc over the same memory: dirty blocks come back as
   * zeros. Each round dirties what it got for the next. */
  const size_t reuse_sizes[] = {64, 3000, 40000, 100000, 300000, 2 * MiB};
  enum { K = 24, ROUNDS = 3 };
  size_t reused = 0, total = 0;
  for (size_t r = 0; r < ROUNDS; r++) {
    for (size_t si = 0; si < sizeof reuse_sizes / sizeof reuse_sizes[0]; si++) {
      size_t s = reuse_sizes[si];
      void *old[K];
      for (size_t k = 0; k < K; k++) {
        old[k] = hm_heap_malloc(h, s);
        check_block(old[k], s, "hm_heap_malloc");
        memset(old[k], 0xC3, hb_usable(old[k]));
      }
      hm_heap_reset(h);
      CHECK(heap_stats(h).blocks_in_use == 0, "%zu blocks in use after reset",
            heap_stats(h).blocks_in_use);
      for (size_t k = 0; k < K; k++) {
        void *p = hm_heap_calloc(h, 1, s);
        check_block(p, s, "hm_heap_calloc after reset");
        CHECK(all_zero(p, s), "hm_heap_calloc(1, %zu) after a reset = %p is not zeroed", s, p);
        for (size_t j = 0; j < K; j++)
          reused += p == old[j];
        total++;
        memset(p, 0x3C, hb_usable(p));
      }
      hm_heap_reset(h);
    }
  }
  hm_heap_destroy(h);
  note("calloc: ok (%zu of %zu blocks after a reset reused an address)", reused, total);
}

/* ---- realloc ---- */

/* Reallocs b within h to `size` and checks the result: a block of h (not
 * of `from`, if given), the kept prefix intact, refilled. */
static void realloc_to(hm_heap *h, struct hblock *b, size_t size, hm_heap *from)
{
  struct hblock old = *b;
  hb_verify(&old, "before hm_heap_realloc");
  void *q = hm_heap_realloc(h, old.p, size);
  check_block(q, size, "hm_heap_realloc");
  hb_verify_moved(q, old.size < size ? old.size : size, &old, "after hm_heap_realloc");
  CHECK(in_heap(h, q), "hm_heap_realloc(%p, %zu) = %p: not a block of the heap", old.p, size, q);
  if (from != NULL) {
    CHECK(q != old.p, "hm_heap_realloc kept %p, a block of another heap", q);
    CHECK(!in_heap(from, old.p), "the block %p is still in its first heap after it moved",
          old.p);
  }
  *b = (struct hblock){.p = q, .size = size};
  hb_fill(b, rng_next(&rng));
}

static void test_realloc(void)
{
  hm_heap *h = hm_heap_create(NULL), *h2 = hm_heap_create(NULL);
  CHECK(h != NULL && h2 != NULL, "hm_heap_create failed");

  /* realloc(NULL) allocates. */
  void *p = hm_heap_realloc(h, NULL, 100);
  check_block(p, 100, "hm_heap_realloc(NULL)");
  CHECK(in_heap(h, p) && heap_stats(h).blocks_in_use == 1, "hm_heap_realloc(NULL): not in heap");
  struct hblock b = {.p = p, .size = 100};
  hb_fill(&b, rng_next(&rng));

  /* Up through every tier and down again. */
  const size_t chain[] = {1,      24,      200,     3000,    40000,   131072,  131073,
                          300000, 2 * MiB, 6 * MiB, 7 * MiB, 5 * MiB, 3 * MiB, 500000,
                          140000, 70000,   5000,    300,     17,      1};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
    realloc_to(h, &b, chain[i], NULL);
    CHECK(heap_stats(h).blocks_in_use == 1, "after realloc to %zu: %zu blocks in the heap",
          chain[i], heap_stats(h).blocks_in_use);
  }
  /* From another heap, any tier: the block moves into h. */
  const size_t moved[] = {40, 5000, 100000, 300000, 5 * MiB};
  for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
    struct hblock o = {.p = hm_heap_malloc(h2, moved[i]), .size = moved[i]};
    check_block(o.p, moved[i], "hm_heap_malloc");
    hb_fill(&o, rng_next(&rng));
    size_t in_h = heap_stats(h).blocks_in_use;
    realloc_to(h, &o, moved[i] + (i % 2) * 1000, h2);
    CHECK(heap_stats(h2).blocks_in_use == 0, "heap 2 still counts %zu blocks",
          heap_stats(h2).blocks_in_use);
    CHECK(heap_stats(h).blocks_in_use == in_h + 1, "heap counts %zu blocks, expected %zu",
          heap_stats(h).blocks_in_use, in_h + 1);
    drop(&o, "a block moved from another heap");
  }

  /* An over-aligned block of another heap (the pointer inside its block). */
  for (size_t align = 256; align <= 8192; align *= 4) {
    void *a = hm_heap_aligned_alloc(h2, align, 700);
    check_block(a, 700, "hm_heap_aligned_alloc");
    CHECK(aligned_to(a, align), "hm_heap_aligned_alloc(%zu) = %p: misaligned", align, a);
    struct hblock o = {.p = a, .size = 700, .align = align};
    hb_fill(&o, rng_next(&rng));
    realloc_to(h, &o, 900, h2);
    drop(&o, "an aligned block moved from another heap");
  }

  /* From plain malloc: moves into h. */
  const size_t plain[] = {3000, 200000};
  for (size_t i = 0; i < 2; i++) {
    struct hblock o = {.p = t_malloc(plain[i]), .size = plain[i]};
    CHECK(o.p != NULL, T_NAMES "(%zu) failed", plain[i]);
    hb_fill(&o, rng_next(&rng));
    void *was = o.p;
    realloc_to(h, &o, plain[i] + 1000, NULL);
    CHECK(o.p != was, "hm_heap_realloc kept %p, a block of the default heap", was);
    drop(&o, "a block moved from the default heap");
  }

  /* Plain realloc of a heap block keeps its contents; if it moved, the
   * heap no longer has it. */
  const size_t out[][2] = {{1000, 100000}, {300000, 600000}, {100, 50}};
  for (size_t i = 0; i < 3; i++) {
    struct hblock o = {.p = hm_heap_malloc(h, out[i][0]), .size = out[i][0]};
    check_block(o.p, out[i][0], "hm_heap_malloc");
    hb_fill(&o, rng_next(&rng));
    size_t in_h = heap_stats(h).blocks_in_use;
    void *q = t_realloc(o.p, out[i][1]);
    CHECK(q != NULL, "realloc of a heap block failed");
    hb_verify_moved(q, out[i][0] < out[i][1] ? out[i][0] : out[i][1], &o,
                    "after realloc of a heap block");
    if (q != o.p) {
      CHECK(!in_heap(h, o.p), "%p still in the heap after realloc moved it", o.p);
      CHECK(heap_stats(h).blocks_in_use == in_h - 1, "heap counts %zu blocks, expected %zu",
            heap_stats(h).blocks_in_use, in_h - 1);
    }
    t_free(q);
  }

  /* Size 0 frees. */
  const size_t zero[] = {64, 100000, 1 * MiB, 6 * MiB};
  for (size_t i = 0; i < 4; i++) {
    size_t in_h = heap_stats(h).blocks_in_use;
    void *z = hm_heap_malloc(h, zero[i]);
    check_block(z, zero[i], "hm_heap_malloc");
    errno = 0;
    void *r = hm_heap_realloc(h, z, 0);
    CHECK(r == NULL, "hm_heap_realloc(%p, 0) returned %p", z, r);
    CHECK(!in_heap(h, z) && heap_stats(h).blocks_in_use == in_h,
          "hm_heap_realloc(%p (%zu bytes), 0) did not free the block", z, zero[i]);
  }

  /* Failure keeps the block. */
  errno = 0;
  expect_errno(hm_heap_realloc(h, b.p, opaque_size(SIZE_MAX)), ENOMEM,
               "hm_heap_realloc(p, SIZE_MAX)");
  hb_verify(&b, "after a failed hm_heap_realloc");
  CHECK(in_heap(h, b.p), "a failed hm_heap_realloc took %p out of the heap", b.p);
  errno = 0;
  expect_errno(hm_heap_realloc(h, NULL, opaque_size(SIZE_MAX)), ENOMEM,
               "hm_heap_realloc(NULL, SIZE_MAX)");

  drop(&b, "end of the realloc chain");
  CHECK(heap_stats(h).blocks_in_use == 0, "%zu blocks left", heap_stats(h).blocks_in_use);
  hm_heap_destroy(h2);
  hm_heap_destroy(h);
  note("realloc: ok");
}

/* A block of the heap that fits stays where it is ("p itself when it is a
 * block of the heap that fits"), whatever its tier: the same size, and a
 * little less. */
static void test_realloc_in_place(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  const size_t same[] = {1000, 100000, 300000, 1 * MiB, 6 * MiB};
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    struct hblock b = {.p = hm_heap_malloc(h, same[i]), .size = same[i]};
    check_block(b.p, same[i], "hm_heap_malloc");
    hb_fill(&b, rng_next(&rng));
    void *before = b.p;
    realloc_to(h, &b, same[i], NULL);
    CHECK(b.p == before, "hm_heap_realloc(%p, %zu) of a block of that size moved it to %p",
          before, same[i], b.p);
    realloc_to(h, &b, same[i] - same[i] / 16, NULL);
    CHECK(b.p == before, "hm_heap_realloc(%p, %zu) of a block of %zu bytes moved it to %p",
          before, same[i] - same[i] / 16, same[i], b.p);
    drop(&b, "after realloc in place");
  }
  hm_heap_destroy(h);
  note("realloc in place: ok");
}

/* ---- aligned_alloc ---- */

static void test_aligned(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  const size_t sizes[] = {1, 100, 5000, 300000};
  size_t n = 0;
  for (size_t align = 16; align <= 64 * KiB; align *= 2) {
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void *p = hm_heap_aligned_alloc(h, align, sizes[i]);
      char call[64];
      snprintf(call, sizeof call, "hm_heap_aligned_alloc(%zu, ...)", align);
      check_block(p, sizes[i], call);
      CHECK(aligned_to(p, align), "hm_heap_aligned_alloc(%zu, %zu) = %p: misaligned", align,
            sizes[i], p);
      take(&blocks[n++], p, sizes[i], align);
    }
  }
  void *p = hm_heap_aligned_alloc(h, 1 * MiB, 1000);
  check_block(p, 1000, "hm_heap_aligned_alloc(1 MiB, 1000)");
  CHECK(aligned_to(p, 1 * MiB), "hm_heap_aligned_alloc(1 MiB) = %p: misaligned", p);
  take(&blocks[n++], p, 1000, 1 * MiB);
  for (size_t i = 0; i < n; i++)
    hb_verify(&blocks[i], "aligned blocks, after all were written");
  heap_check_exact(h, blocks, n, scratch, MAX_BLOCKS, "aligned blocks");

  void *z1 = hm_heap_aligned_alloc(h, 64, 0), *z2 = hm_heap_aligned_alloc(h, 64, 0);
  CHECK(z1 != NULL && z2 != NULL && z1 != z2 && aligned_to(z1, 64) && aligned_to(z2, 64),
        "hm_heap_aligned_alloc(64, 0) twice: %p, %p", z1, z2);
  t_free(z1);
  t_free(z2);
  errno = 0;
  expect_errno(hm_heap_aligned_alloc(h, 64, opaque_size(SIZE_MAX)), ENOMEM,
               "hm_heap_aligned_alloc(64, SIZE_MAX)");
  errno = 0;
  expect_errno(hm_heap_aligned_alloc(h, 4096, opaque_size(SIZE_MAX - 100)), ENOMEM,
               "hm_heap_aligned_alloc(4096, SIZE_MAX - 100)");
  const size_t bad[] = {0, 3, 24, 48, 100, 4097, 3 * MiB};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    char call[64];
    snprintf(call, sizeof call, "hm_heap_aligned_alloc(%zu, 100)", bad[i]);
    expect_errno(hm_heap_aligned_alloc(h, opaque_size(bad[i]), 100), EINVAL, call);
  }
  /* Freed one by one (through the pointer returned), some by another thread. */
  for (size_t i = 0; i < n; i += 3)
    drop(&blocks[i], "free of an aligned block");
  for (size_t i = 1; i < n; i += 3)
    free_one_elsewhere(&blocks[i]);
  heap_check_exact(h, blocks, n, scratch, MAX_BLOCKS, "aligned blocks, two thirds freed");
  hm_heap_destroy(h);
  memset(blocks, 0, n * sizeof blocks[0]);
  note("aligned_alloc: ok");
}

/* ---- the byte limit ---- */

/* Allocates 4 KiB blocks from h until one fails; returns how many. */
static size_t fill_to_limit(hm_heap *h, size_t limit, void **out, size_t cap)
{
  size_t n = 0;
  for (;;) {
    errno = 0;
    void *p = hm_heap_malloc(h, 4096);
    if (p == NULL) {
      CHECK(errno == ENOMEM, "past the limit: errno %d, expected ENOMEM", errno);
      break;
    }
    CHECK(n < cap, "more than %zu blocks of 4 KiB from a heap limited to %zu bytes", cap, limit);
    memset(p, 0x77, 4096);
    out[n++] = p;
    struct hm_heap_stats st = heap_stats(h);
    CHECK(st.bytes_held <= limit, "the heap holds %zu bytes, its limit is %zu", st.bytes_held,
          limit);
  }
  /* The 4 KiB class has 64 KiB spans: the heap may stop at most one span
   * short of its limit, and never hand out past limit + a span. */
  CHECK(n * 4096 < limit + 64 * KiB, "%zu blocks of 4 KiB (%zu bytes) from a heap limited to %zu",
        n, n * 4096, limit);
  CHECK(n * 4096 >= limit / 2, "only %zu blocks of 4 KiB from a heap limited to %zu bytes", n,
        limit);
  return n;
}

static void test_limit(void)
{
  const size_t limit = 1 * MiB;
  hm_heap_options opt = HM_HEAP_OPTIONS_INIT;
  opt.limit = limit;
  hm_heap *h = hm_heap_create(&opt);
  CHECK(h != NULL, "hm_heap_create(limit %zu) failed", limit);
  static void *got[1024];
  size_t first = fill_to_limit(h, limit, got, 1024);
  /* Once full, other sizes fail too. */
  errno = 0;
  expect_errno(hm_heap_malloc(h, 2 * MiB), ENOMEM, "hm_heap_malloc(2 MiB) past the limit");
  errno = 0;
  expect_errno(hm_heap_malloc(h, 600 * KiB), ENOMEM, "hm_heap_malloc(600 KiB) past the limit");
  errno = 0;
  expect_errno(hm_heap_calloc(h, 1, 9 * MiB), ENOMEM, "hm_heap_calloc(9 MiB) past the limit");
  for (size_t i = 0; i < first; i++)
    CHECK(((unsigned char *)got[i])[4095] == 0x77, "block %p overwritten", got[i]);

  hm_heap_reset(h);
  CHECK(heap_stats(h).blocks_in_use == 0, "%zu blocks after reset", heap_stats(h).blocks_in_use);
  size_t second = fill_to_limit(h, limit, got, 1024);
  CHECK(second == first, "after a reset %zu blocks of 4 KiB fit, before it %zu", second, first);
  hm_heap_reset(h);

  /* Large blocks count, and a freed one makes room again. */
  void *a = hm_heap_malloc(h, 600 * KiB);
  check_block(a, 600 * KiB, "hm_heap_malloc(600 KiB) in a 1 MiB heap");
  errno = 0;
  expect_errno(hm_heap_malloc(h, 600 * KiB), ENOMEM, "a second hm_heap_malloc(600 KiB)");
  t_free(a);
  a = hm_heap_malloc(h, 600 * KiB);
  check_block(a, 600 * KiB, "hm_heap_malloc(600 KiB) after the first was freed");
  errno = 0;
  expect_errno(hm_heap_malloc(h, 5 * MiB), ENOMEM, "hm_heap_malloc(5 MiB) in a 1 MiB heap");
  hm_heap_destroy(h);

  /* A limit below one span: nothing fits. */
  hm_heap_options tiny = {.node = -1, .limit = 1000};
  h = hm_heap_create(&tiny);
  CHECK(h != NULL, "hm_heap_create(limit 1000) failed");
  errno = 0;
  expect_errno(hm_heap_malloc(h, 16), ENOMEM, "hm_heap_malloc(16) in a heap limited to 1000 bytes");
  errno = 0;
  expect_errno(hm_heap_malloc(h, 200 * KiB), ENOMEM,
               "hm_heap_malloc(200 KiB) in a heap limited to 1000 bytes");
  CHECK(heap_stats(h).bytes_held <= 1000, "a heap limited to 1000 bytes holds %zu",
        heap_stats(h).bytes_held);
  hm_heap_destroy(h);

  /* A huge block alone past the limit fails at once. */
  h = hm_heap_create(&opt);
  errno = 0;
  expect_errno(hm_heap_malloc(h, 8 * MiB), ENOMEM, "hm_heap_malloc(8 MiB) in a 1 MiB heap");
  CHECK(heap_stats(h).bytes_held <= limit, "the heap holds %zu bytes",
        heap_stats(h).bytes_held);
  void *s = hm_heap_malloc(h, 100);
  check_block(s, 100, "hm_heap_malloc(100) after a failure");
  hm_heap_destroy(h);
  note("limit: ok (%zu blocks of 4 KiB in 1 MiB)", first);
}

/* ---- stats and visit ---- */

static int count_calls(void *block, size_t size, void *arg)
{
  (void)block;
  (void)size;
  size_t *c = arg;
  ++*c;
  return 0;
}

struct stopper {
  size_t calls, stop_at;
};

static int stop_early(void *block, size_t size, void *arg)
{
  (void)block;
  (void)size;
  struct stopper *s = arg;
  return ++s->calls == s->stop_at ? -7 : 0;
}

static size_t random_size(void)
{
  uint64_t d = rng_below(&rng, 1000);
  if (d < 5)
    return rng_range(&rng, 5 * MiB, 6 * MiB);
  if (d < 30)
    return rng_range(&rng, 130 * KiB, 2 * MiB);
  if (d < 200)
    return rng_range(&rng, 1025, 64 * KiB);
  return rng_range(&rng, 1, 1024);
}

static void test_stats_visit(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  size_t calls = 0;
  CHECK(hm_heap_visit(h, count_calls, &calls) == 0 && calls == 0,
        "visit of an empty heap: %zu calls", calls);
  struct hm_heap_stats st = heap_stats(h);
  CHECK(st.blocks_in_use == 0 && st.bytes_in_use == 0, "a new heap: %zu blocks, %zu bytes",
        st.blocks_in_use, st.bytes_in_use);

  enum { N = 2000 };
  size_t bytes = 0;
  for (size_t i = 0; i < N; i++) {
    size_t s = random_size();
    void *p = rng_below(&rng, 4) == 0 ? hm_heap_calloc(h, 1, s) : hm_heap_malloc(h, s);
    check_block(p, s, "hm_heap_malloc");
    take(&blocks[i], p, s, 0);
    bytes += hb_usable(p);
  }
  st = heap_stats(h);
  CHECK(st.blocks_in_use == N && st.bytes_in_use == bytes,
        "after %d allocations of %zu usable bytes: %zu blocks, %zu bytes", N, bytes,
        st.blocks_in_use, st.bytes_in_use);
  CHECK(st.bytes_held >= st.bytes_in_use, "held %zu < in use %zu", st.bytes_held,
        st.bytes_in_use);
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after allocations");

  /* Stopping early: the callback's value, after exactly that many calls. */
  const size_t stops[] = {1, 2, 500, N};
  for (size_t i = 0; i < 4; i++) {
    struct stopper s = {0, stops[i]};
    int r = hm_heap_visit(h, stop_early, &s);
    CHECK(r == -7 && s.calls == stops[i],
          "visit stopping at call %zu: returned %d after %zu calls", stops[i], r, s.calls);
  }
  calls = 0;
  CHECK(hm_heap_visit(h, count_calls, &calls) == 0 && calls == N, "visit: %zu calls for %d blocks",
        calls, N);

  /* Frees by this thread, then by another. */
  for (size_t i = 0; i < N; i += 3)
    drop(&blocks[i], "free by the heap's thread");
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after frees by the heap's thread");
  for (size_t i = 1; i < N; i += 6)
    blocks[i + N] = blocks[i], blocks[i] = (struct hblock){0};
  free_elsewhere(blocks + N + 1, N - 1);
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after frees by another thread");
  /* The heap keeps allocating: the blocks freed elsewhere can come back. */
  for (size_t i = 0; i < N; i++)
    if (blocks[i].p == NULL && rng_below(&rng, 2) == 0) {
      size_t s = random_size();
      void *p = hm_heap_malloc(h, s);
      check_block(p, s, "hm_heap_malloc after remote frees");
      take(&blocks[i], p, s, 0);
    }
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after more allocations");
  for (size_t i = 0; i < N; i++)
    if (blocks[i].p != NULL)
      hb_verify(&blocks[i], "before the reset");

  hm_heap_reset(h);
  memset(blocks, 0, 2 * N * sizeof blocks[0]);
  st = heap_stats(h);
  CHECK(st.blocks_in_use == 0 && st.bytes_in_use == 0, "after reset: %zu blocks, %zu bytes",
        st.blocks_in_use, st.bytes_in_use);
  calls = 0;
  CHECK(hm_heap_visit(h, count_calls, &calls) == 0 && calls == 0,
        "visit after reset: %zu calls", calls);
  /* And it works as new. */
  for (size_t i = 0; i < 100; i++) {
    size_t s = random_size();
    void *p = hm_heap_malloc(h, s);
    check_block(p, s, "hm_heap_malloc after reset");
    take(&blocks[i], p, s, 0);
  }
  heap_check_exact(h, blocks, 100, scratch, MAX_BLOCKS, "after reset and new allocations");
  free_elsewhere(blocks, 50);
  heap_check_exact(h, blocks, 100, scratch, MAX_BLOCKS, "after reset, half freed elsewhere");
  hm_heap_destroy(h);
  memset(blocks, 0, 100 * sizeof blocks[0]);
  note("stats and visit: ok");
}

/* ---- a heap outlives the thread that made it ---- */

struct made {
  hm_heap *h;
  struct hblock b[64];
  struct rng rng;
};

static void *make_heap(void *arg)
{
  struct made *m = arg;
  m->h = hm_heap_create(NULL);
  CHECK(m->h != NULL, "hm_heap_create in a thread failed");
  for (size_t i = 0; i < 64; i++) {
    size_t s = i % 16 == 0 ? 300 * KiB : rng_range(&m->rng, 1, 5000);
    void *p = hm_heap_malloc(m->h, s);
    check_block(p, s, "hm_heap_malloc in a thread");
    m->b[i] = (struct hblock){.p = p, .size = s};
    hb_fill(&m->b[i], rng_next(&m->rng));
  }
  for (size_t i = 0; i < 64; i += 5)
    drop(&m->b[i], "free by the thread that made the heap");
  return NULL;
}

static void test_thread_exit(void)
{
  static struct made m;
  m.rng = rng_seeded(SEED, 77);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, make_heap, &m) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  /* The thread is gone; its heap lives on here. */
  heap_check_exact(m.h, m.b, 64, scratch, MAX_BLOCKS, "a heap whose thread exited");
  for (size_t i = 0; i < 64; i++)
    if (m.b[i].p != NULL)
      hb_verify(&m.b[i], "a block of a heap whose thread exited");
  for (size_t i = 1; i < 64; i += 3)
    if (m.b[i].p != NULL)
      drop(&m.b[i], "free of a block of a heap whose thread exited");
  for (size_t i = 0; i < 64; i++)
    if (m.b[i].p == NULL) {
      size_t sz = rng_range(&rng, 1, 3000);
      void *p = hm_heap_malloc(m.h, sz);
      check_block(p, sz, "hm_heap_malloc from a heap whose thread exited");
      take(&m.b[i], p, sz, 0);
    }
  heap_check_exact(m.h, m.b, 64, scratch, MAX_BLOCKS, "a heap whose thread exited, reused");
  hm_heap_destroy(m.h);
  note("heap outliving its thread: ok");
}

/* ---- what a visit callback may do ---- */

struct busy_visit {
  hm_heap *other;
  struct hblock *got; /* what the callback allocated from `other` */
  size_t count;
  struct visited *seen;
};

/* Allocates from the default heap and from another private heap, and
 * frees there: allowed (only `heap` itself is off limits). */
static int busy_callback(void *block, size_t size, void *arg)
{
  struct busy_visit *v = arg;
  void *d = t_malloc(size % 3000 + 1);
  CHECK(d != NULL, "malloc inside a visit callback failed");
  memset(d, 0x11, size % 3000 + 1);
  t_free(d);
  void *o = hm_heap_malloc(v->other, 64 + v->count % 5000);
  CHECK(o != NULL, "hm_heap_malloc of another heap inside a visit callback failed");
  v->got[v->count] = (struct hblock){.p = o, .size = 64 + v->count % 5000};
  hb_fill(&v->got[v->count], v->count);
  if (v->count % 4 == 3) {
    drop(&v->got[v->count - 1], "free into another heap inside a visit callback");
  }
  v->seen[v->count++] = (struct visited){block, size, 0};
  return 0;
}

static void test_busy_visit(void)
{
  hm_heap *h = hm_heap_create(NULL), *other = hm_heap_create(NULL);
  CHECK(h != NULL && other != NULL, "hm_heap_create failed");
  enum { N = 400 };
  for (size_t i = 0; i < N; i++) {
    size_t sz = i % 50 == 0 ? 200 * KiB : rng_range(&rng, 1, 4000);
    void *p = hm_heap_malloc(h, sz);
    check_block(p, sz, "hm_heap_malloc");
    take(&blocks[i], p, sz, 0);
  }
  static struct visited seen[N];
  struct busy_visit v = {other, blocks + N, 0, seen};
  CHECK(hm_heap_visit(h, busy_callback, &v) == 0, "hm_heap_visit returned nonzero");
  CHECK(v.count == N, "a visit whose callback allocates elsewhere: %zu calls for %d blocks",
        v.count, N);
  for (size_t i = 0; i < N; i++)
    hb_verify(&blocks[i], "after a visit whose callback allocated");
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after a busy visit");
  heap_check_exact(other, blocks + N, N, scratch, MAX_BLOCKS,
                   "the heap a visit callback allocated from");
  hm_heap_destroy(other);
  hm_heap_destroy(h);
  memset(blocks, 0, 2 * N * sizeof blocks[0]);
  note("visit callback allocating elsewhere: ok");
}

/* ---- hm_trim with heaps holding free spans ---- */

static void trim_job(void *unused)
{
  (void)unused;
  hm_trim();
}

static void test_trim(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  enum { N = 3000 };
  for (size_t i = 0; i < N; i++) {
    size_t sz = random_size();
    void *p = hm_heap_malloc(h, sz);
    check_block(p, sz, "hm_heap_malloc");
    take(&blocks[i], p, sz, 0);
  }
  /* Most freed: whole spans become unused, some by another thread. */
  for (size_t i = 0; i < N; i++)
    if (i % 10 != 0 && i % 2 == 0)
      drop(&blocks[i], "free before a trim");
  for (size_t i = 1; i < N; i += 2)
    if (i % 10 != 0)
      blocks[i + N] = blocks[i], blocks[i] = (struct hblock){0};
  free_elsewhere(blocks + N, N);
  hm_trim();
  on_other_thread(trim_job, NULL);
  for (size_t i = 0; i < N; i++)
    if (blocks[i].p != NULL)
      hb_verify(&blocks[i], "after a trim");
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "after a trim");
  /* The heap allocates on (its next slow path sees the trim). */
  for (size_t i = 0; i < N; i++)
    if (blocks[i].p == NULL) {
      size_t sz = random_size();
      void *p = rng_below(&rng, 2) ? hm_heap_calloc(h, 1, sz) : hm_heap_malloc(h, sz);
      check_block(p, sz, "allocation after a trim");
      take(&blocks[i], p, sz, 0);
    }
  for (size_t i = 0; i < N; i++)
    hb_verify(&blocks[i], "allocated after a trim");
  heap_check_exact(h, blocks, N, scratch, MAX_BLOCKS, "allocated after a trim");
  hm_heap_destroy(h);
  memset(blocks, 0, 2 * N * sizeof blocks[0]);
  note("trim: ok");
}

/* ---- global statistics ---- */

static void test_global_stats(void)
{
  struct hm_stats before, after;
  size_t allowed_before = threads_started_cost();
  hm_stats_get(&before);
  enum { HEAPS = 8, PER = 600 };
  hm_heap *heaps[HEAPS];
  for (size_t k = 0; k < HEAPS; k++) {
    heaps[k] = hm_heap_create(NULL);
    CHECK(heaps[k] != NULL, "hm_heap_create failed");
    for (size_t i = 0; i < PER; i++) {
      size_t s = random_size();
      void *p;
      uint64_t how = rng_below(&rng, 10);
      if (how == 0)
        p = hm_heap_calloc(heaps[k], s, 1);
      else if (how == 1)
        p = hm_heap_aligned_alloc(heaps[k], (size_t)64 << rng_below(&rng, 8), s);
      else if (how == 2)
        p = hm_heap_realloc(heaps[k], hm_heap_malloc(heaps[k], 40), s);
      else
        p = hm_heap_malloc(heaps[k], s);
      check_block(p, s, "allocation from a heap");
      take(&blocks[k * PER + i], p, s, how == 1 ? 64 : 0);
    }
  }
  /* Some freed here, some elsewhere; some heaps reset first. */
  for (size_t i = 0; i < HEAPS * PER; i += 5)
    drop(&blocks[i], "free by the heaps' thread");
  for (size_t i = 2; i < HEAPS * PER; i += 5)
    free_one_elsewhere(&blocks[i]);
  hm_heap_reset(heaps[1]);
  hm_heap_reset(heaps[5]);
  struct hm_stats mid;
  hm_stats_get(&mid);
  CHECK(mid.bytes_in_use > before.bytes_in_use, "hm_stats_get: %zu bytes in use with %d heaps "
        "full of blocks, %zu before",
        mid.bytes_in_use, HEAPS, before.bytes_in_use);
  for (size_t k = 0; k < HEAPS; k++)
    hm_heap_destroy(heaps[k]);
  memset(blocks, 0, HEAPS * PER * sizeof blocks[0]);
  hm_stats_get(&after);
  size_t allowed = threads_started_cost() - allowed_before;
  CHECK(after.bytes_in_use >= before.bytes_in_use &&
            after.bytes_in_use <= before.bytes_in_use + allowed,
        "hm_stats_get bytes_in_use: %zu before the heaps, %zu after all were destroyed (%zu "
        "allowed for threads hmalloc started meanwhile)",
        before.bytes_in_use, after.bytes_in_use, allowed);
  CHECK(after.large_live == before.large_live && after.huge_live == before.huge_live,
        "large/huge live: %zu/%zu before the heaps, %zu/%zu after", before.large_live,
        before.huge_live, after.large_live, after.huge_live);
  CHECK(after.mallocs - before.mallocs >= HEAPS * PER, "hm_stats_get counts %zu mallocs for %d",
        after.mallocs - before.mallocs, HEAPS * PER);
  note("global statistics: ok (bytes in use %zu before, %zu with the heaps, %zu after)",
       before.bytes_in_use, mid.bytes_in_use, after.bytes_in_use);
}

static void *nothing(void *arg)
{
  return arg;
}

int main(void)
{
  set_test_name("test_heap_api (" T_NAMES ")");
  rng = rng_seeded(SEED, 0);
  blocks = map_array(2 * MAX_BLOCKS * sizeof *blocks);
  scratch = map_array(MAX_BLOCKS * sizeof *scratch);
  CHECK(pthread_create(&helper, NULL, helper_main, NULL) == 0, "pthread_create failed");
  /* Once, so that the helper's own start-up (its first free builds its
   * thread state) happens before any baseline. */
  hm_heap *w = hm_heap_create(NULL);
  CHECK(w != NULL, "hm_heap_create failed");
  struct hblock warm = {.p = hm_heap_malloc(w, 100), .size = 100};
  CHECK(warm.p != NULL, "hm_heap_malloc failed");
  hb_fill(&warm, 1);
  free_one_elsewhere(&warm);
  hm_heap_destroy(w);

  /* A thread started and joined: glibc keeps its stack (and the
   * thread-local storage vector it allocated through hmalloc, in the
   * override build) for the next thread, test_thread_exit's. */
  struct hm_stats s0, s1;
  hm_stats_get(&s0);
  pthread_t warm_thread;
  CHECK(pthread_create(&warm_thread, NULL, nothing, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(warm_thread, NULL) == 0, "pthread_join failed");
  hm_stats_get(&s1);
  /* What a thread costs in hmalloc's bytes in use (0 with the hm_ names):
   * allowed once for each thread hmalloc starts during the test. */
  thread_cost = s1.bytes_in_use > s0.bytes_in_use ? s1.bytes_in_use - s0.bytes_in_use : 0;
  threads_at_start = thread_count();

  struct hm_stats start;
  hm_stats_get(&start);
  test_create();
  test_null_heap();
  test_sizes();
  test_calloc();
  test_realloc();
  test_aligned();
  test_limit();
  test_stats_visit();
  test_thread_exit();
  test_busy_visit();
  test_trim();
  test_global_stats();
  test_realloc_in_place();
  struct hm_stats end;
  hm_stats_get(&end);
  size_t allowed = threads_started_cost();
  CHECK(end.bytes_in_use >= start.bytes_in_use &&
            end.bytes_in_use <= start.bytes_in_use + allowed &&
            end.large_live == start.large_live && end.huge_live == start.huge_live,
        "after all tests: bytes in use %zu (%zu at start, %zu allowed for threads hmalloc "
        "started), large %zu (%zu), huge %zu (%zu)",
        end.bytes_in_use, start.bytes_in_use, allowed, end.large_live, start.large_live,
        end.huge_live, start.huge_live);

  pthread_mutex_lock(&helper_lock);
  helper_quit = true;
  pthread_cond_broadcast(&helper_cond);
  pthread_mutex_unlock(&helper_lock);
  pthread_join(helper, NULL);
  note("ok");
  return 0;
}
