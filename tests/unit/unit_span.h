/* Helpers for the unit tests that look at spans on the arena's stacks and
 * at their shared words. Only while no other thread changes what they
 * read. */
#ifndef HM_UNIT_SPAN_H
#define HM_UNIT_SPAN_H

#include "arena.h"
#include "span.h"
#include "unit.h"

/* How many times `s` is on stack `st`. */
static inline unsigned unit_times_on(hm_stack *st, const hm_span *s)
{
  unsigned n = 0, steps = 0;
  for (hm_link *l = hm_stack_node(atomic_load(&st->head)); l != NULL; l = atomic_load(&l->next)) {
    CHECK(++steps < 1000000, "an arena stack does not end");
    n += (const hm_span *)l == s;
  }
  return n;
}

static inline uint64_t unit_remote_word(const hm_span *s)
{
  return atomic_load(&s->remote);
}

#endif
