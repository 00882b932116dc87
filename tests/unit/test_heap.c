/* Thread caches, through hm_malloc/hm_free: spans owned by the calling
 * thread, LIFO reuse, remote frees, thread exit, and reuse of memory and
 * caches across many short threads. */
#include <string.h>

#include "hmalloc.h"
#include "init.h"
#include "pagemap.h"
#include "tcache.h"
#include "unit.h"
#include "unit_region.h"

static hm_span *span_of(const void *p)
{
  hm_span *s = hm_pagemap_header(p);
  CHECK(s != NULL && s->kind == HM_KIND_SMALL, "block %p has no small span", p);
  return s;
}

static void *malloc_checked(size_t size)
{
  void *p = hm_malloc(size);
  CHECK(p != NULL, "hm_malloc(%zu) returned NULL", size);
  memset(p, 0xa5, size);
  return p;
}

/* Blocks of every class come from spans of that class the caller owns. */
static void check_owned_spans(void)
{
  void *blocks[HM_CLASSES][2];
  for (unsigned cls = 0; cls < HM_CLASSES; cls++)
    for (int i = 0; i < 2; i++) {
      void *p = blocks[cls][i] = malloc_checked(hm_class_size[cls]);
      hm_span *s = span_of(p);
      CHECK(s->cls == cls, "a block of %u bytes is in a span of class %u, expected %u",
            hm_class_size[cls], s->cls, cls);
      CHECK(atomic_load(&s->owner) == hm_tls && atomic_load(&s->state) == HM_SPAN_OWNED,
            "block %p of class %u: span owner %p state %u, expected owner %p (this thread)", p,
            cls, (void *)atomic_load(&s->owner), atomic_load(&s->state), (void *)hm_tls);
      CHECK(hm_tls->bins[cls].span == s, "class %u: the bin does not hold the block's span",
            cls);
    }
  for (unsigned cls = 0; cls < HM_CLASSES; cls++)
    for (int i = 0; i < 2; i++)
      hm_free(blocks[cls][i]);
  UNIT_PASS("blocks of every class come from a span owned by the calling thread");
}

static void check_lifo_reuse(void)
{
  void *p = malloc_checked(100);
  hm_free(p);
  CHECK(hm_malloc(100) == p, "a freed block is not the next one handed out");
  void *a = malloc_checked(100), *b = malloc_checked(100);
  hm_free(a);
  hm_free(b);
  void *first = hm_malloc(100), *second = hm_malloc(100);
  CHECK(first == b && second == a, "freed a=%p then b=%p, got back %p then %p", a, b, first,
        second);
  hm_free(p);
  hm_free(first);
  hm_free(second);
  UNIT_PASS("a freed block is reused first (LIFO)");
}

/* Steps of the exchange between the main thread and a worker. */
static _Atomic unsigned step;

enum { REMOTE_SIZE = 200 };
static void *remote_block;

/* Allocates a block, lets the main thread free it, then allocates until
 * it gets the block back: the owner's cache takes remote frees in. */
static void *remote_owner(void *arg)
{
  (void)arg;
  remote_block = malloc_checked(REMOTE_SIZE);
  atomic_store(&step, 1);
  unit_wait_for(&step, 2); /* the main thread freed it */
  hm_span *s = span_of(remote_block);
  size_t cap = hm_class_capacity(s->cls);
  void **others = calloc(cap + 1, sizeof *others);
  CHECK(others != NULL, "calloc failed");
  size_t n = 0;
  void *p;
  while ((p = malloc_checked(REMOTE_SIZE)) != remote_block) {
    CHECK(n < cap, "%zu blocks allocated without getting back the remotely freed %p", n,
          remote_block);
    others[n++] = p;
  }
  hm_free(p);
  while (n > 0)
    hm_free(others[--n]);
  free(others);
  return NULL;
}

static void check_remote_free(void)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, remote_owner, NULL) == 0, "pthread_create failed");
  unit_wait_for(&step, 1);
  hm_span *s = span_of(remote_block);
  hm_tcache *owner = atomic_load(&s->owner);
  CHECK(owner != NULL && owner != hm_tls, "the worker's block is in a span owned by %p",
        (void *)owner);
  hm_free(remote_block);
  CHECK(hm_block_list_contains(hm_remote_list(atomic_load(&s->remote)), remote_block),
        "a block freed by another thread is not on its span's remote list");
  CHECK(!hm_block_list_contains(hm_tls->bins[s->cls].free, remote_block),
        "a block of another thread's span went on this thread's free list");
  atomic_store(&step, 2);
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  UNIT_PASS("a block freed by another thread goes to the remote list and back to its owner");
}

