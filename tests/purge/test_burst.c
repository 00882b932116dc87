/* The burst: 64 MiB of long-lived small objects, then a 1 GiB burst of
 * small objects (16..256 B) that is freed whole. RSS must come back to the
 * live data (rss_bound: 15% over it plus 32 MiB):
 *   PURGE_TEST_MODE=delay  past the purge delay (a few delays waited, with
 *                          a slow path after each unless the background
 *                          thread runs the passes);
 *   PURGE_TEST_MODE=trim   at once after a trim, which must report that it
 *                          returned memory, and a second trim that nothing;
 *   PURGE_TEST_MODE=idle   with no call to the allocator after the last
 *                          free (the hm_ API build: the test's libc does not
 *                          call hmalloc): the frees must have started the
 *                          purge thread, which gives the burst back.
 * The live objects keep their contents throughout. */
#include "purge_common.h"

#define LIVE_BYTES (64 * MiB)
#define BURST_BYTES GiB

static void report_stats(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  note("stats: regions %zu (released %zu), purged %.1f MiB in %zu calls", st.regions,
       st.regions_released, mib(st.purged), st.purges);
  /* The background thread unmaps regions emptied by the burst; a trim
   * unmaps every empty one. */
  if (background_thread() || test_mode_is("trim"))
    CHECK(st.regions_released > 0, "the burst's regions emptied but none was released");
}

/* Polls the RSS without calling the allocator, for WAIT_CAP_MS of the
 * clock at most (a loaded machine stretches each sleep). */
static size_t idle_until(size_t bound)
{
  double deadline = now_s() + WAIT_CAP_MS / 1000.0;
  size_t rss = rss_bytes();
  while (rss > bound && now_s() < deadline) {
    sleep_ms(50);
    rss = rss_bytes();
  }
  return rss;
}

int main(void)
{
  CHECK(test_mode_is("delay") || test_mode_is("trim") || test_mode_is("idle"),
        "PURGE_TEST_MODE must be delay, trim or idle");
  size_t start = rss_bytes();
  struct block_set live = {0}, burst = {0};
  blocks_alloc(&live, LIVE_BYTES, 1);
  size_t with_live = rss_bytes();
  blocks_alloc(&burst, BURST_BYTES, 2);
  size_t peak = rss_bytes();
  blocks_free_range(&burst, 0, burst.count, "a burst block before its free");
  blocks_release_array(&burst);
  size_t freed = rss_bytes();

  size_t after;
  if (test_mode_is("trim")) {
    int returned = t_trim();
    after = rss_bytes();
    CHECK(returned == 1, "trim after the burst returned %d, expected 1", returned);
    returned = t_trim();
    CHECK(returned == 0, "a second trim with nothing idle returned %d, expected 0", returned);
  } else if (test_mode_is("idle")) {
    after = idle_until(rss_bound(live.bytes));
  } else {
    after = wait_for_rss(rss_bound(live.bytes), 5);
  }
  note("RSS (MiB): start %.1f, with %.0f MiB live %.1f, burst peak %.1f, burst freed %.1f, "
       "after %s %.1f (bound %.1f)",
       mib(start), mib(live.bytes), mib(with_live), mib(peak), mib(freed),
       test_mode_is("trim") ? "trim" : "the wait", mib(after), mib(rss_bound(live.bytes)));
  CHECK(peak >= with_live + BURST_BYTES * 9 / 10,
        "the burst did not make memory resident (peak %.1f MiB): nothing to test",
        mib(peak));
  CHECK(after <= rss_bound(live.bytes),
        "RSS %.1f MiB after the burst was freed, above the bound %.1f MiB (live %.1f MiB)",
        mib(after), mib(rss_bound(live.bytes)), mib(live.bytes));
  blocks_verify(&live, "a live block after the burst was purged");
  report_stats();
  return 0;
}
