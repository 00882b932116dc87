/* Spans: carving, remote frees, release, detach, and the race between a
 * detaching owner and a remote freer. */
#include "arena.h"
#include "init.h"
#include "unit.h"
#include "unit_region.h"

static hm_arena *arena;

/* How many times `s` is on the partial list of class `cls`. Only called
 * while no other thread touches that list. */
static unsigned times_listed_in(const hm_span *s, unsigned cls)
{
  unsigned n = 0, steps = 0;
  for (hm_link *l = hm_stack_node(atomic_load(&arena->partial[cls].stack.head)); l != NULL;
       l = atomic_load(&l->next)) {
    CHECK(++steps < 1000000, "partial list of class %u does not end", cls);
    n += (const hm_span *)l == s;
  }
  return n;
}

static unsigned times_listed(const hm_span *s)
{
  return times_listed_in(s, s->cls);
}

/* Checks the blocks `list` carves after the `done` blocks carved already:
 * each at its slot, in order. Returns how many. */
static size_t check_carved(const hm_span *s, const hm_block *list, size_t done)
{
  size_t size = s->block_size, cap = hm_class_capacity(s->cls);
  size_t per_carve = 4096 / size ? 4096 / size : 1; /* about a page at a time */
  size_t n = 0;
  for (const hm_block *b = list; b != NULL; b = b->next, n++) {
    const uint8_t *expected = s->blocks + (done + n) * size;
    CHECK(done + n < cap, "class %u: more than %zu blocks carved", s->cls, cap);
    CHECK((const uint8_t *)b == expected, "class %u: block %zu at %p, expected %p", s->cls,
          done + n, (const void *)b, (const void *)expected);
    CHECK(((uintptr_t)b & (HM_MIN_ALIGN - 1)) == 0, "block %p not 16-aligned", (const void *)b);
  }
  CHECK(n >= 1 && n <= per_carve, "class %u: carved %zu blocks at once (at most %zu)", s->cls,
        n, per_carve);
  return n;
}

/* hm_span_is_block is true exactly for the starts of carved blocks, over
 * the header, every carved byte and the uncarved rest of the span. */
static void check_is_block(const hm_span *s, size_t carved)
{
  size_t size = s->block_size;
  const uint8_t *span_end = (const uint8_t *)s + (size_t)s->granules * HM_GRANULE;
  for (const uint8_t *p = (const uint8_t *)s; p < span_end; p++) {
    ptrdiff_t off = p - s->blocks;
    bool expected = off >= 0 && (size_t)off < carved * size && (size_t)off % size == 0;
    CHECK(hm_span_is_block(s, p) == expected,
          "class %u, %zu carved: hm_span_is_block(offset %td) is %d", s->cls, carved, off,
          !expected);
  }
}

/* Collects every block left in `s` into blocks[done..]: the span is full
 * after. Returns how many blocks were taken in all. */
static size_t drain(hm_span *s, hm_block **blocks, size_t done)
{
  for (hm_block *list; (list = hm_span_collect(s)) != NULL;) {
    check_carved(s, list, done);
    for (hm_block *b = list; b != NULL; b = b->next)
      blocks[done++] = b;
  }
  size_t cap = hm_class_capacity(s->cls);
  CHECK(done == cap, "class %u: %zu blocks from a span of %zu", s->cls, done, cap);
  CHECK(hm_span_collect(s) == NULL, "collect of a full span of class %u returned a block",
        s->cls);
  return done;
}

/* Links blocks[0..n) into a list, in order. */
static hm_block *link_blocks(hm_block **blocks, size_t n)
{
  for (size_t i = 0; i < n; i++)
    blocks[i]->next = i + 1 < n ? blocks[i + 1] : NULL;
  return n ? blocks[0] : NULL;
}

/* The owner lets go of a span with every block of it free (`blocks`, its
 * `n` carved blocks): the span goes back to its region, unlisted. */
