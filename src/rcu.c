#include "rcu.h"

#include "heap.h"

static _Atomic size_t late_readers;

static bool is_late(void)
{
  return hm_tls->kind == HM_HEAP_DEAD;
}

void hm_rcu_enter(void)
{
  if (is_late())
    atomic_fetch_add_explicit(&late_readers, 1, memory_order_seq_cst);
  else
    hm_os_rcu_read_lock();
}

void hm_rcu_exit(void)
{
  if (is_late())
    atomic_fetch_sub_explicit(&late_readers, 1, memory_order_release);
  else
    hm_os_rcu_read_unlock();
}

void hm_rcu_synchronize(void)
{
  hm_os_rcu_synchronize();
  /* The region was unlinked before this call, so a late reader that comes
   * now cannot find it; wait only for those that may have. */
  while (atomic_load_explicit(&late_readers, memory_order_seq_cst) != 0)
    hm_os_yield();
}

void hm_rcu_fork_child(void)
{
  hm_os_rcu_fork_child();
  atomic_store_explicit(&late_readers, 0, memory_order_relaxed);
}
