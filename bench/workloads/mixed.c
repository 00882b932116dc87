/* mixed: mixed sizes and lifetimes, with realloc growth. Each of T threads
 * runs ITERATIONS / T steps; a step retires the objects whose time has come
 * and makes one new object:
 *   size      90% 16..512 B, 10% 512 B..64 KiB (log-uniform in each range);
 *   lifetime  80% short (1..16 steps), 15% medium (..4096), 5% long (..200000,
 *             most outlive the run and are freed at its end);
 *   growth    a tenth of the objects are buffers that grow: when their time
 *             comes they are realloc'ed to 1.5x..2x and live on, until they
 *             reach 8x their first size (at most 256 KiB).
 * Every object is checked before it is freed, and a grown object's old
 * contents are checked after the realloc moved or extended it. */
#include "bench_common.h"

#include <stdlib.h>

enum { WHEEL = 1 << 18, POOL = 1 << 15, GROW_CAP = 256 * 1024 };

struct object {
  unsigned char *block;
  size_t size;
  size_t cap; /* the size it grows to; its first size if it does not grow */
  uint64_t tag;
  uint32_t next; /* the next entry of the same wheel slot; 0: none */
};

/* Objects wait in a timing wheel, in the list of the step they die (or grow)
 * at; WHEEL exceeds the longest lifetime, so a slot holds only objects due
 * at the step that reaches it. Entries come from a pool (index 0 unused). */
struct mixer {
  unsigned index;
  uint64_t steps;
  struct bench_rng rng;
  uint32_t *wheel;      /* WHEEL list heads */
  struct object *pool;  /* POOL entries */
  uint32_t free_entry;  /* head of the pool's free entries */
};

static size_t pick_size(uint64_t random)
{
  if (random % 10 != 0)
    return bench_log_uniform(random >> 8, 16, 512);
  return bench_log_uniform(random >> 8, 512, 65536);
}

static uint64_t pick_lifetime(uint64_t random)
{
  unsigned percent = (unsigned)(random % 100);
  random >>= 8;
  if (percent < 80)
    return 1 + random % 16;
  if (percent < 95)
    return 1 + random % 4096;
  return 1 + random % 200000;
}

static void schedule(struct mixer *mixer, uint64_t when, struct object object)
{
  uint32_t entry = mixer->free_entry;
  if (entry == 0)
    bench_fail("thread %u: more than %d objects alive", mixer->index, POOL - 1);
  mixer->free_entry = mixer->pool[entry].next;
  object.next = mixer->wheel[when % WHEEL];
  mixer->pool[entry] = object;
  mixer->wheel[when % WHEEL] = entry;
}

static void check(const struct mixer *mixer, const struct object *object, size_t size)
{
  if (!bench_intact(object->block, size, object->tag))
    bench_fail("thread %u: object %p (%zu of %zu bytes checked) changed", mixer->index,
               (void *)object->block, size, object->size);
}

/* realloc to 1.5x..2x (at most the cap), checking the old contents survived. */
static void grow(struct mixer *mixer, struct object *object, uint64_t random)
{
  size_t size = object->size + object->size / 2 + (size_t)(random % (object->size / 2 + 1));
  if (size > object->cap)
    size = object->cap;
  unsigned char *block = realloc(object->block, size);
  if (!block)
    bench_fail("realloc(%zu) returned NULL", size);
  object->block = block;
  check(mixer, object, object->size);
  object->size = size;
  bench_fill(block, size, object->tag);
}

/* The object has come due: grow and reschedule it, or free it. */
static void retire(struct mixer *mixer, uint64_t now, struct object object)
{
  uint64_t random = bench_rng_next(&mixer->rng);
  if (object.size < object.cap) {
    grow(mixer, &object, random);
    schedule(mixer, now + pick_lifetime(random >> 16), object);
    return;
  }
  check(mixer, &object, object.size);
  free(object.block);
}

/* Takes the list of objects due at `when` off the wheel and retires them. */
static void retire_due(struct mixer *mixer, uint64_t when)
{
  uint32_t entry = mixer->wheel[when % WHEEL];
  mixer->wheel[when % WHEEL] = 0;
  while (entry) {
    struct object object = mixer->pool[entry];
    mixer->pool[entry].next = mixer->free_entry;
    mixer->free_entry = entry;
    entry = object.next;
    retire(mixer, when, object);
  }
}

static void *calloc_or_fail(size_t count, size_t size)
{
  void *memory = calloc(count, size);
  if (!memory)
    bench_fail("calloc(%zu, %zu) returned NULL", count, size);
  return memory;
}

static void *mix(void *arg)
{
  struct mixer *mixer = arg;
  mixer->wheel = calloc_or_fail(WHEEL, sizeof *mixer->wheel);
  mixer->pool = calloc_or_fail(POOL, sizeof *mixer->pool);
  for (uint32_t entry = 1; entry < POOL; entry++)
    mixer->pool[entry].next = entry + 1 < POOL ? entry + 1 : 0;
  mixer->free_entry = 1;
  for (uint64_t now = 0; now < mixer->steps; now++) {
    retire_due(mixer, now);
    uint64_t random = bench_rng_next(&mixer->rng);
    struct object object = {.size = pick_size(random), .tag = random};
    bool grows = bench_rng_next(&mixer->rng) % 10 == 0;
    object.cap = grows ? (object.size * 8 < GROW_CAP ? object.size * 8 : GROW_CAP) : object.size;
    object.block = bench_malloc(object.size);
    bench_fill(object.block, object.size, object.tag);
    schedule(mixer, now + pick_lifetime(bench_rng_next(&mixer->rng)), object);
  }
  /* What outlives the run dies at its end, grown or not. */
  for (uint64_t slot = 0; slot < WHEEL; slot++)
    for (uint32_t entry = mixer->wheel[slot]; entry; entry = mixer->pool[entry].next) {
      check(mixer, &mixer->pool[entry], mixer->pool[entry].size);
      free(mixer->pool[entry].block);
    }
  free(mixer->pool);
  free(mixer->wheel);
  return NULL;
}

int main(int argc, char **argv)
{
  struct bench_args args = {.threads = 1, .iterations = 3000000, .seed = 1};
  bench_parse_args(argc, argv, &args);
  struct mixer *mixers = bench_malloc(args.threads * sizeof *mixers);
  for (unsigned i = 0; i < args.threads; i++)
    mixers[i] = (struct mixer){.index = i,
                               .steps = args.iterations / args.threads,
                               .rng = {bench_mix(args.seed ^ ((uint64_t)i << 32))}};
  double start = bench_now();
  bench_run_parallel(args.threads, mix, mixers, sizeof *mixers);
  double seconds = bench_now() - start;
  free(mixers);
  bench_report("mixed", &args, seconds);
  return 0;
}
