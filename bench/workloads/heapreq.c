/* heapreq: per-request private heaps against malloc/free. T threads each
 * handle ITERATIONS / T requests. A request allocates 20..200 objects of
 * 16..2048 B (log-uniform), fills them, verifies and frees a random half of
 * them one by one (as a request drops what it is done with), then ends:
 * the other half is verified and dropped with the request.
 *
 * How a request gets its memory is chosen at run time, by what the
 * preloaded allocator exports:
 *   api=hm_heap  hmalloc's private heaps: hm_heap_create(NULL) per request,
 *                hm_heap_malloc, free for the individual frees, and
 *                hm_heap_destroy drops the rest at once;
 *   api=mi_heap  mimalloc's: mi_heap_new, mi_heap_malloc, free,
 *                mi_heap_destroy, the same way;
 *   api=malloc   anything else (glibc, jemalloc, tcmalloc), or -m malloc
 *                under any allocator: malloc, and free for every object,
 *                the rest at the end of the request.
 * The result line names the one used. The memory work (filling and
 * verifying every object) is the same in every mode. The heap functions are
 * looked up with dlsym and declared here: the program builds without
 * hmalloc.h or mimalloc.h. */
#define _GNU_SOURCE
#include "bench_common.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MIN_OBJECTS = 20, MAX_OBJECTS = 200, MIN_SIZE = 16, MAX_SIZE = 2048 };

/* A per-request heap API: create, allocate from, destroy (NULL: none, use
 * malloc and free). */
struct heap_api {
  const char *name;
  void *(*create)(void);
  void *(*allocate)(void *heap, size_t size);
  void (*destroy)(void *heap);
};

/* hmalloc's: hm_heap *hm_heap_create(const hm_heap_options *opt),
 * void *hm_heap_malloc(hm_heap *h, size_t n), void hm_heap_destroy(hm_heap *h). */
typedef struct hm_heap hm_heap;
static hm_heap *(*hm_heap_create_fn)(const void *options);
static void *(*hm_heap_malloc_fn)(hm_heap *heap, size_t size);
static void (*hm_heap_destroy_fn)(hm_heap *heap);

static void *hm_create(void) { return hm_heap_create_fn(NULL); }
static void *hm_allocate(void *heap, size_t size) { return hm_heap_malloc_fn(heap, size); }
static void hm_destroy(void *heap) { hm_heap_destroy_fn(heap); }

/* mimalloc's: mi_heap_t *mi_heap_new(void), void *mi_heap_malloc(mi_heap_t *h,
 * size_t n), void mi_heap_destroy(mi_heap_t *h). */
typedef struct mi_heap_s mi_heap_t;
static mi_heap_t *(*mi_heap_new_fn)(void);
static void *(*mi_heap_malloc_fn)(mi_heap_t *heap, size_t size);
static void (*mi_heap_destroy_fn)(mi_heap_t *heap);

static void *mi_create(void) { return mi_heap_new_fn(); }
static void *mi_allocate(void *heap, size_t size) { return mi_heap_malloc_fn(heap, size); }
static void mi_destroy(void *heap) { mi_heap_destroy_fn(heap); }

/* dlsym's object pointer into a function pointer variable (ISO C has no
 * conversion between the two; POSIX guarantees the representation). */
static bool lookup(void *function_pointer, const char *name)
{
  void *symbol = dlsym(RTLD_DEFAULT, name);
  memcpy(function_pointer, &symbol, sizeof symbol);
  return symbol != NULL;
}

static struct heap_api choose_api(const char *mode)
{
  if (mode && strcmp(mode, "malloc") == 0)
    return (struct heap_api){.name = "malloc"};
  if (mode)
    bench_fail("unknown mode %s (known: malloc)", mode);
  if (lookup(&hm_heap_create_fn, "hm_heap_create") && lookup(&hm_heap_malloc_fn, "hm_heap_malloc") &&
      lookup(&hm_heap_destroy_fn, "hm_heap_destroy"))
    return (struct heap_api){"hm_heap", hm_create, hm_allocate, hm_destroy};
  if (lookup(&mi_heap_new_fn, "mi_heap_new") && lookup(&mi_heap_malloc_fn, "mi_heap_malloc") &&
      lookup(&mi_heap_destroy_fn, "mi_heap_destroy"))
    return (struct heap_api){"mi_heap", mi_create, mi_allocate, mi_destroy};
  return (struct heap_api){.name = "malloc"};
}

static struct heap_api api;

struct object {
  void *block;
  size_t size;
  uint64_t tag;
};

struct handler {
  unsigned index;
  uint64_t requests;
  struct bench_rng rng;
  uint64_t made; /* objects made, for unique tags */
  struct object objects[MAX_OBJECTS];
};

static void release(struct handler *handler, const struct object *object, bool free_it)
{
  if (!bench_intact(object->block, object->size, object->tag))
    bench_fail("thread %u: object %p (%zu bytes) changed during its request", handler->index,
               object->block, object->size);
  if (free_it)
    free(object->block);
}

static void handle_request(struct handler *handler)
{
  struct object *objects = handler->objects;
  size_t count = bench_in_range(bench_rng_next(&handler->rng), MIN_OBJECTS, MAX_OBJECTS);
  void *heap = NULL;
  if (api.create && !(heap = api.create()))
    bench_fail("%s: creating a heap failed", api.name);
  for (size_t i = 0; i < count; i++) {
    struct object *object = &objects[i];
    object->size = bench_log_uniform(bench_rng_next(&handler->rng), MIN_SIZE, MAX_SIZE);
    object->tag = bench_mix(((uint64_t)handler->index << 48) ^ handler->made++);
    object->block = heap ? api.allocate(heap, object->size) : malloc(object->size);
    if (!object->block)
      bench_fail("%s: allocating %zu bytes failed", api.name, object->size);
    bench_fill(object->block, object->size, object->tag);
  }
  /* A random half, freed one by one: a partial Fisher-Yates shuffle moves
   * it to the front. */
  size_t half = count / 2;
  for (size_t i = 0; i < half; i++) {
    size_t j = bench_in_range(bench_rng_next(&handler->rng), i, count - 1);
    struct object swap = objects[i];
    objects[i] = objects[j];
    objects[j] = swap;
    release(handler, &objects[i], true);
  }
  /* The end of the request: the rest goes with the heap, or one by one. */
  for (size_t i = half; i < count; i++)
    release(handler, &objects[i], heap == NULL);
  if (heap)
    api.destroy(heap);
}

static void *serve(void *arg)
{
  struct handler *handler = arg;
  for (uint64_t i = 0; i < handler->requests; i++)
    handle_request(handler);
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 50000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  api = choose_api(args.mode);
  struct handler *handlers = bench_malloc(args.threads * sizeof *handlers);
  for (unsigned i = 0; i < args.threads; i++)
    handlers[i] = (struct handler){.index = i,
                                   .requests = args.iterations / args.threads,
                                   .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))}};
  double start = bench_now();
  bench_run_parallel(args.threads, serve, handlers, sizeof *handlers);
  double seconds = bench_now() - start;
  free(handlers);
  char extra[32];
  snprintf(extra, sizeof extra, "api=%s", api.name);
  bench_report_extra("heapreq", &args, seconds, extra);
  return 0;
}
