/* Helpers shared by the purge tests: the allocator's names, what the
 * process holds (from /proc and getrusage), waiting for purge passes, blocks
 * with verifiable contents, and bookkeeping memory outside the allocator.
 *
 * The same source builds against the hm_ API (hmalloc_api, its TSan build)
 * or against the standard names (libhmalloc.so overriding malloc): compile
 * with -DHM_TEST_STD_NAMES for the latter, and with -fno-builtin-malloc
 * -fno-builtin-free so that GCC cannot elide a malloc/free pair.
 *
 * Assertions are on what the process holds (RSS, mappings, page faults,
 * hmalloc's statistics), never on time: a test waits a few purge delays and
 * then asserts, so a slow machine costs time, not a false failure. */
#ifndef PURGE_COMMON_H
#define PURGE_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hmalloc.h"

/* CHECK(cond, ...) fails through fail(); fail, note, set_test_name, the
 * random generator, the contents pattern, all_zero and run_threads are
 * test_common.h's. */
#define TEST_CHECK_PLAIN
#include "test_common.h"
/* t_malloc, t_free, ...: the hm_ or the standard names. */
#include "test_names.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* What the process holds now. */
size_t rss_bytes(void);      /* /proc/self/statm, resident */
size_t maps_lines(void);     /* lines of /proc/self/maps: the mappings */
long minor_faults(void);     /* getrusage(RUSAGE_SELF).ru_minflt */
unsigned thread_count(void); /* entries of /proc/self/task */
size_t max_map_count(void);  /* /proc/sys/vm/max_map_count */
double mib(size_t bytes);

/* The configuration the test runs with (its ctest ENV), read from the
 * environment as hmalloc reads it. */
int64_t purge_delay_ms(void); /* HMALLOC_PURGE_DELAY_MS, which the test must set */
bool background_thread(void); /* HMALLOC_BACKGROUND_THREAD=1 */
/* The variant of a test that runs several ways (PURGE_TEST_MODE). */
bool test_mode_is(const char *mode);

void sleep_ms(int64_t ms);
/* A large allocation and its free, through a volatile pointer so that it
 * cannot be elided: a slow path, where purge passes run without the
 * background thread. */
void slow_path(void);
/* Waits until memory freed before the call has been purged: a pass sees it
 * and the next purges it (between one and two delays), so `rounds` (>= 3)
 * times: sleep a delay and a bit, then take a slow path unless the
 * background thread runs the passes. */
void wait_for_purge(int rounds);
/* The same, then more rounds while the RSS is above `bound`, up to
 * WAIT_CAP_MS in all: on a loaded machine a pass, or the background thread,
 * may come late; the test asserts on the RSS returned, not on the time. */
#define WAIT_CAP_MS 20000
size_t wait_for_rss(size_t bound, int rounds);
/* The same for the count of mappings (freed huge mappings stay cached for
 * some delays): returns it. */
size_t wait_for_maps(size_t bound, int rounds);

/* Memory for the test's own bookkeeping, outside the allocator (an
 * anonymous mapping): its pages count in the RSS until unmapped. */
void *map_array(size_t bytes);
void unmap_array(void *p, size_t bytes);

/* Contents: the pattern of test_common.h for the block's address, size and
 * seed. fill writes all of it; verify reads all of it, verify_ends the
 * first and last 16 bytes (for blocks too many to read whole). */
void fill(void *p, size_t size, uint64_t seed);
void verify(const void *p, size_t size, uint64_t seed, const char *what);
void verify_ends(const void *p, size_t size, uint64_t seed, const char *what);
/* Checks the first `len` bytes of p, where realloc moved (or kept) a block
 * of `size` bytes filled at `was`. */
void verify_moved(const void *p, const void *was, size_t size, size_t len, uint64_t seed,
                  const char *what);

/* A set of small blocks (16..256 B). Their pointers live in a mapped
 * array; block i's size and contents follow from the set's seed and i. */
struct block_set {
  void **p;
  size_t count, cap;
  size_t bytes; /* requested bytes of the blocks in the set */
  uint64_t seed;
};

size_t block_size_of(const struct block_set *s, size_t i);
/* Allocates small blocks until their requested sizes add up to `bytes`,
 * each filled. The set must start zeroed; its pointer array is mapped on
 * first use and reused by the next calls. */
void blocks_alloc(struct block_set *s, size_t bytes, uint64_t seed);
/* Verifies (the ends of) and frees block i, which must not be freed yet. */
void block_free(struct block_set *s, size_t i, const char *what);
void blocks_free_range(struct block_set *s, size_t from, size_t to, const char *what);
/* Verifies the ends of every block not freed (NULL entries are freed). */
void blocks_verify(const struct block_set *s, const char *what);
/* Unmaps the pointer array. */
void blocks_release_array(struct block_set *s);

/* RSS after a burst is freed may not exceed this: 15% over the live data,
 * plus a fixed 32 MiB for the process itself (binary, libc, stacks, test
 * arrays), hmalloc's metadata (page-map leaves, region headers, thread
 * caches) and the spans the thread caches still own (one per class). */
static inline size_t rss_bound(size_t live_bytes)
{
  return live_bytes + live_bytes * 15 / 100 + 32 * MiB;
}

#endif
