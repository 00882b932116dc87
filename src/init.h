/* Process start-up and fork. */
#ifndef HM_INIT_H
#define HM_INIT_H

#include "internal.h"

/* Runs once per process, before a thread's first cache is built. */
void hm_process_init(void);

#endif
