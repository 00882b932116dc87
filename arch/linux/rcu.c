/* Read-copy-update for arch/os.h, on liburcu's urcu-bp flavour: it survives
 * threads that exit without unregistering and fork children whose parent
 * had readers, which urcu-memb does not (DESIGN.md, Dependencies). */
#define _LGPL_SOURCE /* inline read-side primitives */
#include <sched.h>
#include <urcu-bp.h>

#include "../os.h"

void hm_os_rcu_read_lock(void)
{
  urcu_bp_read_lock();
}

void hm_os_rcu_read_unlock(void)
{
  urcu_bp_read_unlock();
}

void hm_os_rcu_synchronize(void)
{
  urcu_bp_synchronize_rcu();
}

void hm_os_rcu_fork_prepare(void)
{
  urcu_bp_before_fork();
}

void hm_os_rcu_fork_parent(void)
{
  urcu_bp_after_fork_parent();
}

void hm_os_rcu_fork_child(void)
{
  urcu_bp_after_fork_child();
}

void hm_os_yield(void)
{
  sched_yield();
}
