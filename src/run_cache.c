#include "run_cache.h"

#include "gate.h"
#include "large.h"
#include "purge.h"

/* A quarter more granules at most: the waste a reuse may cost. */
static uint64_t fitting_bins(size_t granules)
{
  uint64_t window = ((uint64_t)2 << (granules / 4)) - 1; /* granules <= 64 */
  return window << (granules - 1);
}

static hm_span *pop(hm_run_cache *c, unsigned bin)
{
  hm_span *s = c->runs[bin];
  c->runs[bin] = s->qnext;
  if (s->qnext == NULL)
    c->nonempty &= ~((uint64_t)1 << bin);
  c->bytes -= s->size;
  __atomic_store_n(&c->count, c->count - 1, __ATOMIC_RELAXED);
  return s;
}

hm_span *hm_run_cache_take(hm_run_cache *c, size_t granules)
{
  uint64_t fit = c->nonempty & fitting_bins(granules);
  if (fit == 0)
    return NULL;
  return pop(c, (unsigned)__builtin_ctzll(fit));
}

bool hm_run_cache_put(hm_run_cache *c, hm_span *s)
{
  if (c->bytes + s->size > HM_RUN_CACHE_BYTES)
    return false;
  unsigned bin = s->granules - 1;
  s->cached_at = hm_purge_passes();
  s->qnext = c->runs[bin];
  c->runs[bin] = s;
  c->nonempty |= (uint64_t)1 << bin;
  c->bytes += s->size;
  __atomic_store_n(&c->count, c->count + 1, __ATOMIC_RELAXED);
  return true;
}

/* Releases the cached runs (with `all`, every one; else those cached
 * before the previous pass: the pass after that finds them idle for a whole
 * delay, as the regions' granules are judged). */
static void release(hm_run_cache *c, bool all)
{
  uint32_t now = hm_purge_passes();
  for (uint64_t bins = c->nonempty; bins != 0; bins &= bins - 1) {
    unsigned bin = (unsigned)__builtin_ctzll(bins);
    hm_span **link = &c->runs[bin];
    while (*link != NULL) {
      hm_span *s = *link;
      if (!all && now - s->cached_at < 2) {
        link = &s->qnext;
        continue;
      }
      *link = s->qnext;
      c->bytes -= s->size;
      __atomic_store_n(&c->count, c->count - 1, __ATOMIC_RELAXED);
      hm_large_release_cached(s);
    }
    if (c->runs[bin] == NULL)
      c->nonempty &= ~((uint64_t)1 << bin);
  }
}

void hm_run_cache_age(hm_run_cache *c)
{
  uint32_t now = hm_purge_passes();
  if (c->epoch == now)
    return;
  c->epoch = now;
  hm_gate_enter(); /* runs go back to their regions */
  release(c, false);
  hm_gate_exit();
}

void hm_run_cache_forget(hm_run_cache *c)
{
  *c = (hm_run_cache){0};
}

void hm_run_cache_flush(hm_run_cache *c)
{
  release(c, true);
}
