/* Safe reclamation of regions (DESIGN.md invariant 8): read-copy-update.
 *
 * A thread holds a read section while it may touch memory of a region that
 * could be released: popping span stacks, walking the region list, a remote
 * free (which may make a span, and so a region, unused). A region is unmapped
 * only after hm_rcu_synchronize() returned.
 *
 * A thread with a heap announces its read sections in its heap structure:
 * the grace period it began in. Those structures exist before the thread's
 * first section and are never unmapped, so a thread needs no registration,
 * which could fail (liburcu's urcu-bp maps its registry on a thread's first
 * section and aborts when it cannot) or leak past the thread's exit. The
 * announcement is a plain store; a grace period makes it visible with a
 * process-wide barrier (hm_os_barrier), then waits for each section that
 * began before it. Threads without a heap (being born, past their exit
 * hook, helpers) count themselves in a shared counter that grace periods
 * also wait for. */
#ifndef HM_RCU_H
#define HM_RCU_H

#include "internal.h"

/* Once, at process start-up. */
void hm_rcu_init(void);
/* Read sections nest, never sleep and allocate nothing. */
void hm_rcu_enter(void);
void hm_rcu_exit(void);
/* Waits until every read section that began before the call has ended.
 * Spins with yields: never call it on a malloc or free fast path. */
void hm_rcu_synchronize(void);

void hm_rcu_fork_child(void);

#endif
