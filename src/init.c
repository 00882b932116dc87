#include "init.h"

#include "config.h"
#include "purge.h"
#include "rcu.h"
#include "size_class.h"
#include "gate.h"
#include "heap.h"
#include "topology.h"

uint64_t hm_free_key;
uint64_t hm_zero_key;

enum { INIT_NONE, INIT_RUNNING, INIT_DONE };
static _Atomic int init_state;

/* Every shared structure is lock-free, so a fork child sees each one in a
 * consistent state; but a span between two owners would be in no list in
 * the child, so the fork gate waits for the threads moving spans. Start-up
 * must not be caught half-way. */
static void fork_prepare(void)
{
  hm_topology_fork_prepare(); /* first: it may wait for a dlopen to finish */
  while (atomic_load_explicit(&init_state, memory_order_acquire) == INIT_RUNNING)
    hm_cpu_pause();
  hm_gate_fork_prepare(); /* no thread half-way through moving a span */
  hm_purge_fork_prepare();
}

static void fork_parent(void)
{
  hm_purge_fork_parent();
  hm_gate_fork_parent();
  hm_topology_fork_parent();
}

static void fork_child(void)
{
  hm_rcu_fork_child();
  hm_topology_fork_child();
  hm_purge_fork_child();
  hm_gate_fork_child(); /* open before the heaps below pass it */
  hm_heap_fork_child();
}

void hm_process_init(void)
{
  if (atomic_load_explicit(&init_state, memory_order_acquire) == INIT_DONE)
    return;
  int expected = INIT_NONE;
  if (!atomic_compare_exchange_strong(&init_state, &expected, INIT_RUNNING)) {
    /* Another thread is starting the process: the once-per-process wait
     * DESIGN.md allows. It yields after a while: many threads spinning on
     * two cores kept the starting thread off them (under ThreadSanitizer,
     * whose atomics lock, 48 such threads stalled a test for 10 minutes). */
    for (unsigned spins = 0; atomic_load_explicit(&init_state, memory_order_acquire) != INIT_DONE;
         spins++)
      if (spins < 128)
        hm_cpu_pause();
      else
        hm_os_yield();
    return;
  }
  /* First what re-entrant allocations need (the key and the class table),
   * then the calls into libc that may allocate. */
  hm_free_key = hm_os_random();
  hm_zero_key = hm_free_key ^ 0x5a5a5a5a5a5a5a5aull;
  hm_size_class_init();
  hm_rcu_init();
  hm_config_read();
  hm_os_thread_exit_init(hm_heap_thread_exit);
  hm_os_atfork(fork_prepare, fork_parent, fork_child);
  atomic_store_explicit(&init_state, INIT_DONE, memory_order_release);
}
