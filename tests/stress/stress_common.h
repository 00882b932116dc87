/* Helpers shared by the stress, churn and fork tests: the allocator's names,
 * a deterministic random generator, blocks filled with a verifiable pattern,
 * and a queue to hand blocks to another thread.
 *
 * The same sources build against the hm_ API (hmalloc_api and its sanitizer
 * builds) and against the standard names (libhmalloc.so overriding malloc):
 * compile with -DHM_TEST_STD_NAMES for the latter. */
#ifndef STRESS_COMMON_H
#define STRESS_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmalloc.h"

#ifdef HM_TEST_STD_NAMES
#include <malloc.h>
#include <stdlib.h>
#define t_malloc malloc
#define t_calloc calloc
#define t_realloc realloc
#define t_free free
#define t_aligned_alloc aligned_alloc
#define t_posix_memalign posix_memalign
#define t_usable_size malloc_usable_size
#else
#define t_malloc hm_malloc
#define t_calloc hm_calloc
#define t_realloc hm_realloc
#define t_free hm_free
#define t_aligned_alloc hm_aligned_alloc
#define t_posix_memalign hm_posix_memalign
#define t_usable_size hm_usable_size
#endif

/* Prints "<test>: FAIL: <message>" with write(2) (no stdio lock, no
 * allocation: it may run in a fork child or with a broken heap) and exits 1
 * at once, without running exit handlers while other threads still run. */
_Noreturn void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets the name fail() and note() print. */
void set_test_name(const char *name);
/* One line on stderr, for progress and measurements. */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* splitmix64: small, fast, and the same sequence on every run. */
struct rng {
  uint64_t state;
};

static inline uint64_t rng_next(struct rng *r)
{
  uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t rng_below(struct rng *r, uint64_t n)
{
  return rng_next(r) % n;
}

/* Uniform in [lo, hi]. */
static inline uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi)
{
  return lo + rng_below(r, hi - lo + 1);
}

static inline struct rng rng_seeded(uint64_t seed, uint64_t stream)
{
  struct rng r = {seed ^ (stream * 0xD1B54A32D192ED03ull)};
  rng_next(&r);
  return r;
}

/* How often each size tier is drawn, in parts per million; the rest are
 * small (16..1024 B). */
struct size_mix {
  unsigned medium; /* 1 KiB .. 64 KiB */
  unsigned large;  /* 200 KiB .. 2 MiB */
  unsigned huge;   /* 5 MiB .. 8 MiB */
};

size_t random_size(struct rng *r, const struct size_mix *mix);

/* A block the test owns. `tag` is random per allocation, so that two owners
 * of one block (the allocator handing it out twice) write different patterns
 * even when address and size match. */
struct block {
  void *p;
  size_t size;
  uint64_t tag;
};

/* Allocates `size` bytes into b with malloc, calloc (checked zeroed),
 * aligned_alloc or posix_memalign (alignment checked), chosen at random,
 * checks the usable size and fills the block with its pattern. */
void block_alloc(struct block *b, struct rng *r, size_t size);
/* Checks the whole pattern; `where` names the caller in the failure. */
void block_verify(const struct block *b, const char *where);
/* Verifies, frees and clears b. */
void block_free(struct block *b, const char *where);
/* Verifies, reallocs to `size`, checks that the kept prefix moved intact,
 * and fills the new block with its own pattern. */
void block_realloc(struct block *b, struct rng *r, size_t size);

/* An unbounded queue of blocks behind a mutex; its nodes are allocated with
 * the allocator under test (more cross-thread frees). Consumers poll it. */
struct block_msg;
struct block_queue {
  pthread_mutex_t lock;
  struct block_msg *head;
};

void queue_init(struct block_queue *q);
void queue_destroy(struct block_queue *q);
void queue_push(struct block_queue *q, const struct block *b);
/* Verifies and frees every block queued; returns how many. */
size_t queue_free_all(struct block_queue *q, const char *where);
/* Moves at most `max` queued blocks into out[]; returns how many. */
size_t queue_take(struct block_queue *q, struct block *out, size_t max);

#endif
