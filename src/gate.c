#include "gate.h"

#include "heap.h"

static _Atomic uint32_t closed;
/* The count of the threads that have no heap of their own (being born,
 * dead, or inside a nested call). */
static _Atomic uint32_t shared;

static _Atomic uint32_t *gate_word(void)
{
  hm_heap *h = hm_tls;
  return h->kind == HM_HEAP_THREAD ? &h->gate : &shared;
}

void hm_gate_enter(void)
{
  _Atomic uint32_t *word = gate_word();
  for (;;) {
    uint32_t depth = atomic_fetch_add_explicit(word, 1, memory_order_seq_cst);
    if (depth > 0 || !atomic_load_explicit(&closed, memory_order_seq_cst))
      return;
    atomic_fetch_sub_explicit(word, 1, memory_order_release);
    while (atomic_load_explicit(&closed, memory_order_acquire))
      hm_os_yield();
  }
}

void hm_gate_exit(void)
{
  atomic_fetch_sub_explicit(gate_word(), 1, memory_order_release);
}

void hm_gate_fork_prepare(void)
{
  atomic_store_explicit(&closed, 1, memory_order_seq_cst);
  while (atomic_load_explicit(&shared, memory_order_seq_cst) != 0 || !hm_heap_gates_clear())
    hm_os_yield();
}

void hm_gate_fork_parent(void)
{
  atomic_store_explicit(&closed, 0, memory_order_release);
}

void hm_gate_fork_child(void)
{
  atomic_store_explicit(&shared, 0, memory_order_relaxed);
  atomic_store_explicit(&closed, 0, memory_order_release);
}
