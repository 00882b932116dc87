/* No cliff: a loop that allocates and frees the same memory every
 * iteration (4 MiB of small blocks and four large blocks of 256 KiB to
 * 3 MiB, all touched, some 15 ms of work) and pauses 5 ms, for 4.5 seconds
 * with a purge delay of 500 ms, so that purge passes run all along (on the
 * large blocks' slow paths, or on the background thread) and see the
 * memory free between iterations.
 *
 * Memory reused within a delay must never be purged, so once warm (after
 * 1.5 s: three delays, by which anything left idle by the start has been
 * purged) the loop makes no madvise call and takes no page fault. A cliff,
 * purging between iterations and refaulting in the next, would cost at
 * least one madvise call per pass (six passes in the 3 s measured) and
 * refault what each purged, at least 16 pages (one 64 KiB granule) and up
 * to the 10 MiB of an iteration. The bounds allow a fraction of that: at
 * most 2 purge calls in all, and on average at most one page fault per
 * iteration (the kernel's own bookkeeping may cost a few).
 *
 * The delay is long next to an iteration, and an iteration in which the
 * loop stalled for half a delay (a loaded machine) is left out of the
 * figures: memory left free for a whole delay is rightly purged. */
#include <time.h>

#include "purge_common.h"

#define SMALL_BYTES (4 * MiB)
#define PAUSE_MS 5

static const size_t large_sizes[] = {256 * KiB, 1 * MiB, 2 * MiB, 3 * MiB};
#define LARGE_COUNT (sizeof large_sizes / sizeof large_sizes[0])

static double seconds_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void iteration(struct block_set *small, unsigned n)
{
  void *large[LARGE_COUNT];
  for (size_t i = 0; i < LARGE_COUNT; i++) {
    large[i] = t_malloc(large_sizes[i]);
    CHECK(large[i] != NULL, "%s(%zu) failed", T_NAMES, large_sizes[i]);
    fill(large[i], large_sizes[i], n);
  }
  /* The same sizes every time: the seed is fixed. */
  blocks_alloc(small, SMALL_BYTES, 42);
  for (size_t i = 0; i < LARGE_COUNT; i++) {
    verify_ends(large[i], large_sizes[i], n, "a large block of the steady loop");
    t_free(large[i]);
  }
  blocks_free_range(small, 0, small->count, "a small block of the steady loop");
  sleep_ms(PAUSE_MS);
}

/* What an iteration cost, from the end of the one before to its own end:
 * the pause, in which a pass may run, is part of it. */
struct sample {
  double time;
  long faults;
  size_t purges, purged;
};

static struct sample sample(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return (struct sample){seconds_now(), minor_faults(), st.purges, st.purged};
}

struct totals {
  unsigned measured, stalled;
  long faults;
  size_t purges, purged;
  double longest; /* seconds */
};

/* Adds one iteration, unless the loop stalled in it for half a delay: for
 * memory to be purged it must stay free from one pass to the next, a delay
 * at least, and then purging it is right. */
static void account(struct totals *t, struct sample before, struct sample after)
{
  double took = after.time - before.time;
  t->longest = took > t->longest ? took : t->longest;
  if (took * 1000 >= (double)purge_delay_ms() / 2) {
    t->stalled++;
    return;
  }
  t->measured++;
  t->faults += after.faults - before.faults;
  t->purges += after.purges - before.purges;
  t->purged += after.purged - before.purged;
}

int main(void)
{
  CHECK(purge_delay_ms() == 500, "the bounds assume HMALLOC_PURGE_DELAY_MS=500");
  /* The pointer array of the small blocks is mapped once and reused, so
   * that the test's own bookkeeping does not fault every iteration. */
  struct block_set small = {0};
  unsigned n = 0;
  double start = seconds_now();
  while (seconds_now() - start < 1.5) /* warm-up: three delays */
    iteration(&small, n++);
  struct totals t = {0};
  struct sample last = sample();
  while (last.time - start < 4.5) {
    iteration(&small, n++);
    struct sample now = sample();
    account(&t, last, now);
    last = now;
  }
  note("%u iterations measured once warm, %u left out (stalled for half a delay; the longest "
       "took %.0f ms): %ld page faults (%.2f per iteration), %zu purge calls (%.1f MiB)",
       t.measured, t.stalled, t.longest * 1000, t.faults, (double)t.faults / t.measured,
       t.purges, mib(t.purged));
  CHECK(t.measured >= 20, "only %u iterations measured (%u stalled): nothing measured",
        t.measured, t.stalled);
  CHECK(t.purges <= 2, "%zu purge calls (%.1f MiB) in a steady state: memory reused every "
        "iteration was purged", t.purges, mib(t.purged));
  CHECK(t.faults <= (long)t.measured, "%ld page faults in %u steady iterations: memory is "
        "purged and refaulted", t.faults, t.measured);
  return 0;
}
