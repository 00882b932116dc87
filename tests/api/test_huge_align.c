/* Over-aligned huge blocks: aligned_alloc(2^40, 64) must not map page-map
 * leaves (or anything else) for the terabyte of padding an aligned start
 * would put before the block. Asserts on address space, not on time: the
 * process's VmSize after the block is freed is compared with before. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define MiB ((size_t)1 << 20)
/* Page-map leaves for 2^40 bytes of padding took 128 MiB; what a freed
 * block may leave behind (a cached mapping, a leaf or two) is far less. */
#define LEFT_BEHIND_MAX (32 * MiB)

static void aligned_then_freed(unsigned shift)
{
  size_t align = (size_t)1 << shift;
  size_t before = tu_vm_size();
  char *p = aligned_alloc(tu_opaque_size(align), 64);
  CHECK(p != NULL, "aligned_alloc(2^%u, 64) failed", shift);
  CHECK(tu_aligned(p, align), "aligned_alloc(2^%u, 64) = %p, not aligned", shift, (void *)p);
  CHECK(malloc_usable_size(p) >= 64, "aligned_alloc(2^%u, 64): %zu usable bytes", shift,
        malloc_usable_size(p));
  memset(p, 0x5a, 64);
  free(p);
  size_t after = tu_vm_size();
  size_t grown = after > before ? after - before : 0;
  printf("aligned_alloc(2^%u, 64) then free: VmSize %zu -> %zu KiB\n", shift, before >> 10,
         after >> 10);
  CHECK(grown <= LEFT_BEHIND_MAX, "aligned_alloc(2^%u, 64) then free left %zu MiB mapped",
        shift, grown / MiB);
}

int main(void)
{
  free(malloc(64)); /* the process and this thread are set up */
  aligned_then_freed(30);
  aligned_then_freed(40);
  aligned_then_freed(44);
  /* And again: nothing accumulates. */
  aligned_then_freed(40);
  return 0;
}
