/* Configuration from HMALLOC_* environment variables, read once at start-up
 * without allocating. A bad value gets a one-line warning and the default. */
#ifndef HM_CONFIG_H
#define HM_CONFIG_H

#include "internal.h"

struct hm_config {
  bool stats;             /* HMALLOC_STATS: statistics to stderr at exit */
  int64_t purge_delay_ms; /* HMALLOC_PURGE_DELAY_MS: -1 never, 0 at once */
  /* HMALLOC_BACKGROUND_THREAD: purge on a thread. 1: from the first slow
   * path; 0: never; -1 (unset): once idle memory first reaches
   * HM_BACKGROUND_AUTO_BYTES, so that small programs never get one. */
  int background_thread;
  bool purge_lazy;        /* HMALLOC_PURGE_LAZY: MADV_FREE for decay purges */
  bool huge_pages;        /* HMALLOC_THP: huge blocks ask for huge pages */
};

#define HM_PURGE_DELAY_DEFAULT_MS 1000
#define HM_BACKGROUND_AUTO_BYTES ((size_t)64 << 20)
/* What an application thread's purge pass may do before it leaves the rest
 * to the background thread: bytes purged or unmapped, spans looked at. */
#ifndef HM_PURGE_TICK_BYTES
#define HM_PURGE_TICK_BYTES ((size_t)1 << 20)
#endif
#define HM_PURGE_TICK_SPANS 64

extern HM_HIDDEN struct hm_config hm_config;

void hm_config_read(void);

#endif
