#include "arena_test.h"

#include <stdio.h>
#include <string.h>

#include "numa_test.h"

static uint64_t pattern_word(uint64_t tag, size_t word)
{
  uint64_t z = tag * 0x9E3779B97F4A7C15ull + word;
  return z ^ (z >> 29);
}

void fill_pattern(void *p, size_t size, uint64_t tag)
{
  uint8_t *b = p;
  size_t words = size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = pattern_word(tag, i);
    memcpy(b + i * 8, &w, 8);
  }
  for (size_t i = words * 8; i < size; i++)
    b[i] = (uint8_t)pattern_word(tag, i);
}

void expect_pattern(const void *p, size_t size, uint64_t tag, const char *where)
{
  const uint8_t *b = p;
  size_t words = size / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w;
    memcpy(&w, b + i * 8, 8);
    CHECK(w == pattern_word(tag, i), "%s: block %p of %zu bytes: word %zu overwritten", where,
          p, size, i);
  }
  for (size_t i = words * 8; i < size; i++)
    CHECK(b[i] == (uint8_t)pattern_word(tag, i), "%s: block %p of %zu bytes: byte %zu overwritten",
          where, p, size, i);
}

int node_stats_all(struct hm_node_stats out[TEST_MAX_NODES])
{
  int nodes = hm_stats_nodes();
  CHECK(nodes >= 1 && nodes <= TEST_MAX_NODES, "hm_stats_nodes() = %d", nodes);
  for (int n = 0; n < nodes; n++)
    CHECK(hm_stats_node_get(n, &out[n]) == 0, "hm_stats_node_get(%d) failed", n);
  return nodes;
}

void print_node_stats(const char *when)
{
  struct hm_node_stats st[TEST_MAX_NODES];
  int nodes = node_stats_all(st);
  for (int n = 0; n < nodes; n++)
    printf("  %s: node %d: mapped %zu MiB, resident %zu KiB, spans %zu, cross-node frees %zu\n",
           when, n, st[n].mapped >> 20, st[n].resident >> 10, st[n].spans,
           st[n].cross_node_frees);
  fflush(stdout);
}

size_t bytes_in_use(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st.bytes_in_use;
}
