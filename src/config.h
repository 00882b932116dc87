/* Configuration from HMALLOC_* environment variables, read once at start-up
 * without allocating. A bad value gets a one-line warning and the default. */
#ifndef HM_CONFIG_H
#define HM_CONFIG_H

#include "internal.h"

struct hm_config {
  bool stats;             /* HMALLOC_STATS: statistics to stderr at exit */
  int64_t purge_delay_ms; /* HMALLOC_PURGE_DELAY_MS: -1 never, 0 at once */
  bool background_thread; /* HMALLOC_BACKGROUND_THREAD: purge on a thread */
  bool purge_lazy;        /* HMALLOC_PURGE_LAZY: MADV_FREE for decay purges */
};

#define HM_PURGE_DELAY_DEFAULT_MS 1000

extern HM_HIDDEN struct hm_config hm_config;

void hm_config_read(void);

#endif