static void release_all(hm_span *s, hm_block **blocks, size_t n, const char *what)
{
  unsigned granules = s->granules, cls = s->cls;
  hm_span_release(s, link_blocks(blocks, n));
  unit_check_given_back(s, granules, what);
  CHECK(times_listed_in(s, cls) == 0, "%s: span %p is listed", what, (void *)s);
}

/* A fresh span of the class with every block taken (into `blocks`). */
static hm_span *take_full(unsigned cls, hm_block **blocks)
{
  hm_span *s = hm_arena_take_span(arena, cls);
  CHECK(s != NULL && s->cls == cls, "hm_arena_take_span(%u) failed", cls);
  drain(s, blocks, 0);
  return s;
}

static void check_format_and_carve(void)
{
  static hm_block *blocks[HM_GRANULE / 16];
  for (unsigned cls = 0; cls < HM_CLASSES; cls++) {
    hm_span *s = hm_arena_take_span(arena, cls);
    CHECK(s != NULL, "hm_arena_take_span(%u) failed", cls);
    hm_span_format(s, cls, s->zeroed); /* formatting again is harmless */
    check_is_block(s, 0);
    hm_block *first = hm_span_collect(s);
    size_t n = check_carved(s, first, 0);
    check_is_block(s, n);
    for (size_t i = 0; i < n; i++, first = first->next)
      blocks[i] = first;
    size_t all = drain(s, blocks, n);
    check_is_block(s, all);
    release_all(s, blocks, all, "a drained span released with every block free");
  }
  UNIT_PASS("format/collect: every class carves distinct, spaced, in-bounds blocks, then NULL");
  UNIT_PASS("hm_span_is_block exact over header, carved and uncarved bytes");
}

static void check_list(const hm_block *list, hm_block *const *expected, size_t n, const char *what)
{
  for (size_t i = 0; i < n; i++, list = list->next)
    CHECK(list == expected[i], "%s: element %zu is %p, expected %p", what, i,
          (const void *)list, (const void *)expected[i]);
  CHECK(list == NULL, "%s: longer than %zu", what, n);
}

/* Blocks freed by other threads come back to the owner, newest first. */
static void check_remote_free(void)
{
  enum { CLS = 3 };
  hm_block *blocks[HM_GRANULE / 16];
  hm_span *s = take_full(CLS, blocks);
  hm_block *freed[] = {blocks[5], blocks[9], blocks[2]};
  for (size_t i = 0; i < 3; i++) {
    hm_span_free_remote(s, freed[i]);
    CHECK(freed[i]->key == hm_free_key, "remote-freed block %p not marked free",
          (void *)freed[i]);
    uint64_t remote = atomic_load(&s->remote);
    CHECK(hm_remote_list(remote) == freed[i] && hm_remote_count(remote) == i + 1,
          "after %zu remote frees the list starts at %p and counts %u", i + 1,
          (void *)hm_remote_list(remote), hm_remote_count(remote));
  }
  CHECK(atomic_load(&s->state) == HM_SPAN_OWNED && times_listed(s) == 0,
        "remote frees into an owned span changed its state to %u / listed it",
        atomic_load(&s->state));
  hm_block *expected[] = {freed[2], freed[1], freed[0]};
  check_list(hm_span_collect(s), expected, 3, "collect after 3 remote frees");
  CHECK(atomic_load(&s->remote) == 0, "the remote list is not empty once collected");
  CHECK(hm_span_collect(s) == NULL, "collect after taking the remote list returned a block");
  UNIT_PASS("remote frees are collected by the owner, newest first");
}

/* The owner lets go: a span with free blocks goes on the partial list with
 * them, a span with every block free on the empty list. */
