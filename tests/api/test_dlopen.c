/* libhmalloc.so loaded by dlopen into a program that is not linked with
 * it: its thread-local state must fit (a library loaded late cannot carry a
 * big initial-exec TLS block; jemalloc and mimalloc fail here with "cannot
 * allocate memory in static TLS block"), and the hm_ functions found by
 * dlsym must work from the main thread and from other threads, including
 * blocks freed by a thread other than the one that allocated them. The
 * library is not dlclose()d: an allocator is not unloaded while blocks or
 * threads may still refer to it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "test_util.h"

#ifndef HMALLOC_SO
#error "HMALLOC_SO must name the libhmalloc.so file"
#endif

static void *(*dl_malloc)(size_t);
static void (*dl_free)(void *);
static size_t (*dl_usable_size)(const void *);

static void *symbol(void *lib, const char *name)
{
  void *f = dlsym(lib, name);
  CHECK(f != NULL, "dlsym(%s): %s", name, dlerror());
  return f;
}

static void load(void)
{
  void *lib = dlopen(HMALLOC_SO, RTLD_NOW | RTLD_LOCAL);
  CHECK(lib != NULL, "dlopen(%s) failed: %s", HMALLOC_SO, dlerror());
  dl_malloc = (void *(*)(size_t))symbol(lib, "hm_malloc");
  dl_free = (void (*)(void *))symbol(lib, "hm_free");
  dl_usable_size = (size_t(*)(const void *))symbol(lib, "hm_usable_size");
}

static const size_t sizes[] = {1, 16, 100, 1000, 5000, 70000, 200000, 3 << 20, 9 << 20};
#define SIZES (sizeof sizes / sizeof sizes[0])
#define ROUNDS 5

static void allocate_all(void **blocks, uint8_t seed)
{
  for (size_t i = 0; i < SIZES; i++) {
    blocks[i] = dl_malloc(sizes[i]);
    CHECK(blocks[i] != NULL && tu_aligned(blocks[i], 16), "hm_malloc(%zu) gave %p", sizes[i],
          blocks[i]);
    CHECK(dl_usable_size(blocks[i]) >= sizes[i], "hm_usable_size of a %zu-byte block is %zu",
          sizes[i], dl_usable_size(blocks[i]));
    tu_fill(blocks[i], sizes[i], (uint8_t)(seed + i));
  }
}

static void verify_and_free_all(void **blocks, uint8_t seed)
{
  for (size_t i = 0; i < SIZES; i++) {
    CHECK(tu_holds(blocks[i], sizes[i], (uint8_t)(seed + i)),
          "block of %zu bytes was overwritten", sizes[i]);
    dl_free(blocks[i]);
  }
}

struct worker {
  pthread_t thread;
  uint8_t seed;
  void *from_main[SIZES]; /* allocated by main, freed by the worker */
  void *for_main[SIZES];  /* allocated by the worker, freed by main */
};

static void *work(void *arg)
{
  struct worker *w = arg;
  for (int round = 0; round < ROUNDS; round++) {
    void *blocks[SIZES];
    allocate_all(blocks, (uint8_t)(w->seed + round));
    verify_and_free_all(blocks, (uint8_t)(w->seed + round));
  }
  verify_and_free_all(w->from_main, w->seed);
  allocate_all(w->for_main, (uint8_t)(w->seed + 1));
  return NULL;
}

int main(void)
{
  load();
  enum { THREADS = 8 };
  static struct worker workers[THREADS];
  for (int round = 0; round < ROUNDS; round++) {
    void *blocks[SIZES];
    allocate_all(blocks, (uint8_t)round);
    verify_and_free_all(blocks, (uint8_t)round);
  }
  for (int t = 0; t < THREADS; t++) {
    workers[t].seed = (uint8_t)(40 * t);
    allocate_all(workers[t].from_main, workers[t].seed);
    CHECK(pthread_create(&workers[t].thread, NULL, work, &workers[t]) == 0,
          "pthread_create failed");
  }
  for (int t = 0; t < THREADS; t++) {
    CHECK(pthread_join(workers[t].thread, NULL) == 0, "pthread_join failed");
    verify_and_free_all(workers[t].for_main, (uint8_t)(workers[t].seed + 1));
  }
  printf("dlopen(%s): ok\n", HMALLOC_SO);
  return 0;
}
