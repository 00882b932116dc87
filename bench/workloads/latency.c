/* latency: the time of each malloc and each free, for tail latency. T
 * threads (default 2) each run rounds of
 *   churn  CHURN replacements of random slots of a working set of WORKING
 *          blocks (free the old block, malloc a new one);
 *   burst  BURST blocks malloc'ed, then all freed in allocation order;
 *   idle   IDLE_MS without a call to the allocator, so memory an allocator
 *          returns after a delay (purging) is returned during the run, on
 *          its timers or on the calls that follow.
 * Sizes: 85% 16 B..1 KiB, 14% 1..32 KiB, 1% 64..512 KiB, log-uniform within
 * each range: the slow paths (new spans, large blocks, returning memory)
 * are what makes the tail.
 *
 * Every malloc and free is timed on its own, with rdtsc on x86_64 (fenced on
 * both sides; the ticks are converted to ns by a calibration against
 * CLOCK_MONOTONIC over the whole run) and with clock_gettime elsewhere. The
 * samples go to arrays mmap'ed directly, sized before the run, so the
 * allocator under test never sees them. Every block is filled with a pattern
 * (sparsely above 4 KiB) that is checked before it is freed, outside the
 * timed region.
 *
 * ITERATIONS: the total number of mallocs, split over the threads (rounded
 * up to whole rounds). The result line adds, for malloc, free and all calls:
 *   {malloc,free,all}_{p50,p99,p999,max,mean}_ns
 * (nearest-rank percentiles over every call of every thread), ops (the calls
 * timed), tsc_ghz (ticks per ns; 0 without rdtsc) and timer_ns, the cost of
 * an empty timed region (the floor under every sample, not subtracted). */
#include "bench_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

enum {
  WORKING = 4096,
  CHURN = 32768,
  BURST = 8192,
  IDLE_MS = 20,
  PAGE_FILL_FROM = 4096, /* blocks this big are filled sparsely */
};

struct block {
  void *pointer;
  size_t size;
  uint64_t tag;
};

/* A timing sample in ticks, saturated to 32 bits (over a second at 4 GHz);
 * the exact maximum is kept on the side. */
typedef uint32_t sample_t;

struct worker {
  unsigned index;
  uint64_t rounds;
  struct bench_rng rng;
  uint64_t made; /* blocks made, for unique tags */
  struct block *working, *burst;
  sample_t *malloc_samples, *free_samples;
  uint64_t mallocs, frees;           /* samples taken */
  uint64_t malloc_max, free_max;     /* exact maxima, in ticks */
  uint64_t malloc_total, free_total; /* sums, in ticks */
};

static inline uint64_t ticks(void)
{
#if defined(__x86_64__)
  /* lfence before: the calls before have completed; after: the code timed
   * does not start before the timestamp is read. */
  _mm_lfence();
  uint64_t t = __rdtsc();
  _mm_lfence();
  return t;
#else
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
#endif
}

static uint64_t monotonic_ns(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/* Memory the allocator under test does not see: zeroed, from the kernel. */
static void *map(size_t bytes)
{
  void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED)
    bench_fail("mmap(%zu) failed", bytes);
  return memory;
}

static size_t block_size(uint64_t random)
{
  unsigned percent = (unsigned)(random % 100);
  random >>= 8;
  if (percent < 85)
    return bench_log_uniform(random, 16, 1024);
  if (percent < 99)
    return bench_log_uniform(random, 1024, 32 * 1024);
  return bench_log_uniform(random, 64 * 1024, 512 * 1024);
}

static void record(sample_t *samples, uint64_t *count, uint64_t *max, uint64_t *total,
                   uint64_t elapsed)
{
  samples[(*count)++] = elapsed > UINT32_MAX ? UINT32_MAX : (sample_t)elapsed;
  if (elapsed > *max)
    *max = elapsed;
  *total += elapsed;
}

