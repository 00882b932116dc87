/* burst: a burst of small objects, mostly freed, then large allocations; what
 * does the process keep? The phases:
 *   live   64 MiB of small objects (16..256 B) that live to the end;
 *   burst  1 GiB more of small objects (16..256 B);
 *   free   the burst is freed but for 1 in 64 objects, scattered;
 *   large  256 MiB of large blocks (64 KiB..4 MiB, every page touched),
 *          then freed: can they reuse what the burst left?
 *   idle   1 s without a call to the allocator.
 * time_s is the time of the phases but idle; rss_kb the peak RSS; idle_rss_kb
 * the RSS at the end of the idle second (what an allocator that returns
 * memory gives back by then).
 *
 * -m timeline: the purging picture instead. A thread samples the RSS every
 * 50 ms (/proc/self/statm) across: live 64 MiB, the 1 GiB burst, freeing all
 * of the burst, 3 s idle; the samples are printed as
 *   sample t_s=T rss_kb=K phase=P
 * lines before the result line.
 *
 * Objects are chained through their first word, so the workload keeps no
 * bookkeeping of its own in the heap; each object's size and pattern derive
 * from its tag, checked before it is freed. ITERATIONS scales the sizes: the
 * default, 1024, is the burst in MiB. */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
  MIN_SIZE = 16,
  MAX_SIZE = 256,
  SURVIVOR_ONE_IN = 64,
  LARGE_MIN = 64 * 1024,
  LARGE_MAX = 4 * 1024 * 1024,
  SAMPLE_MS = 50,
  MAX_SAMPLES = 4096,
};

static const size_t MiB = 1024 * 1024;

struct object {
  struct object *next;
  uint64_t tag;
};

static size_t object_size(uint64_t tag)
{
  return bench_in_range(tag >> 32, MIN_SIZE, MAX_SIZE);
}

/* A chain of small objects adding up to `bytes`, tagged from `seed`. */
static struct object *make_chain(size_t bytes, uint64_t seed)
{
  struct object *head = NULL;
  for (uint64_t i = 0, made = 0; made < bytes; i++) {
    uint64_t tag = bench_mix(seed ^ i);
    size_t size = object_size(tag);
    struct object *object = bench_malloc(size);
    object->next = head;
    object->tag = tag;
    bench_fill(object + 1, size - sizeof *object, tag);
    head = object;
    made += size;
  }
  return head;
}

static void free_object(struct object *object, const char *chain)
{
  if (!bench_intact(object + 1, object_size(object->tag) - sizeof *object, object->tag))
    bench_fail("%s: object %p changed", chain, (void *)object);
  free(object);
}

/* Frees the chain but for one object in `keep_one_in` (0: keep none),
 * chosen by tag; returns the chain of survivors. */
static struct object *thin_chain(struct object *head, unsigned keep_one_in, const char *chain)
{
  struct object *survivors = NULL;
  while (head) {
    struct object *next = head->next;
    if (keep_one_in && head->tag % keep_one_in == 0) {
      head->next = survivors;
      survivors = head;
    } else {
      free_object(head, chain);
    }
    head = next;
  }
  return survivors;
}

/* Large blocks adding up to `bytes`, every page touched, then freed. */
static void large_round(size_t bytes, uint64_t seed)
{
  size_t capacity = bytes / LARGE_MIN + 1, count = 0;
  void **blocks = bench_malloc(capacity * sizeof *blocks);
  size_t *sizes = bench_malloc(capacity * sizeof *sizes);
  for (size_t made = 0; made < bytes && count < capacity; count++) {
    uint64_t tag = bench_mix(seed ^ count);
    sizes[count] = bench_log_uniform(tag, LARGE_MIN, LARGE_MAX);
    blocks[count] = bench_malloc(sizes[count]);
    bench_fill_pages(blocks[count], sizes[count], tag);
    made += sizes[count];
  }
  for (size_t i = 0; i < count; i++) {
    if (!bench_intact_pages(blocks[i], sizes[i], bench_mix(seed ^ i)))
      bench_fail("large block %p (%zu bytes) changed", blocks[i], sizes[i]);
    free(blocks[i]);
  }
  free(sizes);
  free(blocks);
}

static void sleep_ms(long ms)
{
  struct timespec pause = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
  while (nanosleep(&pause, &pause) != 0) {
  }
}

/* --- The timeline's sampler ---------------------------------------------- */

struct sample {
  double t;
  long rss_kb;
  int phase;
};

static const char *const phase_names[] = {"live", "burst", "free", "idle"};
static _Atomic int phase;
static _Atomic bool sampling;
static struct sample samples[MAX_SAMPLES];
static size_t sample_count;

static void *sample_rss(void *arg)
{
  double start = *(double *)arg;
  while (atomic_load(&sampling) && sample_count < MAX_SAMPLES) {
    samples[sample_count++] =
        (struct sample){bench_now() - start, bench_rss_kb(), atomic_load(&phase)};
    sleep_ms(SAMPLE_MS);
  }
  return NULL;
}

static double timeline(const struct bench_args *args, size_t burst_bytes)
{
  pthread_t sampler;
  double start = bench_now();
  atomic_store(&sampling, true);
  if (pthread_create(&sampler, NULL, sample_rss, &start) != 0)
    bench_fail("pthread_create failed");
  struct object *live = make_chain(burst_bytes / 16, args->seed);
  sleep_ms(500); /* a plateau, so the chart shows the live set alone */
  atomic_store(&phase, 1);
  struct object *burst = make_chain(burst_bytes, ~args->seed);
  atomic_store(&phase, 2);
  thin_chain(burst, 0, "burst");
  atomic_store(&phase, 3);
  double seconds = bench_now() - start;
  sleep_ms(3000);
  atomic_store(&sampling, false);
  pthread_join(sampler, NULL);
  thin_chain(live, 0, "live");
  for (size_t i = 0; i < sample_count; i++)
    printf("sample t_s=%.3f rss_kb=%ld phase=%s\n", samples[i].t, samples[i].rss_kb,
           phase_names[samples[i].phase]);
  return seconds;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 1024, .seed = 1};
  bench_parse_args(argc, argv, &args);
  size_t burst_bytes = args.iterations * MiB;
  if (args.mode && strcmp(args.mode, "timeline") == 0) {
    bench_report("burst-timeline", &args, timeline(&args, burst_bytes));
    return 0;
  }
  if (args.mode)
    bench_fail("unknown mode %s (known: timeline)", args.mode);
  double start = bench_now();
  struct object *live = make_chain(burst_bytes / 16, args.seed);
  struct object *burst = make_chain(burst_bytes, ~args.seed);
  struct object *survivors = thin_chain(burst, SURVIVOR_ONE_IN, "burst");
  large_round(burst_bytes / 4, args.seed);
  double seconds = bench_now() - start;
  sleep_ms(1000);
  long idle_rss_kb = bench_rss_kb();
  start = bench_now();
  thin_chain(survivors, 0, "survivors");
  thin_chain(live, 0, "live");
  seconds += bench_now() - start;
  char extra[64];
  snprintf(extra, sizeof extra, "idle_rss_kb=%ld", idle_rss_kb);
  bench_report_extra("burst", &args, seconds, extra);
  return 0;
}