static void check_release(void)
{
  enum { CLS = 20 };
  hm_block *blocks[HM_GRANULE / 16];
  hm_span *s = take_full(CLS, blocks);
  blocks[1]->next = blocks[0];
  blocks[0]->next = NULL;
  hm_span_release(s, blocks[1]);
  CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1,
        "released with 2 free blocks: state %u, listed %u times", atomic_load(&s->state),
        times_listed(s));
  CHECK(hm_arena_take_span(arena, CLS) == s, "the released span was not taken back");
  hm_block *expected[] = {blocks[1], blocks[0]};
  check_list(hm_span_collect(s), expected, 2, "collect after release");

  /* All blocks free: the span goes back to its region. */
  release_all(s, blocks, hm_class_capacity(CLS), "released with every block free");
  UNIT_PASS("release lists a partial span, gives an all-free one back to its region");
}

/* A span nobody owns is unused once every carved block came back, however
 * it came back: the local list and the remote count together. */
static void check_unused(void)
{
  enum { CLS = 87 };
  hm_block *blocks[HM_GRANULE / 16];
  hm_span *s = take_full(CLS, blocks);
  size_t cap = hm_class_capacity(CLS);
  for (size_t i = 0; i < cap; i++) {
    CHECK(!hm_span_is_unused(s), "unused with %zu of %zu blocks freed", i, cap);
    hm_span_free_remote(s, blocks[i]);
  }
  CHECK(hm_span_is_unused(s), "not unused with every block freed remotely");
  hm_block *list = hm_span_collect(s);
  CHECK(!hm_span_is_unused(s), "unused with every block taken by the owner");
  /* The owner hands out the first block, which is then freed remotely, and
   * lets go of the span with the rest on its local list. */
  hm_block *rest = list->next;
  hm_span_free_remote(s, list);
  unsigned granules = s->granules;
  hm_span_release(s, rest);
  unit_check_given_back(s, granules, "released with all local free but 1 remote free block");
  CHECK(times_listed_in(s, CLS) == 0, "the span given back is listed");
  UNIT_PASS("hm_span_is_unused counts local and remote free blocks");
}

/* A full span is let go: the first remote free lists it, once. */
static void check_detach_then_free(void)
{
  enum { CLS = 30 };
  hm_block *blocks[HM_GRANULE / 16];
  hm_span *s = take_full(CLS, blocks);
  CHECK(!hm_span_detach(s, false), "detach of a full span without remote frees returned true");
  CHECK(atomic_load(&s->state) == HM_SPAN_DETACHED && atomic_load(&s->owner) == NULL,
        "detached span: state %u owner %p", atomic_load(&s->state),
        (void *)atomic_load(&s->owner));
  CHECK(times_listed(s) == 0, "a detached span without frees is listed");
  for (int i = 0; i < 2; i++) {
    hm_span_free_remote(s, blocks[i]);
    CHECK(atomic_load(&s->state) == HM_SPAN_LISTED && times_listed(s) == 1,
          "after %d remote frees: state %u, listed %u times", i + 1, atomic_load(&s->state),
          times_listed(s));
  }
  CHECK(hm_arena_take_span(arena, CLS) == s, "the listed span was not taken");
  CHECK(times_listed(s) == 0, "the span is still listed after it was taken");
  hm_block *expected[] = {blocks[1], blocks[0]};
  check_list(hm_span_collect(s), expected, 2, "collect after detach and 2 remote frees");

  /* keep_if_freed: remote frees already there, the owner keeps the span. */
  hm_span_free_remote(s, blocks[0]);
  CHECK(hm_span_detach(s, true), "detach(keep) with a remote free did not keep the span");
  CHECK(atomic_load(&s->state) == HM_SPAN_OWNED && times_listed(s) == 0,
        "kept span: state %u, listed %u times", atomic_load(&s->state), times_listed(s));
  check_list(hm_span_collect(s), blocks, 1, "collect after a kept detach");
  UNIT_PASS("detach of a full span; first remote free lists it exactly once; keep_if_freed");
}

/* The race: the owner detaches while another thread frees a block. */
#define RACE_ROUNDS UNIT_SCALE(40000)
/* Pauses; bounds the round time when the other thread is descheduled. */
#define RACE_MAX_DELAY 512
enum { RACE_CLS = 40 };