static void make_block(struct worker *worker, struct block *block)
{
  uint64_t random = bench_rng_next(&worker->rng);
  size_t size = block_size(random);
  uint64_t start = ticks();
  void *pointer = malloc(size);
  uint64_t elapsed = ticks() - start;
  if (!pointer)
    bench_fail("malloc(%zu) returned NULL", size);
  record(worker->malloc_samples, &worker->mallocs, &worker->malloc_max, &worker->malloc_total,
         elapsed);
  uint64_t tag = bench_mix(((uint64_t)worker->index << 48) ^ worker->made++);
  if (size >= PAGE_FILL_FROM)
    bench_fill_pages(pointer, size, tag);
  else
    bench_fill(pointer, size, tag);
  *block = (struct block){pointer, size, tag};
}

static void free_block(struct worker *worker, struct block *block)
{
  bool intact = block->size >= PAGE_FILL_FROM
                    ? bench_intact_pages(block->pointer, block->size, block->tag)
                    : bench_intact(block->pointer, block->size, block->tag);
  if (!intact)
    bench_fail("thread %u: block %p (%zu bytes) changed while held", worker->index,
               block->pointer, block->size);
  uint64_t start = ticks();
  free(block->pointer);
  uint64_t elapsed = ticks() - start;
  record(worker->free_samples, &worker->frees, &worker->free_max, &worker->free_total, elapsed);
  block->pointer = NULL;
}

static void *run(void *arg)
{
  struct worker *worker = arg;
  for (size_t i = 0; i < WORKING; i++)
    make_block(worker, &worker->working[i]);
  for (uint64_t round = 0; round < worker->rounds; round++) {
    for (size_t i = 0; i < CHURN; i++) {
      struct block *slot = &worker->working[bench_rng_next(&worker->rng) % WORKING];
      free_block(worker, slot);
      make_block(worker, slot);
    }
    for (size_t i = 0; i < BURST; i++)
      make_block(worker, &worker->burst[i]);
    for (size_t i = 0; i < BURST; i++)
      free_block(worker, &worker->burst[i]);
    struct timespec idle = {0, IDLE_MS * 1000000L};
    nanosleep(&idle, NULL);
  }
  for (size_t i = 0; i < WORKING; i++)
    free_block(worker, &worker->working[i]);
  return NULL;
}

static int compare_samples(const void *a, const void *b)
{
  sample_t x = *(const sample_t *)a, y = *(const sample_t *)b;
  return (x > y) - (x < y);
}

/* Nearest rank: the smallest sample with at least p of the samples at or
 * below it. */
static sample_t percentile(const sample_t *sorted, uint64_t count, double p)
{
  uint64_t rank = (uint64_t)((double)count * p + 0.999999);
  if (rank < 1)
    rank = 1;
  if (rank > count)
    rank = count;
  return sorted[rank - 1];
}

struct summary {
  double p50, p99, p999, max, mean;
};

/* Sorts `count` samples gathered in `all` and summarises them in ns. */
static struct summary summarise(sample_t *all, uint64_t count, uint64_t max, uint64_t total,
                                double ticks_per_ns)
{
  qsort(all, count, sizeof *all, compare_samples);
  return (struct summary){
      .p50 = percentile(all, count, 0.50) / ticks_per_ns,
      .p99 = percentile(all, count, 0.99) / ticks_per_ns,
      .p999 = percentile(all, count, 0.999) / ticks_per_ns,
      .max = (double)max / ticks_per_ns,
      .mean = (double)total / (double)count / ticks_per_ns,
  };
}

static int print_summary(char *text, size_t room, const char *name, struct summary s)
{
  return snprintf(text, room,
                  " %s_p50_ns=%.1f %s_p99_ns=%.1f %s_p999_ns=%.1f %s_max_ns=%.1f %s_mean_ns=%.1f",
                  name, s.p50, name, s.p99, name, s.p999, name, s.max, name, s.mean);
}

