/* Configuration from HMALLOC_* environment variables, read once at start-up
 * without allocating. A bad value gets a one-line warning and the default. */
#ifndef HM_CONFIG_H
#define HM_CONFIG_H

#include "internal.h"

struct hm_config {
  bool stats; /* HMALLOC_STATS=1: print statistics to stderr at exit */
};

extern HM_HIDDEN struct hm_config hm_config;

void hm_config_read(void);

#endif
