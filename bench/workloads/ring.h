/* A single-producer single-consumer ring of pointers, lock-free, so a
 * workload that passes blocks between threads adds no lock of its own. Each
 * side's index lives on its own cache line next to that side's cached copy of
 * the other index. Rings must be zeroed and 64-byte aligned (see
 * ring_array_new). */
#ifndef HM_BENCH_RING_H
#define HM_BENCH_RING_H

#include "bench_common.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { RING_SLOTS = 1024, RING_CACHE_LINE = 64 };

struct ring {
  _Alignas(RING_CACHE_LINE) _Atomic uint64_t tail; /* written by the producer */
  uint64_t head_seen;                              /* the producer's view of head */
  _Alignas(RING_CACHE_LINE) _Atomic uint64_t head; /* written by the consumer */
  uint64_t tail_seen;                              /* the consumer's view of tail */
  _Alignas(RING_CACHE_LINE) void *slots[RING_SLOTS];
};

/* count zeroed rings, cache-line aligned; release with free. */
static inline struct ring *ring_array_new(size_t count)
{
  void *memory = aligned_alloc(RING_CACHE_LINE, count * sizeof(struct ring));
  if (!memory)
    bench_fail("aligned_alloc(%d, %zu) returned NULL", RING_CACHE_LINE,
               count * sizeof(struct ring));
  return memset(memory, 0, count * sizeof(struct ring));
}

/* How many pointers the producer can push now. */
static inline uint64_t ring_room(struct ring *ring)
{
  uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
  if (tail - ring->head_seen == RING_SLOTS)
    ring->head_seen = atomic_load_explicit(&ring->head, memory_order_acquire);
  return RING_SLOTS - (tail - ring->head_seen);
}

/* Only after ring_room said there is room. */
static inline void ring_push(struct ring *ring, void *block)
{
  uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
  ring->slots[tail % RING_SLOTS] = block;
  atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
}

/* The oldest pointer in the ring, or NULL when it is empty. */
static inline void *ring_pop(struct ring *ring)
{
  uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
  if (head == ring->tail_seen) {
    ring->tail_seen = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if (head == ring->tail_seen)
      return NULL;
  }
  void *block = ring->slots[head % RING_SLOTS];
  atomic_store_explicit(&ring->head, head + 1, memory_order_release);
  return block;
}

#endif
