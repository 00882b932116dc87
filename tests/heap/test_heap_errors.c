/* Death tests for private heaps: a handle that is not a live heap, and a
 * block freed after its heap was destroyed or reset, or freed twice, make
 * hmalloc abort (SIGABRT) after exactly one line on stderr naming the
 * function, the fault and the pointer (include/hmalloc.h, "Private heaps").
 * Each case runs in a fork()ed child (tests/api/test_util.c), which stores
 * the pointer it is about to pass in shared memory, so the parent can check
 * the value printed.
 *
 * Built twice: test_heap_errors (libhmalloc.so, blocks freed with plain
 * free) and test_heap_errors_api (hmalloc_api, hm_free). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "api/test_util.h"
#include "hmalloc.h"
#include "test_names.h"

static hm_heap *record_heap(hm_heap *h)
{
  return tu_record(h);
}

static hm_heap *new_heap(void)
{
  hm_heap *h = hm_heap_create(NULL);
  CHECK(h != NULL, "hm_heap_create failed");
  return h;
}

static hm_heap *destroyed_heap(void)
{
  hm_heap *h = new_heap();
  void *p = hm_heap_malloc(h, 100);
  CHECK(p != NULL, "hm_heap_malloc failed");
  hm_heap_destroy(h);
  return h;
}

/* Allocates `size` from h and writes it all. */
static void *heap_block(hm_heap *h, size_t size)
{
  void *p = hm_heap_malloc(h, size);
  CHECK(p != NULL, "hm_heap_malloc(%zu) failed", size);
  memset(p, 0x5A, size);
  return p;
}

static int visit_nothing(void *block, size_t size, void *arg)
{
  (void)block;
  (void)size;
  (void)arg;
  return 0;
}

/* ---- handles that are not live heaps ---- */

static void malloc_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  tu_opaque_ptr(hm_heap_malloc(record_heap(h), 10));
}

static void calloc_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  tu_opaque_ptr(hm_heap_calloc(record_heap(h), 1, 10));
}

static void realloc_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  tu_opaque_ptr(hm_heap_realloc(record_heap(h), NULL, 10));
}

static void aligned_alloc_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  tu_opaque_ptr(hm_heap_aligned_alloc(record_heap(h), 256, 10));
}

static void reset_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  hm_heap_reset(record_heap(h));
}

static void visit_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  hm_heap_visit(record_heap(h), visit_nothing, NULL);
}

static void stats_destroyed(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  struct hm_heap_stats st;
  hm_heap_stats_get(record_heap(h), &st);
}

static void destroy_twice(void *arg)
{
  (void)arg;
  hm_heap *h = destroyed_heap();
  hm_heap_destroy(record_heap(h));
}

/* A destroyed heap among live ones is still invalid. */
static void malloc_destroyed_among_live(void *arg)
{
  (void)arg;
  hm_heap *a = new_heap(), *h = new_heap(), *b = new_heap();
  heap_block(a, 100);
  heap_block(h, 100);
  heap_block(b, 100);
  hm_heap_destroy(h);
  heap_block(a, 200);
  heap_block(b, 200);
  tu_opaque_ptr(hm_heap_malloc(record_heap(h), 10));
}

/* Zeroed, page-aligned memory that no hm_heap_create returned. */
static void malloc_fake_heap(void *arg)
{
  (void)arg;
  static char fake[16384] __attribute__((aligned(4096)));
  tu_opaque_ptr(hm_heap_malloc(record_heap((hm_heap *)fake), 10));
}

/* A pointer into a live heap's structure, not its start. */
static void malloc_inside_heap(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  heap_block(h, 100);
  tu_opaque_ptr(hm_heap_malloc(record_heap((hm_heap *)((char *)h + 64)), 10));
}

/* A block of the default heap passed as a heap. */
static void malloc_block_as_heap(void *arg)
{
  (void)arg;
  void *p = t_aligned_alloc(4096, 64 << 10);
  CHECK(p != NULL, "aligned_alloc failed");
  memset(p, 0, 64 << 10);
  tu_opaque_ptr(hm_heap_malloc(record_heap(p), 10));
}