/* A worker that exits with live blocks: a full span (class 87), a partly
 * used one (class 5) and one whose blocks it freed (class 6). */
enum { FULL_CLS = 87, PARTIAL_CLS = 5, EMPTIED_CLS = 6, PARTIAL_LIVE = 3 };

static struct {
  hm_tcache *cache;
  void *full[16];
  void *partial[PARTIAL_LIVE];
  hm_span *emptied;
  unsigned emptied_granules;
} exiting;

static void *exiting_worker(void *arg)
{
  (void)arg;
  size_t cap = hm_class_capacity(FULL_CLS);
  CHECK(cap <= 16, "class %d holds %zu blocks per span", FULL_CLS, cap);
  for (size_t i = 0; i < cap; i++) {
    exiting.full[i] = malloc_checked(hm_class_size[FULL_CLS]);
    CHECK(span_of(exiting.full[i]) == span_of(exiting.full[0]),
          "block %zu of class %d is not in the span of block 0", i, FULL_CLS);
  }
  for (int i = 0; i < PARTIAL_LIVE; i++)
    exiting.partial[i] = malloc_checked(hm_class_size[PARTIAL_CLS]);
  void *gone[PARTIAL_LIVE];
  for (int i = 0; i < PARTIAL_LIVE; i++)
    gone[i] = malloc_checked(hm_class_size[EMPTIED_CLS]);
  exiting.emptied = span_of(gone[0]);
  exiting.emptied_granules = exiting.emptied->granules;
  for (int i = 0; i < PARTIAL_LIVE; i++)
    hm_free(gone[i]);
  exiting.cache = hm_tls;
  return NULL;
}

static void check_let_go(const hm_span *s, unsigned expected_state, const char *what)
{
  CHECK(atomic_load(&s->owner) == NULL, "%s span %p still owned by %p", what, (const void *)s,
        (void *)atomic_load(&s->owner));
  CHECK(atomic_load(&s->state) == expected_state, "%s span %p: state %u, expected %u", what,
        (const void *)s, atomic_load(&s->state), expected_state);
}

