#include "purge.h"

#include "arena.h"
#include "config.h"
#include "heap.h"

static _Atomic bool purging; /* one purging thread at a time; others skip */
static _Atomic int64_t next_pass_ms;

enum { BG_NONE, BG_RUNNING, BG_FAILED };
static _Atomic uint32_t bg_state;
static _Atomic uint32_t bg_asleep; /* futex word: 1 while it sleeps with nothing to do */
static _Atomic uint32_t bg_nap;    /* futex word it naps on between passes; stays 0 */
static _Atomic bool idle_pending;  /* something became idle since the thread last looked */
/* Spans, runs and mappings that became idle since the last pass began,
 * each a granule at least; counted with plain loads and stores (a lost
 * count delays the thread's start a little). */
static _Atomic uint32_t idle_events;
#define AUTO_EVENTS ((uint32_t)(HM_BACKGROUND_AUTO_BYTES / HM_GRANULE))

static int64_t interval_ms(void)
{
  /* Delay 0 purges freed runs at once; passes still find spans that became
   * unused, every 10 ms at most. */
  return hm_config.purge_delay_ms > 10 ? hm_config.purge_delay_ms : 10;
}

bool hm_purge_at_once(void)
{
  return hm_config.purge_delay_ms == 0;
}

static bool begin(void)
{
  return !atomic_exchange_explicit(&purging, true, memory_order_acquire);
}

static void end(void)
{
  atomic_store_explicit(&purging, false, memory_order_release);
}

_Atomic uint32_t hm_purge_pass_count;

/* Where a bounded pass stopped: the next pass, whoever runs it, finishes
 * that one first. Only the thread that holds `purging` touches it. */
static struct {
  bool pending;
  unsigned arena;
  hm_purge_at at;
} resume;

/* A purge pass, or the rest of the one a bounded pass left; `limit`: the
 * bytes it may purge or unmap (0: no bound). */
static struct hm_purge_result pass(bool all, bool now, size_t limit)
{
  struct hm_purge_result out = {.limit = limit};
  if (all || !resume.pending) {
    atomic_store_explicit(&idle_events, 0, memory_order_relaxed);
    resume.arena = 0;
    resume.at = (hm_purge_at){0, 0};
    atomic_fetch_add_explicit(&hm_purge_pass_count, 1, memory_order_relaxed);
  }
  for (unsigned i = resume.arena; i < hm_arena_count(); i++) {
    hm_arena_purge_from(&hm_arenas[i], all, now, &resume.at, &out);
    if (out.cut) {
      resume.pending = true;
      resume.arena = i;
      return out;
    }
  }
  resume.pending = false;
  return out;
}

static void release_regions(bool all)
{
  for (unsigned i = 0; i < hm_arena_count(); i++)
    hm_arena_release_regions(&hm_arenas[i], all);
}

static bool has_idle(void)
{
  for (unsigned i = 0; i < hm_arena_count(); i++)
    if (hm_arena_has_idle(&hm_arenas[i]))
      return true;
  return false;
}

/* `arg` non-NULL: started right after a complete pass, so the next one is
 * a delay away (one cut short goes on at once). */
static void *background_main(void *arg)
{
  if (arg != NULL)
    hm_os_wait(&bg_nap, 0, interval_ms());
  for (;;) {
    size_t idle = 0; /* what the next pass purges, or a region it releases */
    if (begin()) {
      idle = pass(false, !hm_config.purge_lazy, 0).idle;
      release_regions(false);
      end();
    }
    if (idle != 0 || has_idle()) {
      hm_os_wait(&bg_nap, 0, interval_ms());
      continue;
    }
    /* Dekker with hm_purge_note_idle: say we sleep, then look once more.
     * A span that became unused in a partial list shows in no bitmap yet:
     * idle_pending says so. */
    atomic_store_explicit(&bg_asleep, 1, memory_order_seq_cst);
    if (!has_idle() && !atomic_exchange_explicit(&idle_pending, false, memory_order_seq_cst))
      hm_os_wait(&bg_asleep, 1, -1);
    atomic_store_explicit(&bg_asleep, 0, memory_order_relaxed);
  }
  return NULL;
}

/* Starts the background thread unless it runs already; whether it runs.
 * `after_pass`: a complete pass has just run. */