static hm_span *race_span;
static hm_block *race_blocks[HM_GRANULE / 16];
static size_t race_cap;
static _Atomic unsigned freer_ready, round_started, round_freed;

static hm_block *race_block(unsigned round)
{
  return race_blocks[round % race_cap];
}

/* A pause of `base` plus up to 15 spins after the start signal, so that the
 * two sides' steps interleave in varying ways. */
static void stagger(unsigned base, uint64_t *rng)
{
  for (unsigned n = base + unit_rand(rng) % 16; n > 0; n--)
    hm_cpu_pause();
}

static void *remote_freer(void *arg)
{
  (void)arg;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  for (unsigned r = 1; r <= RACE_ROUNDS; r++) {
    atomic_store_explicit(&freer_ready, r, memory_order_release);
    unit_wait_for(&round_started, r);
    stagger(0, &rng);
    hm_span_free_remote(race_span, race_block(r));
    atomic_store_explicit(&round_freed, r, memory_order_release);
  }
  return NULL;
}

/* After both sides ran: kept by the owner, or listed exactly once; the
 * freed block comes back either way. Returns whether the owner kept it. */
static bool settle_round(unsigned r, bool keep, bool kept)
{
  hm_span *s = race_span;
  unsigned state = atomic_load(&s->state), listed = times_listed(s);
  CHECK(keep || !kept, "round %u: detach without keep returned true", r);
  if (kept) {
    CHECK(state == HM_SPAN_OWNED && listed == 0, "round %u: kept span has state %u, listed %u",
          r, state, listed);
  } else {
    CHECK(state == HM_SPAN_LISTED && listed == 1,
          "round %u (keep %d): span let go has state %u, listed %u times (expected once)", r,
          keep, state, listed);
    CHECK(hm_arena_take_span(arena, RACE_CLS) == s, "round %u: listed span not taken", r);
    atomic_store(&s->state, HM_SPAN_OWNED); /* as the thread cache does */
  }
  hm_block *expected[] = {race_block(r)};
  check_list(hm_span_collect(s), expected, 1, "collect after a race round");
  return kept;
}

/* The owner's head start is tuned as the rounds go, towards the point
 * where either side wins half of the time: there the two threads' steps
 * overlap, which is where a missing fence would lose the span. */
static void check_detach_race(void)
{
  race_span = take_full(RACE_CLS, race_blocks);
  race_cap = hm_class_capacity(RACE_CLS);
  pthread_t freer;
  CHECK(pthread_create(&freer, NULL, remote_freer, NULL) == 0, "pthread_create failed");
  unsigned kept = 0, delay = 0;
  uint64_t rng = 0x2545F4914F6CDD1Dull;
  for (unsigned r = 1; r <= RACE_ROUNDS; r++) {
    bool keep = r & 1;
    unit_wait_for(&freer_ready, r);
    atomic_store_explicit(&round_started, r, memory_order_release);
    stagger(delay, &rng);
    bool result = hm_span_detach(race_span, keep);
    unit_wait_for(&round_freed, r);
    kept += settle_round(r, keep, result);
    if (keep && result) /* the free came first: start sooner */
      delay -= delay > 0;
    else if (keep)
      delay += delay < RACE_MAX_DELAY;
  }
  CHECK(pthread_join(freer, NULL) == 0, "pthread_join failed");
  printf("ok: detach/remote-free race, %d rounds: never lost, never listed twice "
         "(owner kept the span in %u of %d keep rounds; final delay %u)\n",
         RACE_ROUNDS, kept, RACE_ROUNDS / 2, delay);
}

int main(void)
{
  hm_process_init();
  arena = hm_arena_for_node(-1);
  check_format_and_carve();
  check_remote_free();
  check_release();
  check_unused();
  check_detach_then_free();
  check_detach_race();
  return 0;
}
