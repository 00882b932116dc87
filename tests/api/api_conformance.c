/* API conformance: C, POSIX and glibc edge cases of every allocation
 * function, through the names api_names.h selects. Built twice: test_api
 * (standard names from libhmalloc.so) and test_hm_api (hm_ names). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api_names.h"
#include "test_util.h"

#define KiB ((size_t)1024)
#define MiB (KiB * 1024)

static struct hm_stats stats_now(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st;
}

/* A block hmalloc hands out: 16-aligned, at least `size` usable bytes, all
 * of them writable (the pattern is written over the whole usable size). */
static void check_block(const void *p, size_t size, const char *what)
{
  CHECK(p != NULL, "%s(%zu) returned NULL", what, size);
  CHECK(tu_aligned(p, 16), "%s(%zu) = %p is not 16-aligned", what, size, p);
  size_t usable = a_usable_size((void *)p);
  CHECK(usable >= size, "%s(%zu): usable size %zu", what, size, usable);
}

/* Proves the names under test are hmalloc's: hm_usable_size accepts their
 * blocks (it aborts on a foreign pointer) and hmalloc counts their mallocs. */
static void check_names_are_hmallocs(void)
{
  enum { N = 100 };
  void *p[N];
  struct hm_stats before = stats_now();
  for (size_t i = 0; i < N; i++) {
    p[i] = a_malloc(100 + i);
    CHECK(p[i] != NULL && hm_usable_size(p[i]) >= 100 + i, "block %zu is not hmalloc's", i);
  }
  struct hm_stats after = stats_now();
  CHECK(after.mallocs >= before.mallocs + N, "hmalloc counted %zu mallocs for %d",
        after.mallocs - before.mallocs, N);
  for (size_t i = 0; i < N; i++)
    a_free(p[i]);
  CHECK(stats_now().frees >= after.frees + N, "hmalloc did not count the frees");
}

static void check_malloc_zero(void)
{
  enum { N = 16 };
  void *p[N];
  for (size_t i = 0; i < N; i++) {
    p[i] = a_malloc(0);
    check_block(p[i], 0, "malloc");
    for (size_t j = 0; j < i; j++)
      CHECK(p[i] != p[j], "malloc(0) returned %p twice", p[i]);
  }
  for (size_t i = 0; i < N; i++)
    a_free(p[i]);
}

/* Every size 1..4096 at once, then powers of two up to 64 MiB at once; all
 * blocks stay live while the others are written, so any overlap shows. */
static void check_sizes(const size_t *sizes, size_t count, void **blocks)
{
  for (size_t i = 0; i < count; i++) {
    blocks[i] = a_malloc(sizes[i]);
    check_block(blocks[i], sizes[i], "malloc");
    tu_fill(blocks[i], a_usable_size(blocks[i]), (uint8_t)i);
  }
  for (size_t i = 0; i < count; i++) {
    CHECK(tu_holds(blocks[i], a_usable_size(blocks[i]), (uint8_t)i),
          "block of %zu bytes at %p was overwritten", sizes[i], blocks[i]);
    a_free(blocks[i]);
  }
}

static void check_all_sizes(void)
{
  static size_t sizes[4096];
  static void *blocks[4096];
  for (size_t i = 0; i < 4096; i++)
    sizes[i] = i + 1;
  check_sizes(sizes, 4096, blocks);
  size_t count = 0;
  for (size_t s = 1; s <= 64 * MiB; s *= 2)
    sizes[count++] = s;
  check_sizes(sizes, count, blocks);
}

/* Blocks reused after being dirtied must come back zeroed from calloc. */
static void check_calloc_size(size_t count, size_t size)
{
  enum { ROUNDS = 4 };
  void *p[ROUNDS];
  for (size_t i = 0; i < ROUNDS; i++) {
    p[i] = a_malloc(count * size);
    CHECK(p[i] != NULL, "malloc(%zu) failed", count * size);
    memset(p[i], 0xA5, a_usable_size(p[i]));
  }
  for (size_t i = ROUNDS; i-- > 0;)
    a_free(p[i]);
  for (size_t i = 0; i < ROUNDS; i++) {
    p[i] = a_calloc(count, size);
    check_block(p[i], count * size, "calloc");
    CHECK(all_zero(p[i], count * size), "calloc(%zu, %zu) = %p is not zeroed", count, size,
          p[i]);
    memset(p[i], 0x5A, count * size); /* dirty again for the next round */
  }
  for (size_t i = 0; i < ROUNDS; i++)
    a_free(p[i]);
}

