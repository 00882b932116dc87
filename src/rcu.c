#include "rcu.h"

#include "heap.h"

static _Atomic uint64_t grace_period = 1;
static _Atomic size_t heapless_readers;
/* Whether readers fence (the OS has no process-wide barrier); true until
 * start-up knows, which is always safe. */
static _Atomic bool readers_fence = true;
static bool barrier_works;

static void barrier_init(void)
{
  barrier_works = hm_os_barrier_init();
  atomic_store_explicit(&readers_fence, !barrier_works, memory_order_relaxed);
}

void hm_rcu_init(void)
{
  barrier_init();
}

void hm_rcu_enter(void)
{
  hm_heap *h = hm_tls;
  if (h->kind != HM_HEAP_THREAD) {
    atomic_fetch_add_explicit(&heapless_readers, 1, memory_order_seq_cst);
    return;
  }
  if (h->rcu_depth++ != 0)
    return;
  atomic_store_explicit(&h->rcu_period, atomic_load_explicit(&grace_period, memory_order_seq_cst),
                        memory_order_relaxed);
  /* The announcement before any load of the section: hm_os_barrier()
   * orders it on the writer's side, or the fence here. */
  if (atomic_load_explicit(&readers_fence, memory_order_relaxed))
    atomic_thread_fence(memory_order_seq_cst);
  else
    atomic_signal_fence(memory_order_seq_cst);
}

void hm_rcu_exit(void)
{
  hm_heap *h = hm_tls;
  if (h->kind != HM_HEAP_THREAD) {
    atomic_fetch_sub_explicit(&heapless_readers, 1, memory_order_release);
    return;
  }
  if (--h->rcu_depth == 0)
    atomic_store_explicit(&h->rcu_period, 0, memory_order_release);
}

void hm_rcu_synchronize(void)
{
  /* What the caller unlinked is now unreachable for a section that sees
   * the new period or begins after the barrier; wait for the others. */
  uint64_t period = atomic_fetch_add_explicit(&grace_period, 1, memory_order_seq_cst) + 1;
  atomic_thread_fence(memory_order_seq_cst);
  if (barrier_works)
    hm_os_barrier();
  hm_heap_wait_readers(period);
  while (atomic_load_explicit(&heapless_readers, memory_order_seq_cst) != 0)
    hm_os_yield();
}

void hm_rcu_fork_child(void)
{
  barrier_init(); /* the child's address space registers anew */
  atomic_store_explicit(&heapless_readers, 0, memory_order_relaxed);
}
