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

/* fail, note, set_test_name, the random generator (rng_next, rng_below,
 * rng_range) and the contents pattern are test_common.h's. */
#define TEST_CHECK_PLAIN
#include "test_common.h"
/* t_malloc, t_free, ...: the hm_ or the standard names. */
#include "test_names.h"

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
