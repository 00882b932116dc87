/* Safe reclamation of regions (DESIGN.md invariant 8), on the OS layer's
 * read-copy-update (liburcu's urcu-bp on Linux).
 *
 * A thread holds a read section while it may touch memory of a region that
 * could be released: popping span stacks, walking the region list, a remote
 * free (which may make a span, and so a region, unused). A region is unmapped
 * only after hm_rcu_synchronize() returned.
 *
 * urcu-bp registers a thread on its first read section and unregisters it
 * from a thread-exit hook of its own, which runs before hmalloc's. A thread
 * past hmalloc's exit hook (it still frees: glibc releases its TLS last)
 * must not enter a read section, or urcu-bp would register it again and
 * leak the slot; such a thread counts itself in a plain atomic counter that
 * hm_rcu_synchronize() also waits for. */
#ifndef HM_RCU_H
#define HM_RCU_H

#include "internal.h"

void hm_rcu_enter(void);
void hm_rcu_exit(void);
/* Waits until every read section that began before the call has ended.
 * Sleeps: never call it on a malloc or free path. */
void hm_rcu_synchronize(void);

void hm_rcu_fork_child(void);

#endif
