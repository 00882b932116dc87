/* The page map: set, look up and clear granule -> header entries. */
#include "pagemap.h"
#include "unit.h"

/* One leaf covers 2^16 granules: 4 GiB of address space. */
#define LEAF_SPAN ((size_t)HM_GRANULE << HM_PAGEMAP_BITS)

static uint8_t *granule(void *base, size_t i)
{
  return (uint8_t *)base + i * HM_GRANULE;
}

/* Every byte address of granules [first, first + count) maps to `header`. */
static void check_mapped(void *base, size_t first, size_t count, const void *header)
{
  for (uint8_t *p = granule(base, first); p < granule(base, first + count); p++)
    CHECK(hm_pagemap_header(p) == header, "%p maps to %p, expected header %p", (void *)p,
          hm_pagemap_header(p), header);
}

/* Granules [first, first + count): first, last and a few interior bytes
 * map to NULL. */
static void check_unmapped(void *base, size_t first, size_t count)
{
  static const size_t offsets[] = {0, 1, 4095, 4096, HM_GRANULE / 2, HM_GRANULE - 1};
  for (size_t g = first; g < first + count; g++)
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
      uint8_t *p = granule(base, g) + offsets[i];
      CHECK(hm_pagemap_header(p) == NULL, "unmarked %p maps to %p", (void *)p,
            hm_pagemap_header(p));
    }
}

/* A span: the header is the first marked granule. */
static void check_span_header(void)
{
  void *base = hm_os_reserve(8 * HM_GRANULE, HM_GRANULE, true);
  CHECK(base != NULL, "hm_os_reserve of 8 granules failed");
  check_unmapped(base, 0, 8);
  CHECK(hm_pagemap_set(granule(base, 1), granule(base, 1), 4), "hm_pagemap_set failed");
  check_mapped(base, 1, 4, granule(base, 1));
  check_unmapped(base, 0, 1);
  check_unmapped(base, 5, 3);
  hm_pagemap_clear(granule(base, 1), 4);
  check_unmapped(base, 0, 8);
  hm_os_release(base, 8 * HM_GRANULE);
  UNIT_PASS("granules of a span map to its header; unmarked and cleared ones to NULL");
}

/* A large block: the header lies before the marked granules. */
static void check_header_before(void)
{
  void *base = hm_os_reserve(8 * HM_GRANULE, HM_GRANULE, true);
  CHECK(base != NULL, "hm_os_reserve of 8 granules failed");
  CHECK(hm_pagemap_set(base, granule(base, 3), 3), "hm_pagemap_set failed");
  check_mapped(base, 3, 3, base);
  check_unmapped(base, 0, 3);
  check_unmapped(base, 6, 2);
  /* Clearing part of a range leaves the rest. */
  hm_pagemap_clear(granule(base, 3), 1);
  check_unmapped(base, 0, 4);
  check_mapped(base, 4, 2, base);
  hm_pagemap_clear(granule(base, 4), 2);
  check_unmapped(base, 0, 8);
  hm_os_release(base, 8 * HM_GRANULE);
  UNIT_PASS("granules may map to a header before them; partial clear");
}

/* A range that straddles two leaves. */
static void check_leaf_boundary(void)
{
  size_t size = LEAF_SPAN + 2 * HM_GRANULE;
  void *base = hm_os_reserve(size, LEAF_SPAN, false); /* never touched */
  CHECK(base != NULL, "hm_os_reserve of 4 GiB aligned to 4 GiB failed");
  uint8_t *first = (uint8_t *)base + LEAF_SPAN - 2 * HM_GRANULE;
  CHECK(hm_pagemap_set(first, first, 4), "hm_pagemap_set across leaves failed");
  check_mapped(first, 0, 4, first);
  check_unmapped(first, 4, 2);
  check_unmapped(base, 0, 1);
  hm_pagemap_clear(first, 4);
  check_unmapped(first, 0, 4);
  hm_os_release(base, size);
  UNIT_PASS("a range across a leaf boundary");
}

static void check_outside_user_space(void)
{
  static const uintptr_t bad[] = {0,
                                  1,
                                  (uintptr_t)1 << 48,
                                  ((uintptr_t)1 << 48) + HM_GRANULE,
                                  (uintptr_t)0xffff800000000000u,
                                  UINTPTR_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(hm_pagemap_header((void *)bad[i]) == NULL, "%#lx maps to %p", (unsigned long)bad[i],
          hm_pagemap_header((void *)bad[i]));
  /* Beyond 48 bits nothing can be marked. */
  void *high = (void *)((uintptr_t)1 << 48);
  CHECK(!hm_pagemap_set(high, high, 1), "hm_pagemap_set accepted %p", high);
  CHECK(hm_pagemap_header(high) == NULL, "%p maps to %p after a refused set", high,
        hm_pagemap_header(high));
  UNIT_PASS("NULL and addresses >= 2^48 map to NULL");
}

/* Clearing where no leaf exists creates none. */
static void check_clear_without_leaf(void)
{
  uintptr_t a = (uintptr_t)0x500000000000u; /* 80 TiB: far from every mapping here */
  size_t top = a >> (HM_GRANULE_SHIFT + HM_PAGEMAP_BITS);
  CHECK(atomic_load(&hm_pagemap_top[top]) == 0, "a leaf exists already for %#lx",
        (unsigned long)a);
  hm_pagemap_clear((void *)a, 2);
  CHECK(atomic_load(&hm_pagemap_top[top]) == 0, "clearing %#lx created a leaf",
        (unsigned long)a);
  CHECK(hm_pagemap_header((void *)a) == NULL, "%#lx maps to a header", (unsigned long)a);
  UNIT_PASS("clear where no leaf exists");
}

int main(void)
{
  check_outside_user_space();
  check_span_header();
  check_header_before();
  check_leaf_boundary();
  check_clear_without_leaf();
  return 0;
}