static void destroy_fake_heap(void *arg)
{
  (void)arg;
  static char fake[16384] __attribute__((aligned(4096)));
  hm_heap_destroy(record_heap((hm_heap *)fake));
}

/* ---- blocks of a destroyed or reset heap ---- */

static void free_after_destroy(size_t size)
{
  hm_heap *h = new_heap();
  heap_block(h, 64);
  void *p = heap_block(h, size);
  heap_block(h, size);
  hm_heap_destroy(h);
  t_free(tu_record(p));
}

static void free_small_after_destroy(void *arg)
{
  (void)arg;
  free_after_destroy(64);
}

static void free_large_after_destroy(void *arg)
{
  (void)arg;
  free_after_destroy(1 << 20);
}

static void free_huge_after_destroy(void *arg)
{
  (void)arg;
  free_after_destroy(8 << 20);
}

/* Another heap lives on: the memory of the destroyed one is not reused. */
static void free_small_after_destroy_other_live(void *arg)
{
  (void)arg;
  hm_heap *keep = new_heap();
  heap_block(keep, 64);
  free_after_destroy(64);
}

static void free_after_reset(size_t size)
{
  hm_heap *h = new_heap();
  heap_block(h, 64);
  void *p = heap_block(h, size);
  heap_block(h, size);
  hm_heap_reset(h);
  t_free(tu_record(p));
}

static void free_small_after_reset(void *arg)
{
  (void)arg;
  free_after_reset(64);
}

static void free_large_after_reset(void *arg)
{
  (void)arg;
  free_after_reset(1 << 20);
}

static void *free_in_thread(void *p)
{
  t_free(p);
  return NULL;
}

static pthread_barrier_t go;
static void *to_free;

static void *free_on_signal(void *arg)
{
  (void)arg;
  pthread_barrier_wait(&go);
  t_free(to_free);
  return NULL;
}

/* The free comes from a thread that never used the heap. The thread is
 * started first: starting one allocates (through hmalloc in the override
 * build), which could reuse the destroyed heap's memory. */
static void free_small_after_destroy_other_thread(void *arg)
{
  (void)arg;
  pthread_t t;
  pthread_barrier_init(&go, NULL, 2);
  CHECK(pthread_create(&t, NULL, free_on_signal, NULL) == 0, "pthread_create failed");
  hm_heap *h = new_heap();
  void *p = heap_block(h, 64);
  heap_block(h, 64);
  hm_heap_destroy(h);
  to_free = tu_record(p);
  pthread_barrier_wait(&go);
  pthread_join(t, NULL);
}

static void realloc_after_destroy(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 64);
  heap_block(h, 64);
  hm_heap_destroy(h);
  tu_opaque_ptr(t_realloc(tu_record(p), 100));
}

/* ---- double frees ---- */

static void double_free_small(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 64);
  heap_block(h, 64);
  t_free(p);
  t_free(tu_record(p));
}

static void double_free_small_remote_then_here(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 64);
  heap_block(h, 64);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_in_thread, p) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  t_free(tu_record(p));
}

static void double_free_large(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 1 << 20);
  heap_block(h, 1 << 20); /* the run next door stays in use */
  t_free(p);
  t_free(tu_record(p));
}

static void double_free_huge(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 8 << 20);
  t_free(p);
  t_free(tu_record(p));
}

/* A block freed into a heap, then passed to hm_heap_realloc. */
static void heap_realloc_freed(void *arg)
{
  (void)arg;
  hm_heap *h = new_heap();
  void *p = heap_block(h, 64);
  heap_block(h, 64);
  t_free(p);
  tu_opaque_ptr(hm_heap_realloc(h, tu_record(p), 100));
}

/* ---- the runner ---- */

#define INVALID_HEAP(func) "hmalloc: " func "(): invalid heap 0x"
#define FREED(func) "hmalloc: " func "(): invalid pointer 0x", "hmalloc: " func "(): double free 0x"
#define DOUBLE(func) "hmalloc: " func "(): double free 0x"