static void check_calloc(void)
{
  static const size_t sizes[] = {1, 8, 16, 24, 100, 1000, 1024, 1025, 4096, 65536,
                                 128 * KiB, 128 * KiB + 1, 200 * KiB, 1 * MiB,
                                 4 * MiB, 8 * MiB, 64 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    check_calloc_size(1, sizes[i]);
    check_calloc_size(sizes[i], 1);
  }
  check_calloc_size(3, 1000);
  check_calloc_size(1000, 3);
  check_calloc_size(300, 1000);
}

static void expect_enomem(const void *p, const char *call)
{
  int e = errno;
  CHECK(p == NULL, "%s returned %p, expected NULL", call, p);
  CHECK(e == ENOMEM, "%s set errno %d (%s), expected ENOMEM", call, e, strerror(e));
}

static void check_absurd_sizes(void)
{
  size_t huge = tu_opaque_size(SIZE_MAX);
  size_t past_ptrdiff = tu_opaque_size((size_t)PTRDIFF_MAX + 1);
  errno = 0;
  expect_enomem(a_malloc(huge), "malloc(SIZE_MAX)");
  errno = 0;
  expect_enomem(a_malloc(past_ptrdiff), "malloc(PTRDIFF_MAX + 1)");
  errno = 0;
  expect_enomem(a_malloc(tu_opaque_size(PTRDIFF_MAX)), "malloc(PTRDIFF_MAX)");
  errno = 0;
  expect_enomem(a_calloc(huge / 2, tu_opaque_size(3)), "calloc(SIZE_MAX / 2, 3)");
  errno = 0;
  expect_enomem(a_calloc((size_t)1 << 33, tu_opaque_size((size_t)1 << 31)),
                "calloc(2^33, 2^31)");
  errno = 0;
  expect_enomem(a_calloc(1, past_ptrdiff), "calloc(1, PTRDIFF_MAX + 1)");
  errno = 0;
  expect_enomem(a_aligned_alloc(64, huge), "aligned_alloc(64, SIZE_MAX)");
  errno = 0;
  expect_enomem(a_memalign(4096, huge), "memalign(4096, SIZE_MAX)");
  errno = 0;
  expect_enomem(a_valloc(huge), "valloc(SIZE_MAX)");
  errno = 0;
  expect_enomem(a_pvalloc(huge), "pvalloc(SIZE_MAX)");
  errno = 0;
  expect_enomem(a_pvalloc(huge - 100), "pvalloc(SIZE_MAX - 100)");
}

/* realloc through a chain of sizes: the common prefix survives each step. */
static void realloc_chain(const size_t *sizes, size_t count)
{
  void *p = NULL;
  size_t have = 0;
  for (size_t i = 0; i < count; i++) {
    void *q = a_realloc(p, sizes[i]);
    if (sizes[i] == 0 && p != NULL) {
      CHECK(q == NULL, "realloc(%p, 0) returned %p, expected NULL", p, q);
      return;
    }
    check_block(q, sizes[i], "realloc");
    size_t kept = have < sizes[i] ? have : sizes[i];
    CHECK(tu_holds(q, kept, 7), "realloc %zu -> %zu lost the prefix", have, sizes[i]);
    tu_fill(q, sizes[i], 7);
    p = q;
    have = sizes[i];
  }
  a_free(p);
}

static void check_realloc_chains(void)
{
  static const size_t chain1[] = {24, 200 * KiB, 8 * MiB, 100, 0};
  static const size_t chain2[] = {1, 16, 17, 4096, 128 * KiB, 128 * KiB + 1, 4 * MiB,
                                  4 * MiB + 1, 64 * MiB, 3 * MiB, 1000, 16, 0};
  /* Large blocks grown and shrunk in place, and huge ones shrunk. */
  static const size_t chain3[] = {200 * KiB, 300 * KiB, 150 * KiB, 1 * MiB, 140 * KiB,
                                  32 * MiB, 20 * MiB, 5 * MiB, 33 * MiB, 64, 0};
  /* Small blocks shrinking a lot, then growing within and past the block. */
  static const size_t chain4[] = {4000, 3000, 100, 20, 30, 60, 2000, 70000, 100000, 0};
  realloc_chain(chain1, sizeof chain1 / sizeof chain1[0]);
  realloc_chain(chain2, sizeof chain2 / sizeof chain2[0]);
  realloc_chain(chain3, sizeof chain3 / sizeof chain3[0]);
  realloc_chain(chain4, sizeof chain4 / sizeof chain4[0]);
}

