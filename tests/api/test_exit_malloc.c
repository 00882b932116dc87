/* Threads whose first malloc comes in the last round of their key
 * destructors (PTHREAD_DESTRUCTOR_ITERATIONS): hmalloc's exit hook, set by
 * that malloc, never runs for them. Once they are gone and every block is
 * freed, malloc_trim(0) must hand their heaps back: the RSS must not grow
 * with the number of such threads. */
#define _GNU_SOURCE
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define THREADS 1000
#define BATCH 50
#define KiB ((size_t)1024)
/* A heap kept for ever keeps its structure and the blocks written in its
 * spans resident (some 60 KiB a thread here). Handed back, its spans are
 * purged and its structure (8 KiB) serves a thread of the next batch. */
#define PER_THREAD_MAX (4 * KiB)

#define BLOCKS 48
#define BLOCK_SIZE 1000

static pthread_key_t key;
static __thread unsigned rounds;

static void destructor(void *value)
{
  if (++rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
    pthread_setspecific(key, value); /* once more, in the next round */
    return;
  }
  /* The last round: this thread's first malloc, and some 48 KiB of small
   * blocks written and freed (what a heap keeps resident for its next
   * mallocs: for ever, if the heap is never handed back). */
  void *blocks[BLOCKS];
  for (unsigned i = 0; i < BLOCKS; i++) {
    blocks[i] = tu_opaque_ptr(malloc(BLOCK_SIZE));
    CHECK(blocks[i] != NULL, "malloc in the last destructor round failed");
    memset(blocks[i], 1, BLOCK_SIZE);
  }
  for (unsigned i = 0; i < BLOCKS; i++)
    free(blocks[i]);
}

static void *thread_main(void *arg)
{
  pthread_setspecific(key, arg);
  return NULL;
}

static size_t rss(void)
{
  FILE *f = fopen("/proc/self/statm", "r");
  CHECK(f != NULL, "cannot open /proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  CHECK(fscanf(f, "%zu %zu", &pages_total, &pages_resident) == 2, "bad /proc/self/statm");
  fclose(f);
  return pages_resident * 4096;
}

static void spawn_one_by_one(unsigned n)
{
  for (unsigned i = 0; i < n; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_main, (void *)1) == 0, "pthread_create failed");
    CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  }
}

int main(void)
{
  /* hmalloc first: its exit key is then created before ours, and comes
   * before ours in every round (as in a program that allocated before). */
  free(tu_opaque_ptr(malloc(1)));
  CHECK(pthread_key_create(&key, destructor) == 0, "pthread_key_create failed");
  /* Warm up: the process, this thread's heap, pthread's cached stacks. */
  spawn_one_by_one(10);
  malloc_trim(0);
  size_t before = rss();
  /* In batches, each followed by a trim: a heap handed back serves the
   * next batch, so what stays is a batch's worth of heap structures. */
  for (unsigned b = 0; b < THREADS / BATCH; b++) {
    spawn_one_by_one(BATCH);
    malloc_trim(0);
  }
  size_t after = rss();
  size_t grown = after > before ? after - before : 0;
  printf("%d threads with their first malloc in the last destructor round: RSS %zu -> %zu KiB\n",
         THREADS, before / KiB, after / KiB);
  CHECK(grown <= THREADS * PER_THREAD_MAX, "RSS grew by %zu KiB, %zu bytes a thread",
        grown / KiB, grown / THREADS);
  return 0;
}
