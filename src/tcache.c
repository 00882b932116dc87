#include "tcache.h"

#include <errno.h>
#include <string.h>

#include "init.h"
#include "purge.h"
#include "stats.h"

__thread hm_tcache *hm_tls __attribute__((tls_model("initial-exec"))) = &hm_tcache_empty;

hm_tcache hm_tcache_empty;
static hm_tcache tcache_starting = {.kind = HM_TCACHE_STARTING};
static hm_tcache tcache_dead = {.kind = HM_TCACHE_DEAD};

/* Caches are carved 16 to a granule and never unmapped: a freed one goes on
 * a free stack, and the chunks stay listed so a fork child can find the
 * caches of threads that no longer exist. */
#define CACHES_PER_CHUNK (HM_GRANULE / sizeof(hm_tcache))

static hm_stack pool_free;
static hm_tcache *_Atomic pool_chunks;

/* Chunks come straight from the OS, not from a region: metadata that lives
 * for ever must not keep a region from being released. */
static hm_tcache *pool_grow(void)
{
  hm_tcache *chunk = hm_os_reserve(HM_GRANULE, HM_GRANULE, true);
  if (chunk == NULL)
    return NULL;
  hm_tcache *head = atomic_load_explicit(&pool_chunks, memory_order_relaxed);
  do {
    chunk->next_chunk = head;
  } while (!atomic_compare_exchange_weak_explicit(&pool_chunks, &head, chunk,
                                                  memory_order_release, memory_order_relaxed));
  for (size_t i = 1; i < CACHES_PER_CHUNK; i++)
    hm_stack_push(&pool_free, &chunk[i].link);
  return chunk;
}

static hm_tcache *pool_acquire(void)
{
  hm_tcache *tc = (hm_tcache *)hm_stack_pop(&pool_free);
  if (tc == NULL)
    tc = pool_grow();
  if (tc == NULL)
    return NULL;
  memset(tc->bins, 0, sizeof tc->bins);
  tc->busy = 0;
  tc->kind = HM_TCACHE_REAL;
  atomic_store_explicit(&tc->in_use, 1, memory_order_release);
  return tc;
}

static void pool_release(hm_tcache *tc)
{
  atomic_store_explicit(&tc->in_use, 0, memory_order_relaxed);
  hm_stack_push(&pool_free, &tc->link);
}

void hm_tcache_each(void (*visit)(const hm_tcache *, void *), void *arg)
{
  for (hm_tcache *c = atomic_load_explicit(&pool_chunks, memory_order_acquire); c;
       c = c->next_chunk)
    for (size_t i = 0; i < CACHES_PER_CHUNK; i++)
      if (atomic_load_explicit(&c[i].in_use, memory_order_acquire))
        visit(&c[i], arg);
}

static void own(hm_span *s, hm_tcache *tc)
{
  atomic_store_explicit(&s->owner, tc, memory_order_relaxed);
  atomic_store_explicit(&s->state, HM_SPAN_OWNED, memory_order_relaxed);
}

/* One block for a thread without a usable cache: take a span, take a block,
 * give the span back. Costs two CAS, and is only for re-entrant calls and
 * threads being born or dying. */
static hm_block *alloc_direct(unsigned cls)
{
  hm_arena *a = hm_arena_for_node(-1);
  for (;;) {
    hm_span *s = hm_arena_take_span(a, cls);
    if (s == NULL)
      return NULL;
    own(s, NULL);
    hm_block *list = hm_span_collect(s);
    if (list != NULL) {
      hm_span_release(s, list->next);
      hm_stats_count_direct(hm_class_size[cls]);
      return list;
    }
    hm_span_detach(s, false);
  }
}

static _Atomic uint32_t trim_epoch;

/* Lets go of the owned spans whose blocks are all free, so they can go back
 * to the OS. */
static void release_unused(hm_tcache *tc)
{
  tc->trim_epoch = atomic_load_explicit(&trim_epoch, memory_order_relaxed);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &tc->bins[c];
    hm_span *s = bin->span;
    if (s != NULL && hm_span_owner_unused(s, bin->free)) {
      bin->span = NULL;
      hm_span_release(s, bin->free);
      bin->free = NULL;
    }
  }
}

void hm_tcache_trim(hm_tcache *tc)
{
  atomic_fetch_add_explicit(&trim_epoch, 1, memory_order_relaxed);
  if (tc->kind == HM_TCACHE_REAL && !tc->busy)
    release_unused(tc);
}

static hm_block *refill(hm_tcache *tc, unsigned cls)
{
  /* Another thread trimmed: do our part, lazily, here. */
  if (tc->trim_epoch != atomic_load_explicit(&trim_epoch, memory_order_relaxed))
    release_unused(tc);
  /* New spans come from the node the thread runs on now; the spans it owns
   * stay with their node and go back to it. */
  tc->arena = hm_arena_for_node(-1);
  hm_bin *bin = &tc->bins[cls];
  hm_span *s = bin->span;
  if (s != NULL) {
    hm_block *list = hm_span_collect(s);
    if (list != NULL)
      return list;
    /* Full. Unlink before detaching: once detached, another thread may list
     * the span, and a fork child must not find it here as well. */
    bin->span = NULL;
    if (hm_span_detach(s, true)) {
      own(s, tc);
      bin->span = s;
      return hm_span_collect(s);
    }
  }
  for (;;) {
    s = hm_arena_take_span(tc->arena, cls);
    if (s == NULL)
      return NULL;
    own(s, tc);
    hm_block *list = hm_span_collect(s);
    if (list != NULL) {
      bin->span = s;
      return list;
    }
    hm_span_detach(s, false);
  }
}

