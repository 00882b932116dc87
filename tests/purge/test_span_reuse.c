/* A remote free must not touch its span once another thread may have
 * given the span back and reused its memory. Under ThreadSanitizer, this
 * sets that order up without any synchronisation outside the allocator:
 *
 *   thread O forms two spans on resident granules, frees its block of the
 *     first and hands its block of the second to thread F;
 *   F frees it (a remote free: a CAS on the span's remote list, then a
 *     look at the span's state) and signals nobody;
 *   O sees the block on the remote list (through the allocator's own
 *     atomics), exits, and its cache gives both spans back: they are unused;
 *   the main thread joins O and allocates a large block, which takes the
 *     same resident granules, and writes it whole, over the second span's
 *     old header.
 *
 * Nothing orders F's look at the state after its CAS before that write, so
 * F may read (or CAS) the state word of memory that is now a user block.
 * TSan reports it as a data race; the test then exits with 66. */
#include <stdatomic.h>
#include <string.h>

#include "init.h"
#include "pagemap.h"
#include "purge_common.h"
#include "span.h"

#define LARGE (200 * KiB) /* 4 granules with the header */

static void *handed;
static hm_span *handed_span;
static _Atomic bool main_done;

static void *remote_freer(void *arg)
{
  (void)arg;
  hm_free(handed);
  /* Wait without synchronising: relaxed loads create no order. */
  while (!atomic_load_explicit(&main_done, memory_order_relaxed))
    sleep_ms(1);
  return NULL;
}

/* Frees a block and exits: a large run goes back to its region with the
 * thread's run cache, still resident (a trim would purge it). */
static void *free_and_exit(void *p)
{
  hm_free(p);
  return NULL;
}

static void *owner(void *arg)
{
  pthread_t *freer = arg;
  void *first = hm_malloc(64); /* a span on the first resident granule */
  handed = hm_malloc(48);      /* another class: a span on the next one */
  handed_span = hm_pagemap_header(handed);
  CHECK(first != NULL && handed != NULL && handed_span != NULL, "hm_malloc failed");
  hm_free(first);
  CHECK(pthread_create(freer, NULL, remote_freer, NULL) == 0, "pthread_create failed");
  while (hm_remote_count(atomic_load_explicit(&handed_span->remote, memory_order_acquire)) == 0)
    sleep_ms(1);
  return NULL; /* the exit gives both unused spans back */
}

int main(void)
{
  hm_process_init();
  void *mine = hm_malloc(64); /* this thread's cache and span first */
  /* Four resident free granules: a large block written and freed. */
  char *large = hm_malloc(LARGE);
  CHECK(mine != NULL && large != NULL, "hm_malloc failed");
  memset(large, 1, LARGE);
  pthread_t freer;
  CHECK(pthread_create(&freer, NULL, free_and_exit, large) == 0, "pthread_create failed");
  CHECK(pthread_join(freer, NULL) == 0, "pthread_join failed");

  pthread_t o, f;
  CHECK(pthread_create(&o, NULL, owner, &f) == 0, "pthread_create failed");
  CHECK(pthread_join(o, NULL) == 0, "pthread_join failed");
  hm_trim(); /* the spans wait on empty stacks until a pass gives them back */
  large = hm_malloc(LARGE);
  CHECK(large != NULL, "hm_malloc failed");
  uint8_t *span = (uint8_t *)handed_span;
  CHECK(span > (uint8_t *)large && span + HM_HEADER_SIZE <= (uint8_t *)large + LARGE,
        "set-up: the large block %p did not take the granules of the span %p given back",
        (void *)large, (void *)span);
  memset(large, 2, LARGE); /* over the old span header */
  atomic_store_explicit(&main_done, true, memory_order_relaxed);
  CHECK(pthread_join(f, NULL) == 0, "pthread_join failed");
  hm_free(large);
  hm_free(mine);
  note("no unordered access to the reused span header");
  return 0;
}
