/* The fork gate: what keeps fork from catching a thread half-way through
 * moving a span between owners (DESIGN.md invariant 7; a lock is allowed
 * around fork, and this is one, on slow paths only).
 *
 * Every slow path that moves a span, or changes a heap's queues, runs
 * between hm_gate_enter and hm_gate_exit. Each thread counts its depth in
 * its own heap (threads without one share a word), so entering is one
 * atomic add on a line nobody else writes. The fork prepare handler closes
 * the gate and waits until every count is 0; a thread that finds the gate
 * closed waits outside until the fork is done, unless it is inside already
 * (a nested call must not wait for a fork that waits for it). */
#ifndef HM_GATE_H
#define HM_GATE_H

#include "internal.h"

void hm_gate_enter(void);
void hm_gate_exit(void);
void hm_gate_fork_prepare(void);
void hm_gate_fork_parent(void);
void hm_gate_fork_child(void);

#endif
