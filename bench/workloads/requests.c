/* requests: a request-processing server in miniature. A shared table of
 * SLOTS objects (a cache, a session table) outlives requests; T threads each
 * handle ITERATIONS / T requests. A request allocates a few temporaries
 * (parse buffers, 16..512 B) and frees them at its end, and replaces a random
 * slot of the table with a new object of random size, freeing the object
 * that was there. The old object was usually made by another thread: the
 * table is how threads hand objects to each other, as a server's shared
 * state does.
 *
 * Object sizes: 70% 16..256 B, 25% 256 B..4 KiB, 5% 4..32 KiB, log-uniform
 * within each range. Slots are swapped atomically, so the thread that takes
 * an object out of the table owns it and verifies it before freeing it.
 * ops: every malloc and free, the final emptying of the table included. */
#include "bench_common.h"

#include <stdatomic.h>
#include <stdlib.h>

enum { SLOTS = 16384, TEMPORARIES = 4, TEMP_MIN = 16, TEMP_MAX = 512 };

struct handler {
  unsigned index;
  uint64_t requests;
  struct bench_rng rng;
  uint64_t made;  /* objects made, for unique tags */
  uint64_t calls; /* mallocs and frees */
};

static _Atomic(void *) table[SLOTS];

static size_t object_size(uint64_t random)
{
  unsigned percent = (unsigned)(random % 100);
  random >>= 8;
  if (percent < 70)
    return bench_log_uniform(random, 16, 256);
  if (percent < 95)
    return bench_log_uniform(random, 256, 4096);
  return bench_log_uniform(random, 4096, 32768);
}

static void handle_request(struct handler *handler)
{
  void *temporaries[TEMPORARIES];
  size_t sizes[TEMPORARIES];
  uint64_t tags[TEMPORARIES];
  for (int i = 0; i < TEMPORARIES; i++) {
    uint64_t random = bench_rng_next(&handler->rng);
    sizes[i] = bench_in_range(random >> 40, TEMP_MIN, TEMP_MAX);
    tags[i] = random;
    temporaries[i] = bench_malloc(sizes[i]);
    bench_fill(temporaries[i], sizes[i], tags[i]);
  }
  uint64_t random = bench_rng_next(&handler->rng);
  uint64_t tag = bench_mix(((uint64_t)handler->index << 48) ^ handler->made++);
  void *fresh = bench_object_new(object_size(random), tag);
  void *old = atomic_exchange_explicit(&table[(random >> 32) % SLOTS], fresh, memory_order_acq_rel);
  handler->calls += TEMPORARIES + 1;
  if (old) {
    bench_object_free(old, "a request");
    handler->calls++;
  }
  /* Temporaries die in the order a request's stack of buffers would. */
  for (int i = TEMPORARIES - 1; i >= 0; i--) {
    if (!bench_intact(temporaries[i], sizes[i], tags[i]))
      bench_fail("thread %u: temporary %p changed", handler->index, temporaries[i]);
    free(temporaries[i]);
    handler->calls++;
  }
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
  struct bench_args args = {.threads = 1, .iterations = 2000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct handler *handlers = bench_malloc(args.threads * sizeof *handlers);
  for (unsigned i = 0; i < args.threads; i++)
    handlers[i] = (struct handler){.index = i,
                                   .requests = args.iterations / args.threads,
                                   .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))}};
  double start = bench_now();
  bench_run_parallel(args.threads, serve, handlers, sizeof *handlers);
  uint64_t calls = 0;
  for (size_t i = 0; i < SLOTS; i++) {
    void *object = atomic_load_explicit(&table[i], memory_order_relaxed);
    if (object) {
      bench_object_free(object, "the table");
      calls++;
    }
  }
  double seconds = bench_now() - start;
  for (unsigned i = 0; i < args.threads; i++)
    calls += handlers[i].calls;
  free(handlers);
  bench_report_ops("requests", &args, seconds, calls, NULL);
  return 0;
}