/* The smallest of many empty timed regions, in ticks. */
static uint64_t timer_floor(void)
{
  uint64_t floor = UINT64_MAX;
  for (int i = 0; i < 10000; i++) {
    uint64_t start = ticks();
    uint64_t elapsed = ticks() - start;
    if (elapsed < floor)
      floor = elapsed;
  }
  return floor;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 2, .iterations = 2000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  unsigned threads = args.threads;
  uint64_t per_thread = (args.iterations + threads - 1) / threads;
  uint64_t rounds = (per_thread + CHURN + BURST - 1) / (CHURN + BURST);
  /* Samples of one thread: every malloc (and as many frees). */
  uint64_t capacity = WORKING + rounds * (CHURN + BURST);
  struct worker *workers = map(threads * sizeof *workers);
  for (unsigned i = 0; i < threads; i++)
    workers[i] = (struct worker){
        .index = i,
        .rounds = rounds,
        .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))},
        .working = map(WORKING * sizeof(struct block)),
        .burst = map(BURST * sizeof(struct block)),
        .malloc_samples = map(capacity * sizeof(sample_t)),
        .free_samples = map(capacity * sizeof(sample_t)),
    };
  uint64_t floor = timer_floor();
  uint64_t ns_start = monotonic_ns(), ticks_start = ticks();
  double start = bench_now();
  bench_run_parallel(threads, run, workers, sizeof *workers);
  double seconds = bench_now() - start;
  uint64_t ns_end = monotonic_ns(), ticks_end = ticks();
#if defined(__x86_64__)
  double ticks_per_ns = (double)(ticks_end - ticks_start) / (double)(ns_end - ns_start);
#else
  double ticks_per_ns = 1.0;
  (void)ticks_start, (void)ticks_end, (void)ns_start, (void)ns_end;
#endif

  /* Every thread's samples, mallocs first, in one array (from the kernel). */
  uint64_t mallocs = 0, frees = 0, malloc_max = 0, free_max = 0, malloc_total = 0,
           free_total = 0;
  for (unsigned i = 0; i < threads; i++) {
    if (workers[i].mallocs != workers[i].frees)
      bench_fail("thread %u: %" PRIu64 " mallocs but %" PRIu64 " frees", i, workers[i].mallocs,
                 workers[i].frees);
    mallocs += workers[i].mallocs;
    frees += workers[i].frees;
    malloc_max = workers[i].malloc_max > malloc_max ? workers[i].malloc_max : malloc_max;
    free_max = workers[i].free_max > free_max ? workers[i].free_max : free_max;
    malloc_total += workers[i].malloc_total;
    free_total += workers[i].free_total;
  }
  sample_t *all = map((mallocs + frees) * sizeof *all);
  uint64_t filled = 0;
  for (unsigned i = 0; i < threads; i++) {
    memcpy(all + filled, workers[i].malloc_samples, workers[i].mallocs * sizeof *all);
    filled += workers[i].mallocs;
  }
  for (unsigned i = 0; i < threads; i++) {
    memcpy(all + filled, workers[i].free_samples, workers[i].frees * sizeof *all);
    filled += workers[i].frees;
  }
  /* All calls first (sorting the whole array), then each kind: the kinds
   * are sorted again from the threads' arrays. */
  struct summary every = summarise(all, mallocs + frees, malloc_max > free_max ? malloc_max : free_max,
                                   malloc_total + free_total, ticks_per_ns);
  filled = 0;
  for (unsigned i = 0; i < threads; i++) {
    memcpy(all + filled, workers[i].malloc_samples, workers[i].mallocs * sizeof *all);
    filled += workers[i].mallocs;
  }
  struct summary of_malloc = summarise(all, mallocs, malloc_max, malloc_total, ticks_per_ns);
  filled = 0;
  for (unsigned i = 0; i < threads; i++) {
    memcpy(all + filled, workers[i].free_samples, workers[i].frees * sizeof *all);
    filled += workers[i].frees;
  }
  struct summary of_free = summarise(all, frees, free_max, free_total, ticks_per_ns);

  char extra[1024];
  int length = snprintf(extra, sizeof extra, "ops=%" PRIu64, mallocs + frees);
  length += print_summary(extra + length, sizeof extra - (size_t)length, "malloc", of_malloc);
  length += print_summary(extra + length, sizeof extra - (size_t)length, "free", of_free);
  length += print_summary(extra + length, sizeof extra - (size_t)length, "all", every);
#if defined(__x86_64__)
  double ghz = ticks_per_ns;
#else
  double ghz = 0;
#endif
  snprintf(extra + length, sizeof extra - (size_t)length, " tsc_ghz=%.3f timer_ns=%.1f", ghz,
           (double)floor / ticks_per_ns);
  bench_report_extra("latency", &args, seconds, extra);
  return 0;
}
