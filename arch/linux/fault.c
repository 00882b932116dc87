/* Fault injection: a countdown over the OS calls of the kinds chosen; the
 * call that brings it to zero fails. One relaxed load per OS call when
 * nothing is armed: nothing next to the system call it guards. */
#include "fault.h"

#include <stdatomic.h>
#include <stdint.h>

#include "../os.h"

static _Atomic unsigned fault_kinds;
static _Atomic uint64_t fault_countdown;
static _Atomic bool fault_sticky;
static _Atomic uint64_t faults_fired;

void hm_os_fail_after(unsigned kinds, uint64_t n, bool from_then_on)
{
  atomic_store_explicit(&fault_kinds, 0, memory_order_relaxed);
  atomic_store_explicit(&fault_countdown, n, memory_order_relaxed);
  atomic_store_explicit(&fault_sticky, from_then_on, memory_order_relaxed);
  atomic_store_explicit(&fault_kinds, n ? kinds : 0, memory_order_release);
}

uint64_t hm_os_faults_fired(void)
{
  return atomic_load_explicit(&faults_fired, memory_order_relaxed);
}

bool hm_os_fault(unsigned kind)
{
  if (!(atomic_load_explicit(&fault_kinds, memory_order_acquire) & kind))
    return false;
  /* The call that takes the count from 1 to 0 fails, and with
   * from_then_on every later one. */
  uint64_t left = atomic_load_explicit(&fault_countdown, memory_order_relaxed);
  if (left == 0 && atomic_load_explicit(&fault_sticky, memory_order_relaxed)) {
    atomic_fetch_add_explicit(&faults_fired, 1, memory_order_relaxed);
    return true;
  }
  while (left != 0)
    if (atomic_compare_exchange_weak_explicit(&fault_countdown, &left, left - 1,
                                              memory_order_relaxed, memory_order_relaxed)) {
      if (left != 1)
        return false;
      atomic_fetch_add_explicit(&faults_fired, 1, memory_order_relaxed);
      return true;
    }
  return false;
}
