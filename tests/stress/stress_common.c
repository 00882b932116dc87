#include "stress_common.h"

#include <string.h>

size_t random_size(struct rng *r, const struct size_mix *mix)
{
  uint64_t draw = rng_below(r, 1000000);
  if (draw < mix->huge)
    return rng_range(r, 5u << 20, 8u << 20);
  draw -= mix->huge;
  if (draw < mix->large)
    return rng_range(r, 200u << 10, 2u << 20);
  draw -= mix->large;
  if (draw < mix->medium)
    return rng_range(r, 1025, 64u << 10);
  return rng_range(r, 16, 1024);
}

static void block_fill(struct block *b, struct rng *r)
{
  b->tag = rng_next(r);
  pattern_fill(b->p, b->size, pattern_base(b->p, b->size, b->tag));
}

static void check_usable(const struct block *b, const char *where)
{
  size_t usable = t_usable_size(b->p);
  if (usable < b->size)
    fail("%s: usable size %zu of %p is below the %zu bytes asked", where, usable, b->p, b->size);
}

static void check_zeroed(const void *p, size_t size)
{
  const uint8_t *c = p;
  for (size_t i = 0; i < size; i++)
    if (c[i] != 0)
      fail("calloc: byte %zu of %p (size %zu) is %#x, not 0", i, p, size, c[i]);
}

static void *alloc_aligned(struct rng *r, size_t size)
{
  if (rng_below(r, 2) == 0) {
    size_t align = (size_t)1 << rng_range(r, 4, 12);
    void *p = t_aligned_alloc(align, size);
    if (p != NULL && (uintptr_t)p % align != 0)
      fail("aligned_alloc(%zu, %zu) returned %p, misaligned", align, size, p);
    return p;
  }
  size_t align = (size_t)1 << rng_range(r, 3, 13);
  void *p = NULL;
  int err = t_posix_memalign(&p, align, size);
  if (err != 0)
    fail("posix_memalign(%zu, %zu) failed: %s", align, size, strerror(err));
  if ((uintptr_t)p % align != 0)
    fail("posix_memalign(%zu, %zu) returned %p, misaligned", align, size, p);
  return p;
}

void block_alloc(struct block *b, struct rng *r, size_t size)
{
  uint64_t kind = rng_below(r, 100);
  void *p;
  if (kind < 80) {
    p = t_malloc(size);
  } else if (kind < 88) {
    p = kind % 2 ? t_calloc(size, 1) : t_calloc(1, size);
    if (p != NULL)
      check_zeroed(p, size);
  } else {
    p = alloc_aligned(r, size);
  }
  if (p == NULL)
    fail("allocating %zu bytes (kind %llu) failed", size, (unsigned long long)kind);
  *b = (struct block){.p = p, .size = size};
  check_usable(b, "alloc");
  block_fill(b, r);
}

void block_verify(const struct block *b, const char *where)
{
  pattern_expect(b->p, b->size, pattern_base(b->p, b->size, b->tag), where);
}

void block_free(struct block *b, const char *where)
{
  block_verify(b, where);
  t_free(b->p);
  *b = (struct block){0};
}

void block_realloc(struct block *b, struct rng *r, size_t size)
{
  block_verify(b, "before realloc");
  struct block old = *b;
  uint64_t base = pattern_base(old.p, old.size, old.tag);
  void *q = t_realloc(b->p, size);
  if (q == NULL)
    fail("realloc(%p, %zu) from %zu bytes failed", old.p, size, old.size);
  pattern_expect(q, old.size < size ? old.size : size, base, "after realloc");
  *b = (struct block){.p = q, .size = size};
  check_usable(b, "realloc");
  block_fill(b, r);
}

struct block_msg {
  struct block block;
  struct block_msg *next;
};

void queue_init(struct block_queue *q)
{
  pthread_mutex_init(&q->lock, NULL);
  q->head = NULL;
}

void queue_destroy(struct block_queue *q)
{
  if (q->head != NULL)
    fail("a queue was destroyed with blocks in it");
  pthread_mutex_destroy(&q->lock);
}

void queue_push(struct block_queue *q, const struct block *b)
{
  struct block_msg *m = t_malloc(sizeof *m);
  if (m == NULL)
    fail("allocating a queue node failed");
  m->block = *b;
  pthread_mutex_lock(&q->lock);
  m->next = q->head;
  q->head = m;
  pthread_mutex_unlock(&q->lock);
}

size_t queue_take(struct block_queue *q, struct block *out, size_t max)
{
  size_t n = 0;
  pthread_mutex_lock(&q->lock);
  for (; n < max && q->head != NULL; n++) {
    struct block_msg *m = q->head;
    q->head = m->next;
    out[n] = m->block;
    t_free(m);
  }
  pthread_mutex_unlock(&q->lock);
  return n;
}

size_t queue_free_all(struct block_queue *q, const char *where)
{
  pthread_mutex_lock(&q->lock);
  struct block_msg *m = q->head;
  q->head = NULL;
  pthread_mutex_unlock(&q->lock);
  size_t n = 0;
  while (m != NULL) {
    struct block_msg *next = m->next;
    block_free(&m->block, where);
    t_free(m);
    m = next;
    n++;
  }
  return n;
}