/* realloc(p, 0) frees p: hmalloc counts one more free. */
static void check_realloc_zero_frees(size_t size)
{
  void *p = a_malloc(size);
  CHECK(p != NULL, "malloc(%zu) failed", size);
  struct hm_stats before = stats_now();
  CHECK(a_realloc(p, 0) == NULL, "realloc(p, 0) did not return NULL");
  struct hm_stats after = stats_now();
  CHECK(after.frees >= before.frees + 1, "realloc(p of %zu bytes, 0) did not free it", size);
  CHECK(after.bytes_in_use + size <= before.bytes_in_use,
        "realloc(p of %zu bytes, 0): bytes in use went from %zu to %zu", size,
        before.bytes_in_use, after.bytes_in_use);
}

static void check_realloc(void)
{
  struct hm_stats before = stats_now();
  void *p = a_realloc(NULL, 100);
  check_block(p, 100, "realloc(NULL)");
  CHECK(stats_now().mallocs >= before.mallocs + 1, "realloc(NULL, 100) is not a malloc");
  a_free(p);
  check_realloc_zero_frees(24);
  check_realloc_zero_frees(200 * KiB);
  check_realloc_zero_frees(8 * MiB);
  check_realloc_chains();

  /* A failed realloc leaves the block as it was. (tu_opaque_ptr: GCC
   * cannot know that the call fails, and would warn about using p after.) */
  static const size_t sizes[] = {100, 200 * KiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t size = sizes[i];
    p = a_malloc(size);
    CHECK(p != NULL, "malloc(%zu) failed", size);
    tu_fill(p, size, 3);
    errno = 0;
    expect_enomem(a_realloc(tu_opaque_ptr(p), tu_opaque_size(SIZE_MAX)), "realloc(p, SIZE_MAX)");
    errno = 0;
    expect_enomem(a_realloc(tu_opaque_ptr(p), tu_opaque_size((size_t)PTRDIFF_MAX + 1)),
                  "realloc(p, PTRDIFF_MAX + 1)");
    CHECK(tu_holds(p, size, 3), "a failed realloc changed the block of %zu bytes", size);
    a_free(p);
  }
}

static void check_reallocarray(void)
{
  void *p = a_reallocarray(NULL, 4, 25);
  check_block(p, 100, "reallocarray(NULL)");
  tu_fill(p, 100, 9);
  errno = 0;
  expect_enomem(a_reallocarray(tu_opaque_ptr(p), tu_opaque_size(SIZE_MAX / 2), 3), "reallocarray overflow");
  errno = 0;
  expect_enomem(a_reallocarray(tu_opaque_ptr(p), (size_t)1 << 33, tu_opaque_size((size_t)1 << 31)),
                "reallocarray(p, 2^33, 2^31)");
  CHECK(tu_holds(p, 100, 9), "a failed reallocarray changed the block");
  void *q = a_reallocarray(p, 1000, 300);
  check_block(q, 300000, "reallocarray");
  CHECK(tu_holds(q, 100, 9), "reallocarray lost the prefix");
  a_free(q);
}

static void expect_einval(const void *p, size_t alignment)
{
  int e = errno;
  CHECK(p == NULL, "aligned_alloc(%zu, 100) returned %p, expected NULL", alignment, p);
  CHECK(e == EINVAL, "aligned_alloc(%zu, 100) set errno %d, expected EINVAL", alignment, e);
}

/* Alignments 1 .. 1 MiB, 4 MiB and 16 MiB. */
static size_t nth_alignment(size_t i)
{
  return i <= 20 ? (size_t)1 << i : (size_t)1 << (22 + 2 * (i - 21));
}
#define ALIGNMENTS 23

static const size_t aligned_sizes[] = {0, 1, 64, 100, 4096, 5000, 131072, 131073, 300000, 5 * MiB};
#define ALIGNED_SIZES (sizeof aligned_sizes / sizeof aligned_sizes[0])

static void check_aligned_alloc(void)
{
  static const size_t bad[] = {0, 3, 5, 24, 48, 100, 4097, 3 * MiB, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    expect_einval(a_aligned_alloc(tu_opaque_size(bad[i]), 100), bad[i]);
  }
  for (size_t a = 0; a < ALIGNMENTS; a++) {
    size_t align = nth_alignment(a);
    void *p[ALIGNED_SIZES];
    for (size_t i = 0; i < ALIGNED_SIZES; i++) {
      p[i] = a_aligned_alloc(align, aligned_sizes[i]);
      check_block(p[i], aligned_sizes[i], "aligned_alloc");
      CHECK(tu_aligned(p[i], align), "aligned_alloc(%zu, %zu) = %p is misaligned", align,
            aligned_sizes[i], p[i]);
      tu_fill(p[i], aligned_sizes[i], (uint8_t)(a + i));
    }
    /* free_aligned_sized with the sizes they were allocated with. */
    for (size_t i = 0; i < ALIGNED_SIZES; i++) {
      CHECK(tu_holds(p[i], aligned_sizes[i], (uint8_t)(a + i)),
            "aligned_alloc(%zu, %zu) block was overwritten", align, aligned_sizes[i]);
      a_free_aligned_sized(p[i], align, aligned_sizes[i]);
    }
  }
}

