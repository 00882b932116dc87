/* A small program for the memory checkers: run under valgrind (linked with
 * libhmalloc.so and with libhmalloc.a) and built with AddressSanitizer, it
 * must give a clean report. Those tools replace malloc, free and the other
 * classic names but not the C23 free_sized and free_aligned_sized, which
 * then receive the tool's blocks: hmalloc hands them to the tool's free
 * instead of aborting on a pointer it did not hand out. Every block's
 * contents are checked; everything is freed (a leak is a failure). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_common.h"

void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);

enum { THREADS = 4, ROUNDS = 300 };

static void fill(uint8_t *p, size_t size, uint8_t seed)
{
  for (size_t i = 0; i < size; i++)
    p[i] = (uint8_t)(seed + i);
}

static void check(const uint8_t *p, size_t size, uint8_t seed, const char *what)
{
  for (size_t i = 0; i < size; i++)
    CHECK(p[i] == (uint8_t)(seed + i), "%s: byte %zu of %zu changed", what, i, size);
}

static void *work(void *arg)
{
  uintptr_t id = (uintptr_t)arg;
  for (unsigned r = 0; r < ROUNDS; r++) {
    size_t size = 1 + (r * 37 + id * 101) % 5000;
    uint8_t seed = (uint8_t)(r + id);
    uint8_t *p = malloc(size);
    CHECK(p != NULL, "malloc(%zu) failed", size);
    fill(p, size, seed);
    uint8_t *q = realloc(p, size * 2);
    CHECK(q != NULL, "realloc failed");
    check(q, size, seed, "realloc");
    uint8_t *z = calloc(size, 1);
    CHECK(z != NULL, "calloc failed");
    for (size_t i = 0; i < size; i++)
      CHECK(z[i] == 0, "calloc: byte %zu not zero", i);
    size_t asize = (size + 63) & ~(size_t)63; /* C11's rule, which ASan enforces */
    uint8_t *a = aligned_alloc(64, asize);
    CHECK(a != NULL && ((uintptr_t)a & 63) == 0, "aligned_alloc(64, %zu) = %p", asize, (void *)a);
    fill(a, asize, seed);
    check(a, asize, seed, "aligned_alloc");
    free_sized(q, size * 2);
    free_sized(z, size);
    free_aligned_sized(a, 64, asize);
  }
  void *big = malloc((size_t)1 << 20);
  CHECK(big != NULL, "malloc(1 MiB) failed");
  memset(big, 1, (size_t)1 << 20);
  free_sized(big, (size_t)1 << 20);
  return NULL;
}

int main(void)
{
  pthread_t threads[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    CHECK(pthread_create(&threads[i], NULL, work, (void *)i) == 0, "pthread_create failed");
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(threads[i], NULL);
  char *s = strdup("hmalloc");
  CHECK(s != NULL && strcmp(s, "hmalloc") == 0, "strdup failed");
  free_sized(s, 8);
  void *m;
  CHECK(posix_memalign(&m, 4096, 4096) == 0 && ((uintptr_t)m & 4095) == 0, "posix_memalign failed");
  free_aligned_sized(m, 4096, 4096);
  printf("test_tools: %d threads x %d rounds, every block checked and freed\n", THREADS, ROUNDS);
  return 0;
}