static void check_thread_exit(void)
{
  pthread_t t;
  CHECK(pthread_create(&t, NULL, exiting_worker, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  CHECK(atomic_load(&exiting.cache->in_use) == 0, "the exited thread's cache is still in use");
  hm_span *full = span_of(exiting.full[0]), *partial = span_of(exiting.partial[0]);
  check_let_go(full, HM_SPAN_DETACHED, "full");
  check_let_go(partial, HM_SPAN_LISTED, "partly used");
  unit_check_given_back(exiting.emptied, exiting.emptied_granules,
                        "the span an exited thread had emptied");

  /* The first free into the detached span lists it. */
  hm_free(exiting.full[0]);
  check_let_go(full, HM_SPAN_LISTED, "detached, then freed into,");
  for (size_t i = 1; i < hm_class_capacity(FULL_CLS); i++)
    hm_free(exiting.full[i]);
  for (int i = 0; i < PARTIAL_LIVE; i++)
    hm_free(exiting.partial[i]);
  UNIT_PASS("an exited thread's spans are let go (detached, listed, given back to the region); "
            "its blocks freed");
}

/* Many short threads, a wave at a time: each allocates and frees blocks of
 * a few classes. Their caches are reused; their spans go back to the
 * region when they exit, and the spans of the next threads form on the
 * same granules (resident ones are claimed first), not on new ones. */
#define WAVES UNIT_SCALE(150)
#define WAVE_THREADS 8
static const size_t short_sizes[] = {24, 100, 500, 3000, 20000, 100000};
#define SHORT_CLASSES (sizeof short_sizes / sizeof short_sizes[0])

/* Every granule a span of the short threads covered, one bit each, in a
 * row per region (registered on first sight). */
#define MAX_REGIONS 16
static _Atomic uintptr_t footprint_regions[MAX_REGIONS];
static _Atomic uint64_t footprint[MAX_REGIONS][HM_REGION_WORDS];

static void note_footprint(const hm_span *s)
{
  uintptr_t base = (uintptr_t)hm_region_of(s);
  unsigned row = 0;
  for (;; row++) {
    CHECK(row < MAX_REGIONS, "short threads' spans in more than %d regions", MAX_REGIONS);
    uintptr_t seen = atomic_load(&footprint_regions[row]);
    if (seen == 0 && atomic_compare_exchange_strong(&footprint_regions[row], &seen, base))
      break;
    if (seen == base)
      break;
  }
  size_t g = unit_granule_index(s);
  atomic_fetch_or(&footprint[row][g / 64], unit_bits(s->granules, g % 64));
}

static size_t footprint_granules(void)
{
  size_t n = 0;
  for (unsigned row = 0; row < MAX_REGIONS; row++)
    for (size_t w = 0; w < HM_REGION_WORDS; w++)
      n += (size_t)__builtin_popcountll(atomic_load(&footprint[row][w]));
  return n;
}

static void *short_lived(void *arg)
{
  hm_tcache **cache = arg;
  void *blocks[SHORT_CLASSES][20];
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    for (size_t i = 0; i < 20 && i < hm_class_capacity(hm_class_of(short_sizes[c])); i++) {
      blocks[c][i] = malloc_checked(short_sizes[c]);
      note_footprint(span_of(blocks[c][i]));
    }
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    for (size_t i = 0; i < 20 && i < hm_class_capacity(hm_class_of(short_sizes[c])); i++)
      hm_free(blocks[c][i]);
  *cache = hm_tls;
  return NULL;
}

/* Distinct caches seen so far, out of `count` new ones. */
static size_t note_caches(hm_tcache **seen, size_t distinct, hm_tcache *const *fresh,
                          size_t count)
{
  for (size_t i = 0; i < count; i++) {
    size_t j = 0;
    while (j < distinct && seen[j] != fresh[i])
      j++;
    if (j == distinct)
      seen[distinct++] = fresh[i];
  }
  return distinct;
}

static void check_short_threads(void)
{
  hm_arena *a = hm_arena_for_node(-1);
  size_t regions_before = atomic_load(&a->regions_live);
  size_t spans_before = atomic_load(&a->spans_formed);
  hm_tcache *seen[WAVES * WAVE_THREADS];
  size_t distinct = 0;
  for (int w = 0; w < WAVES; w++) {
    hm_tcache *caches[WAVE_THREADS];
    run_threads(WAVE_THREADS, short_lived, caches, sizeof caches[0]);
    distinct = note_caches(seen, distinct, caches, WAVE_THREADS);
  }
  /* A wave holds at most one span per class per thread at once; twice
   * that leaves room for first-fit fragmentation. A leak, or spans formed
   * on new granules instead of the freed ones, would grow with the waves. */
  size_t wave_granules = 0;
  for (size_t c = 0; c < SHORT_CLASSES; c++)
    wave_granules += WAVE_THREADS * hm_class_granules[hm_class_of(short_sizes[c])];
  size_t granules = footprint_granules();
  CHECK(granules <= 2 * wave_granules,
        "%d threads in waves of %d: their spans covered %zu granules (at most %zu expected)",
        WAVES * WAVE_THREADS, WAVE_THREADS, granules, 2 * wave_granules);
  CHECK(distinct <= 2 * WAVE_THREADS, "%d threads in waves of %d used %zu distinct caches",
        WAVES * WAVE_THREADS, WAVE_THREADS, distinct);
  size_t regions = atomic_load(&a->regions_live) - regions_before;
  CHECK(regions <= 2, "%d short threads reserved %zu new regions", WAVES * WAVE_THREADS,
        regions);
  printf("ok: %d short threads: %zu spans formed on %zu granules (a wave holds at most %zu), "
         "%zu caches, %zu new regions\n",
         WAVES * WAVE_THREADS, atomic_load(&a->spans_formed) - spans_before, granules,
         wave_granules, distinct, regions);
}

int main(void)
{
  hm_process_init(); /* the class table, read before the first hm_malloc */
  check_owned_spans();
  check_lifo_reuse();
  check_remote_free();
  check_thread_exit();
  check_short_threads();
  return 0;
}
