/* libFuzzer target: sequences of hm_ API calls from three threads, checked
 * against a shadow model of every live block (its size, alignment, heap and
 * a pattern derived from a seed). The input is read as a stream of
 * operations; thread t runs the operations at positions t, t+3, t+6, ...
 * Blocks move between threads through a mailbox, so frees and reallocs of
 * other threads' blocks are exercised, and each thread has a private heap
 * that an operation may reset or destroy and create again. Built with
 * AddressSanitizer and UBSan over the allocator's sources (the hm_ API):
 * a stray write, a block handed out twice or a bad size shows up as a
 * corrupted pattern, an overlap or a sanitizer report. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmalloc.h"

enum { THREADS = 3, SLOTS = 32, MAILBOX = 16, MAX_OPS = 4096 };

struct block {
  uint8_t *p;
  size_t size;
  size_t align;   /* 0: no alignment asked for */
  uint8_t seed;
  bool from_heap; /* of the owning thread's private heap */
};

struct worker {
  const uint8_t *ops; /* the whole input */
  size_t len, first;
  hm_heap *heap;
  struct block slot[SLOTS];
};

static pthread_mutex_t mailbox_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block mailbox[MAILBOX];

static void fail(const char *what, const struct block *b)
{
  fprintf(stderr, "fuzz_alloc: %s: block %p, size %zu, align %zu\n", what, (void *)b->p,
          b->size, b->align);
  abort();
}

/* The pattern: the first and last 64 bytes and one byte per 4 KiB, of the
 * block's size; those below `end` only. */
static void pattern_below(struct block *b, bool write, size_t end)
{
  for (size_t i = 0; i < b->size && i < end;
       i = (i < 64 || i + 64 >= b->size) ? i + 1 : i + 4096) {
    uint8_t v = (uint8_t)(b->seed + i * 7);
    if (write)
      b->p[i] = v;
    else if (b->p[i] != v)
      fail("contents changed", b);
  }
}

static void pattern(struct block *b, bool write)
{
  pattern_below(b, write, b->size);
}

static void check(struct block *b)
{
  if (b->align && ((uintptr_t)b->p & (b->align - 1)) != 0)
    fail("misaligned", b);
  if (hm_usable_size(b->p) < b->size)
    fail("usable size below the size asked for", b);
  pattern(b, false);
}

static size_t size_of(uint8_t kind, uint16_t r)
{
  switch (kind % 8) {
  case 0: return r % 17;                 /* tiny, 0 included */
  case 1: case 2: case 3: return r % 1024;
  case 4: case 5: return r % 32768;
  case 6: return 100000 + (size_t)r * 8; /* large runs */
  default: return (((size_t)r % 6) << 20) + r; /* up to 5 MiB: huge */
  }
}

static void release(struct block *b, uint8_t how)
{
  if (b->p == NULL)
    return;
  check(b);
  if (b->from_heap || how % 3 == 0)
    hm_free(b->p);
  else if (how % 3 == 1)
    hm_free_sized(b->p, b->size);
  else if (b->align)
    hm_free_aligned_sized(b->p, b->align, b->size);
  else
    hm_free_sized(b->p, b->size);
  b->p = NULL;
}

static void fill_new(struct block *b, uint8_t *p, size_t size, size_t align, uint8_t seed,
                     bool zeroed)
{
  if (p == NULL) {
    b->p = NULL;
    return;
  }
  *b = (struct block){p, size, align, seed, false};
  if (zeroed)
    for (size_t i = 0; i < size; i++)
      if (p[i] != 0)
        fail("calloc block not zeroed", b);
  pattern(b, true);
}

/* Every block of the thread's heap is gone with a reset or a destroy. */
static void forget_heap_blocks(struct worker *w)
{
  for (unsigned i = 0; i < SLOTS; i++)
    if (w->slot[i].p && w->slot[i].from_heap)
      w->slot[i].p = NULL;
}

