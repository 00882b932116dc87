/* Helpers shared by the per-node arena tests (test_numa_arenas,
 * test_numa_binding, the 4-node stress shim): blocks filled with a
 * verifiable pattern and per-node statistics. Only the public hm_ API, so
 * that tests linked with libhmalloc.so (the override) can use them too. */
#ifndef ARENA_TEST_H
#define ARENA_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "hmalloc.h"

/* Enough for the tests' topologies (at most 4 nodes); checked. */
#define TEST_MAX_NODES 8

/* Fills [p, p + size) with a pattern derived from `tag` and the offset, so
 * that two owners of one block, or a block handed out twice, disagree. */
void fill_pattern(void *p, size_t size, uint64_t tag);
/* Fails (naming `where`) unless [p, p + size) still holds that pattern. */
void expect_pattern(const void *p, size_t size, uint64_t tag, const char *where);

/* hm_stats_node_get of every node (hm_stats_nodes() of them, checked to be
 * at most TEST_MAX_NODES); returns the count. */
int node_stats_all(struct hm_node_stats out[TEST_MAX_NODES]);
/* One line per node on stdout, headed by `when`. */
void print_node_stats(const char *when);
/* hm_stats_get's bytes_in_use. */
size_t bytes_in_use(void);

#endif