static void check_posix_memalign(void)
{
  static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 4097, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = NULL;
    int r = a_posix_memalign(&p, tu_opaque_size(bad[i]), 100);
    CHECK(r == EINVAL, "posix_memalign(alignment %zu) returned %d, expected EINVAL", bad[i], r);
  }
  for (size_t align = sizeof(void *); align <= 1 * MiB; align *= 2) {
    for (size_t i = 0; i + 1 < ALIGNED_SIZES; i++) {
      void *p = NULL;
      int r = a_posix_memalign(&p, align, aligned_sizes[i]);
      CHECK(r == 0, "posix_memalign(%zu, %zu) returned %d", align, aligned_sizes[i], r);
      check_block(p, aligned_sizes[i], "posix_memalign");
      CHECK(tu_aligned(p, align), "posix_memalign(%zu) gave %p", align, p);
      tu_fill(p, aligned_sizes[i], 1);
      CHECK(tu_holds(p, aligned_sizes[i], 1), "posix_memalign block does not hold its data");
      a_free(p);
    }
  }
  static const size_t absurd[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1};
  for (size_t i = 0; i < sizeof absurd / sizeof absurd[0]; i++)
    for (size_t align = 64; align <= 1 * MiB; align *= 128) {
      void *p = NULL;
      int r = a_posix_memalign(&p, align, tu_opaque_size(absurd[i]));
      CHECK(r == ENOMEM, "posix_memalign(%zu, %zu) returned %d, expected ENOMEM", align,
            absurd[i], r);
    }
}

/* memalign rounds a non-power-of-two alignment up to the next power of
 * two. Many blocks, so that an unrounded alignment cannot pass by luck. */
static void check_memalign(void)
{
  static const size_t asked[][2] = {{48, 64}, {96, 128}, {3, 4}, {200, 256}, {5000, 8192}};
  enum { N = 32 };
  for (size_t k = 0; k < sizeof asked / sizeof asked[0]; k++) {
    void *p[N];
    for (size_t i = 0; i < N; i++) {
      p[i] = a_memalign(asked[k][0], 48);
      check_block(p[i], 48, "memalign");
      CHECK(tu_aligned(p[i], asked[k][1]), "memalign(%zu, 48) = %p is not %zu-aligned",
            asked[k][0], p[i], asked[k][1]);
    }
    for (size_t i = 0; i < N; i++)
      a_free(p[i]);
  }
  void *p = a_memalign(0, 100);
  check_block(p, 100, "memalign(0)");
  a_free(p);
}

static void check_page_allocs(void)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  static const size_t sizes[] = {1, 100, 4096, 5000, 300000, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *v = a_valloc(sizes[i]);
    check_block(v, sizes[i], "valloc");
    CHECK(tu_aligned(v, page), "valloc(%zu) = %p is not page-aligned", sizes[i], v);
    tu_fill(v, sizes[i], 2);
    void *pv = a_pvalloc(sizes[i]);
    size_t rounded = (sizes[i] + page - 1) / page * page;
    check_block(pv, rounded, "pvalloc");
    CHECK(tu_aligned(pv, page), "pvalloc(%zu) = %p is not page-aligned", sizes[i], pv);
    tu_fill(pv, rounded, 4);
    CHECK(tu_holds(v, sizes[i], 2), "valloc(%zu) block was overwritten", sizes[i]);
    CHECK(tu_holds(pv, rounded, 4), "pvalloc(%zu) block was overwritten", sizes[i]);
    a_free(v);
    a_free(pv);
  }
  void *pv = a_pvalloc(0);
  check_block(pv, page, "pvalloc(0) then usable size >= page: pvalloc");
  a_free(pv);
}

/* free_sized with the requested size or the usable size is accepted and
 * frees the block. */
