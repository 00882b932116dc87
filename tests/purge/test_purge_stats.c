/* The purge statistics count every madvise that returns memory, whoever
 * makes it (README: `purged` is the memory returned to the OS while
 * staying mapped, `calls` the madvise calls that did it): a decay pass, a
 * trim, and, with HMALLOC_PURGE_DELAY_MS=0, the free itself or the give-back
 * of a span. The RSS drop is checked alongside, so that a count without a
 * purge fails too; and a trim that returned memory must say so. */
#include <string.h>

#include "purge_common.h"

#define BLOCK (2 * MiB) /* a large block: a run of a region */

struct counts {
  size_t purges, purged, rss;
};

static struct counts counts(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return (struct counts){st.purges, st.purged, rss_bytes()};
}

/* A large block written whole, then freed: BLOCK bytes resident and idle. */
static void free_dirty_block(void)
{
  char *p = t_malloc(BLOCK);
  CHECK(p != NULL, "%s(%zu) failed", T_NAMES, (size_t)BLOCK);
  memset(p, 1, BLOCK);
  t_free(p);
}

/* BLOCK bytes of small blocks, written by this thread. */
static struct block_set dirty_small_blocks(void)
{
  struct block_set s = {0};
  blocks_alloc(&s, BLOCK, 5);
  return s;
}

/* Frees them: spans that became unused leave the heap (purged at once with
 * delay 0, else by decay), except the one each class keeps. */
static void free_small_blocks(struct block_set *s)
{
  blocks_free_range(s, 0, s->count, "a small block");
  blocks_release_array(s);
}

/* What was idle went back: RSS fell by half the block at least (a slow
 * path may reuse some of it in between), and the statistics say so.
 * Reports a failure and returns false, so that every case is reported. */
static bool check_counted(struct counts before, const char *how)
{
  struct counts after = counts();
  note("%s: %zu purge calls, %.1f MiB purged, RSS %.1f -> %.1f MiB", how,
       after.purges - before.purges, mib(after.purged - before.purged), mib(before.rss),
       mib(after.rss));
  if (after.rss + BLOCK / 2 > before.rss) {
    note("FAIL: %s: RSS went from %.1f to %.1f MiB: the memory was not purged", how,
         mib(before.rss), mib(after.rss));
    return false;
  }
  if (after.purged - before.purged < BLOCK / 2 || after.purges == before.purges) {
    note("FAIL: %s: RSS fell by %.1f MiB, but the statistics count %zu bytes purged in %zu "
         "calls",
         how, mib(before.rss - after.rss), after.purged - before.purged,
         after.purges - before.purges);
    return false;
  }
  return true;
}

int main(void)
{
  slow_path(); /* set-up out of the way */
  bool ok;
  if (purge_delay_ms() == 0) {
    char *p = t_malloc(BLOCK);
    CHECK(p != NULL, "%s(%zu) failed", T_NAMES, (size_t)BLOCK);
    memset(p, 1, BLOCK);
    struct counts before = counts();
    t_free(p);
    ok = check_counted(before, "a free with delay 0");
  } else {
    free_dirty_block();
    struct counts before = counts();
    wait_for_rss(before.rss - BLOCK / 2, 4);
    ok = check_counted(before, "decay passes");
  }
  /* The frees and a trim return this thread's unused spans: the spans the
   * frees emptied, and the empty span each class keeps; the trim must say
   * it returned memory (at least the kept spans). */
  struct block_set small = dirty_small_blocks();
  struct counts before = counts();
  free_small_blocks(&small);
  int returned = t_trim();
  ok &= check_counted(before, "small blocks freed, then a trim");
  if (returned != 1) {
    note("FAIL: the trim returned memory but reported %d", returned);
    ok = false;
  }
  return ok ? 0 : 1;
}