static const struct tu_death_case cases[] = {
    {"hm_heap_malloc on a destroyed heap", malloc_destroyed, {INVALID_HEAP("hm_heap_malloc")}},
    {"hm_heap_calloc on a destroyed heap", calloc_destroyed, {INVALID_HEAP("hm_heap_calloc")}},
    {"hm_heap_realloc on a destroyed heap", realloc_destroyed, {INVALID_HEAP("hm_heap_realloc")}},
    {"hm_heap_aligned_alloc on a destroyed heap",
     aligned_alloc_destroyed,
     {INVALID_HEAP("hm_heap_aligned_alloc")}},
    {"hm_heap_reset on a destroyed heap", reset_destroyed, {INVALID_HEAP("hm_heap_reset")}},
    {"hm_heap_visit on a destroyed heap", visit_destroyed, {INVALID_HEAP("hm_heap_visit")}},
    {"hm_heap_stats_get on a destroyed heap", stats_destroyed, {INVALID_HEAP("hm_heap_stats_get")}},
    {"hm_heap_destroy twice", destroy_twice, {INVALID_HEAP("hm_heap_destroy")}},
    {"hm_heap_malloc on a destroyed heap between live ones",
     malloc_destroyed_among_live,
     {INVALID_HEAP("hm_heap_malloc")}},
    {"hm_heap_malloc on zeroed memory", malloc_fake_heap, {INVALID_HEAP("hm_heap_malloc")}},
    {"hm_heap_malloc on a live heap + 64", malloc_inside_heap, {INVALID_HEAP("hm_heap_malloc")}},
    {"hm_heap_malloc on a block of the default heap",
     malloc_block_as_heap,
     {INVALID_HEAP("hm_heap_malloc")}},
    {"hm_heap_destroy of zeroed memory", destroy_fake_heap, {INVALID_HEAP("hm_heap_destroy")}},

    {"free of a small block of a destroyed heap",
     free_small_after_destroy,
     {FREED("free"), FREED("hm_free")}},
    {"free of a 1 MiB block of a destroyed heap",
     free_large_after_destroy,
     {FREED("free"), FREED("hm_free")}},
    {"free of an 8 MiB block of a destroyed heap",
     free_huge_after_destroy,
     {FREED("free"), FREED("hm_free")}},
    {"free of a small block of a destroyed heap, another heap live",
     free_small_after_destroy_other_live,
     {FREED("free"), FREED("hm_free")}},
    {"free by another thread of a small block of a destroyed heap",
     free_small_after_destroy_other_thread,
     {FREED("free"), FREED("hm_free")}},
    {"free of a small block allocated before a reset",
     free_small_after_reset,
     {FREED("free"), FREED("hm_free")}},
    {"free of a 1 MiB block allocated before a reset",
     free_large_after_reset,
     {FREED("free"), FREED("hm_free")}},
    {"realloc of a small block of a destroyed heap",
     realloc_after_destroy,
     {FREED("realloc"), FREED("hm_realloc")}},

    {"small heap block freed twice", double_free_small, {DOUBLE("free"), DOUBLE("hm_free")}},
    {"small heap block freed by another thread, then by the heap's",
     double_free_small_remote_then_here,
     {DOUBLE("free"), DOUBLE("hm_free")}},
    {"1 MiB heap block freed twice", double_free_large, {DOUBLE("free"), DOUBLE("hm_free")}},
    /* The mapping is gone after the first free: nothing is left to tell a
     * double free from a pointer hmalloc never handed out. */
    {"8 MiB heap block freed twice", double_free_huge, {FREED("free"), FREED("hm_free")}},
    {"hm_heap_realloc of a freed heap block",
     heap_realloc_freed,
     {FREED("hm_heap_realloc"), FREED("realloc")}},
};

int main(void)
{
  return tu_run_death_cases(cases, sizeof cases / sizeof cases[0]) ? 1 : 0;
}