static void check_free_sized(void)
{
  static const size_t sizes[] = {1, 100, 4096, 200 * KiB, 8 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = a_malloc(sizes[i]);
    void *q = a_malloc(sizes[i]);
    check_block(p, sizes[i], "malloc");
    check_block(q, sizes[i], "malloc");
    struct hm_stats before = stats_now();
    a_free_sized(p, sizes[i]);
    a_free_sized(q, a_usable_size(q));
    CHECK(stats_now().frees >= before.frees + 2, "free_sized(%zu) did not free", sizes[i]);
  }
  a_free_sized(NULL, 0);
  a_free_sized(NULL, 100);
  CHECK(a_usable_size(NULL) == 0, "usable size of NULL is %zu", a_usable_size(NULL));
}

static void check_statistics_and_trim(void)
{
  size_t before = a_bytes_in_use();
  void *p = a_malloc(1 * MiB);
  void *q = a_malloc(100);
  CHECK(p != NULL && q != NULL, "malloc failed");
  size_t during = a_bytes_in_use();
  CHECK(during > 0, "bytes in use (mallinfo2 uordblks) is 0 with blocks live");
  CHECK(during >= before + 1 * MiB, "bytes in use went from %zu to %zu for 1 MiB + 100", before,
        during);
  a_free(p);
  a_free(q);
  int trimmed = a_trim();
  CHECK(trimmed == 0 || trimmed == 1, "trim returned %d", trimmed);
}

#ifndef TEST_HM_NAMES
/* The __libc_ names glibc calls internally resolve to libhmalloc.so. */
static void *libc_name(const char *name)
{
  void *f = dlsym(RTLD_DEFAULT, name);
  CHECK(f != NULL, "dlsym(%s): %s", name, dlerror());
  Dl_info info;
  CHECK(dladdr(f, &info) != 0 && info.dli_fname != NULL, "dladdr(%s) failed", name);
  CHECK(strstr(info.dli_fname, "libhmalloc") != NULL, "%s comes from %s", name,
        info.dli_fname);
  return f;
}

static void check_libc_aliases(void)
{
  void *(*l_malloc)(size_t) = (void *(*)(size_t))libc_name("__libc_malloc");
  void (*l_free)(void *) = (void (*)(void *))libc_name("__libc_free");
  void *(*l_calloc)(size_t, size_t) = (void *(*)(size_t, size_t))libc_name("__libc_calloc");
  void *(*l_realloc)(void *, size_t) = (void *(*)(void *, size_t))libc_name("__libc_realloc");
  void *(*l_memalign)(size_t, size_t) =
      (void *(*)(size_t, size_t))libc_name("__libc_memalign");
  void *(*l_valloc)(size_t) = (void *(*)(size_t))libc_name("__libc_valloc");
  void *(*l_pvalloc)(size_t) = (void *(*)(size_t))libc_name("__libc_pvalloc");

  struct hm_stats before = stats_now();
  void *m = l_malloc(100);
  CHECK(m != NULL && hm_usable_size(m) >= 100, "__libc_malloc block is not hmalloc's");
  tu_fill(m, 100, 5);
  m = l_realloc(m, 300 * KiB);
  CHECK(m != NULL && tu_holds(m, 100, 5), "__libc_realloc lost the data");
  void *c = l_calloc(10, 1000);
  CHECK(c != NULL && all_zero(c, 10000), "__libc_calloc block is not zeroed");
  void *a = l_memalign(256, 100);
  CHECK(a != NULL && tu_aligned(a, 256), "__libc_memalign(256) gave %p", a);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void *v = l_valloc(100);
  CHECK(v != NULL && tu_aligned(v, page), "__libc_valloc gave %p", v);
  void *pv = l_pvalloc(100);
  CHECK(pv != NULL && tu_aligned(pv, page) && hm_usable_size(pv) >= page,
        "__libc_pvalloc gave %p", pv);
  struct hm_stats during = stats_now();
  CHECK(during.mallocs >= before.mallocs + 5, "the __libc_ blocks were not counted");
  l_free(m);
  l_free(c);
  l_free(a);
  l_free(v);
  l_free(pv);
  CHECK(stats_now().frees >= during.frees + 5, "__libc_free did not free");
}
#endif

int main(void)
{
  check_names_are_hmallocs();
  check_malloc_zero();
  check_all_sizes();
  check_calloc();
  check_absurd_sizes();
  check_realloc();
  check_reallocarray();
  check_aligned_alloc();
  check_posix_memalign();
  check_memalign();
  check_page_allocs();
  check_free_sized();
  check_statistics_and_trim();
#ifndef TEST_HM_NAMES
  check_libc_aliases();
#endif
  printf("api conformance (%s): ok\n", API_LABEL);
  return 0;
}