static void run_op(struct worker *w, const uint8_t *op)
{
  struct block *b = &w->slot[op[1] % SLOTS];
  uint16_t r = (uint16_t)(op[2] | op[3] << 8);
  size_t size = size_of(op[1] >> 5, r);
  uint8_t seed = op[3];
  switch (op[0] % 12) {
  case 0: case 1:
    release(b, op[2]);
    fill_new(b, hm_malloc(size), size, 0, seed, false);
    break;
  case 2:
    release(b, op[2]);
    fill_new(b, hm_calloc(size / 8 + 1, 8), (size / 8 + 1) * 8, 0, seed, true);
    break;
  case 3: {
    size_t align = (size_t)1 << (op[2] % 22); /* 1 .. 2 MiB */
    release(b, op[2]);
    fill_new(b, hm_aligned_alloc(align, size), size, align, seed, false);
    break;
  }
  case 4: /* realloc keeps the common prefix */
    if (b->p != NULL && !b->from_heap) {
      check(b);
      size_t keep = b->size < size ? b->size : size;
      uint8_t *q = hm_realloc(b->p, size);
      if (size == 0) {
        b->p = NULL;
        break;
      }
      if (q == NULL)
        break;
      struct block old = *b;
      old.p = q;
      pattern_below(&old, false, keep);
      fill_new(b, q, size, 0, seed, false);
    }
    break;
  case 5: case 6:
    release(b, op[2]);
    break;
  case 7: /* hand a block to whichever thread takes it */
    if (b->p != NULL && !b->from_heap) {
      check(b);
      pthread_mutex_lock(&mailbox_lock);
      struct block *m = &mailbox[op[2] % MAILBOX];
      struct block out = *m;
      *m = *b;
      pthread_mutex_unlock(&mailbox_lock);
      *b = out; /* whatever was there, another thread's block, is ours */
    }
    break;
  case 8:
    release(b, op[2]);
    fill_new(b, hm_heap_malloc(w->heap, size), size, 0, seed, false);
    b->from_heap = b->p != NULL;
    break;
  case 9:
    if (op[2] % 8 == 0) {
      forget_heap_blocks(w);
      if (op[2] % 16 == 0) {
        hm_heap_destroy(w->heap);
        w->heap = hm_heap_create(NULL);
        if (w->heap == NULL)
          abort();
      } else {
        hm_heap_reset(w->heap);
      }
    }
    break;
  case 10:
    if (b->p != NULL)
      check(b);
    break;
  default:
    if (op[2] % 64 == 0)
      hm_trim();
    break;
  }
}

static void *work(void *arg)
{
  struct worker *w = arg;
  for (size_t at = w->first * 4; at + 4 <= w->len; at += THREADS * 4)
    run_op(w, w->ops + at);
  for (unsigned i = 0; i < SLOTS; i++)
    if (!w->slot[i].from_heap)
      release(&w->slot[i], (uint8_t)i);
  hm_heap_destroy(w->heap);
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
  if (len > MAX_OPS * 4)
    len = MAX_OPS * 4;
  static struct worker workers[THREADS];
  pthread_t threads[THREADS];
  for (unsigned t = 0; t < THREADS; t++) {
    workers[t] = (struct worker){.ops = data, .len = len, .first = t};
    workers[t].heap = hm_heap_create(NULL);
    if (workers[t].heap == NULL)
      abort();
  }
  for (unsigned t = 0; t < THREADS; t++)
    if (pthread_create(&threads[t], NULL, work, &workers[t]) != 0)
      abort();
  for (unsigned t = 0; t < THREADS; t++)
    pthread_join(threads[t], NULL);
  for (unsigned i = 0; i < MAILBOX; i++) {
    struct block *m = &mailbox[i];
    if (m->p != NULL) {
      check(m);
      hm_free(m->p);
      m->p = NULL;
    }
  }
  return 0;
}