static hm_tcache *thread_start(void)
{
  hm_tls = &tcache_starting;
  hm_process_init();
  hm_tcache *tc = pool_acquire();
  if (tc == NULL) {
    hm_tls = &hm_tcache_empty; /* try again at the next malloc */
    return &tcache_starting;
  }
  tc->arena = hm_arena_for_node(-1);
  hm_os_thread_attach(tc); /* may allocate: served directly */
  hm_stats_count_thread();
  hm_tls = tc;
  hm_topology_start(); /* once per process; may allocate, now through tc */
  return tc;
}

void hm_tcache_process_init(void)
{
  hm_tcache *tc = hm_tls;
  hm_tls = &tcache_starting;
  hm_process_init();
  hm_tls = tc;
}

void *hm_tcache_alloc_slow(hm_tcache *tc, size_t size, uint64_t *old_key)
{
  if (tc->kind == HM_TCACHE_EMPTY)
    tc = thread_start(); /* first: the class table is built at process start */
  unsigned cls = hm_class_of(size);
  hm_block *b;
  bool refilled = false;
  if (tc->kind != HM_TCACHE_REAL || tc->busy) {
    b = alloc_direct(cls);
  } else {
    hm_bin *bin = &tc->bins[cls];
    b = bin->free;
    if (b == NULL) {
      tc->busy = 1;
      b = refill(tc, cls);
      tc->busy = 0;
      refilled = true;
    }
    if (b != NULL) {
      bin->free = b->next;
      hm_count(&bin->mallocs);
    }
  }
  if (b == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  *old_key = b->key;
  b->key = 0;
  /* Last: the cache is consistent again, and a purge pass (or starting the
   * purge thread, which allocates) may run. */
  if (refilled)
    hm_purge_tick();
  return b;
}

static bool is_double_free(hm_tcache *tc, hm_span *s, hm_block *b)
{
  if (b->key != hm_free_key)
    return false;
  /* The key says free. A block of a span we own can be confirmed: it is on
   * our list or on the remote list, which only we consume. For any other
   * span, only a program that read the random key out of freed memory could
   * have put it there. */
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) != tc)
    return true;
  return hm_block_list_contains(tc->bins[s->cls].free, b) ||
         hm_block_list_contains(
             hm_remote_list(atomic_load_explicit(&s->remote, memory_order_acquire)), b);
}

void hm_tcache_free_block(hm_tcache *tc, hm_span *s, hm_block *b, const void *p,
                          const char *func)
{
  if (is_double_free(tc, s, b))
    hm_fatal(func, "double free", p);
  if (atomic_load_explicit(&s->owner, memory_order_relaxed) == tc && !tc->busy) {
    hm_bin *bin = &tc->bins[s->cls];
    b->next = bin->free;
    b->key = hm_free_key;
    bin->free = b;
    hm_count(&bin->frees);
    return;
  }
  if (tc->kind == HM_TCACHE_REAL)
    hm_count(&tc->bins[s->cls].frees);
  else
    hm_stats_count_direct_free(s->block_size);
  if (s->arena != tc->arena && tc->kind == HM_TCACHE_REAL)
    atomic_fetch_add_explicit(&s->arena->cross_node_frees, 1, memory_order_relaxed);
  /* No read section: the span is alive while `b` is in use, and the free
   * does not touch it once `b` is on its list (hm_span_free_remote). */
  hm_span_free_remote(s, b);
  /* Bursts are often freed on this path: let it run purge passes too, at
   * most every 256 frees (reading the clock costs). */
  if (tc->kind == HM_TCACHE_REAL && (++tc->slow_frees & 255) == 0)
    hm_purge_tick();
}

static void flush(hm_tcache *tc)
{
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_bin *bin = &tc->bins[c];
    hm_span *s = bin->span;
    if (s != NULL && atomic_load_explicit(&s->owner, memory_order_relaxed) == tc)
      hm_span_release(s, bin->free);
    bin->span = NULL;
    bin->free = NULL;
  }
  hm_stats_merge(tc);
}

void hm_tcache_thread_exit(void *arg)
{
  hm_tcache *tc = arg;
  hm_tls = &tcache_dead;
  flush(tc);
  pool_release(tc);
}

void hm_tcache_fork_child(void)
{
  hm_tcache *self = hm_tls;
  for (hm_tcache *c = atomic_load_explicit(&pool_chunks, memory_order_acquire); c;
       c = c->next_chunk)
    for (size_t i = 0; i < CACHES_PER_CHUNK; i++)
      if (&c[i] != self && atomic_load_explicit(&c[i].in_use, memory_order_acquire)) {
        flush(&c[i]);
        pool_release(&c[i]);
      }
}