static bool background_start(bool after_pass)
{
  uint32_t state = atomic_load_explicit(&bg_state, memory_order_acquire);
  if (state != BG_NONE)
    return state == BG_RUNNING;
  if (!atomic_compare_exchange_strong(&bg_state, &state, BG_RUNNING))
    return state == BG_RUNNING;
  if (hm_os_thread_start(background_main, after_pass ? &bg_nap : NULL))
    return true;
  hm_warn("cannot start the background purge thread; purging on slow paths");
  atomic_store_explicit(&bg_state, BG_FAILED, memory_order_release);
  return false;
}

void hm_purge_tick(void)
{
  if (hm_config.purge_delay_ms < 0)
    return;
  if (atomic_load_explicit(&bg_state, memory_order_relaxed) == BG_RUNNING ||
      (hm_config.background_thread == 1 && background_start(false)))
    return;
  bool auto_bg = hm_config.background_thread < 0 &&
                 atomic_load_explicit(&bg_state, memory_order_relaxed) == BG_NONE;
  /* A burst is being freed: the thread starts now, not at a pass that may
   * come after the program has gone quiet (and then never). */
  if (auto_bg && atomic_load_explicit(&idle_events, memory_order_relaxed) >= AUTO_EVENTS &&
      background_start(false))
    return;
  int64_t now = hm_os_now_ms();
  if (now < atomic_load_explicit(&next_pass_ms, memory_order_relaxed) || !begin())
    return;
  atomic_store_explicit(&next_pass_ms, now + interval_ms(), memory_order_relaxed);
  /* An application's call does a bounded share of the work, unless no
   * thread may take the rest (HMALLOC_BACKGROUND_THREAD=0, or it failed). */
  size_t limit = auto_bg ? HM_PURGE_TICK_BYTES : 0;
  struct hm_purge_result out = pass(false, !hm_config.purge_lazy, limit);
  end();
  /* More than a little left, or a burst left this much behind: from now on
   * a thread purges, also when the program goes quiet, which slow paths
   * cannot. */
  if (auto_bg && (out.cut || out.idle >= HM_BACKGROUND_AUTO_BYTES))
    background_start(!out.cut);
}

void hm_purge_note_idle(void)
{
  if (atomic_load_explicit(&bg_state, memory_order_relaxed) != BG_RUNNING) {
    uint32_t events = atomic_load_explicit(&idle_events, memory_order_relaxed);
    atomic_store_explicit(&idle_events, events + 1, memory_order_relaxed);
    return;
  }
  atomic_store_explicit(&idle_pending, true, memory_order_seq_cst);
  if (atomic_load_explicit(&bg_asleep, memory_order_relaxed) &&
      atomic_exchange_explicit(&bg_asleep, 0, memory_order_relaxed))
    hm_os_wake(&bg_asleep);
}

static size_t returned_bytes(void)
{
  size_t bytes = 0;
  for (unsigned i = 0; i < hm_arena_count(); i++)
    bytes += atomic_load(&hm_arenas[i].purged_bytes) +
             atomic_load(&hm_arenas[i].regions_released) * HM_REGION_SIZE;
  return bytes;
}

bool hm_purge_trim(void)
{
  size_t before = returned_bytes();
  hm_heap_trim();
  while (!begin())
    hm_os_yield();
  hm_heap_reclaim_orphans();
  pass(true, true, 0);
  release_regions(true);
  end();
  return returned_bytes() != before;
}

void hm_purge_fork_prepare(void)
{
  /* A pass caught half-way would leave granules held as used, or a region
   * half-closed, in the child for good. Passes do not sleep: short wait. */
  while (!begin())
    hm_os_yield();
}

void hm_purge_fork_parent(void)
{
  end();
}

void hm_purge_fork_child(void)
{
  atomic_store_explicit(&purging, false, memory_order_relaxed);
  atomic_store_explicit(&next_pass_ms, 0, memory_order_relaxed);
  atomic_store_explicit(&bg_asleep, 0, memory_order_relaxed);
  /* The thread did not survive the fork; the next tick starts another. */
  if (atomic_load_explicit(&bg_state, memory_order_relaxed) == BG_RUNNING)
    atomic_store_explicit(&bg_state, BG_NONE, memory_order_relaxed);
}
