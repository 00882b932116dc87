/* Size classes: the table, hm_class_of for every small size, rounding waste
 * and span geometry. */
#include "init.h"
#include "size_class.h"
#include "unit.h"

static void check_table(void)
{
  CHECK(HM_CLASSES == 88, "HM_CLASSES is %d", HM_CLASSES);
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    CHECK(hm_class_size[c] % 16 == 0, "class %u size %u not a multiple of 16", c,
          hm_class_size[c]);
    CHECK(c == 0 || hm_class_size[c] > hm_class_size[c - 1],
          "class %u size %u does not exceed class %u size %u", c, hm_class_size[c], c - 1,
          c ? hm_class_size[c - 1] : 0);
  }
  CHECK(hm_class_size[0] == 16, "smallest class is %u", hm_class_size[0]);
  CHECK(hm_class_size[HM_CLASSES - 1] == HM_SMALL_MAX, "largest class is %u",
        hm_class_size[HM_CLASSES - 1]);
  UNIT_PASS("class sizes are increasing multiples of 16, 16 .. 128 KiB");
}

/* Exhaustive: the class of n is the smallest class that holds n. */
static void check_class_of(void)
{
  CHECK(hm_class_of(0) == 0, "hm_class_of(0) = %u", hm_class_of(0));
  for (size_t n = 1; n <= HM_SMALL_MAX; n++) {
    unsigned c = hm_class_of(n);
    CHECK(c < HM_CLASSES, "hm_class_of(%zu) = %u out of range", n, c);
    CHECK(hm_class_size[c] >= n, "hm_class_of(%zu) = %u, size %u too small", n, c,
          hm_class_size[c]);
    CHECK(c == 0 || hm_class_size[c - 1] < n,
          "hm_class_of(%zu) = %u, but class %u (size %u) holds it already", n, c, c - 1,
          c ? hm_class_size[c - 1] : 0);
    /* Above 128 bytes the waste (size - n) / n is at most 1/8. */
    CHECK(n <= 128 || (hm_class_size[c] - n) * 8 <= n,
          "hm_class_of(%zu) = %u wastes %zu bytes (> 12.5%%)", n, c, hm_class_size[c] - n);
  }
  UNIT_PASS("hm_class_of(n) is the smallest class >= n for n in 0..128 KiB, waste <= 12.5%");
}

static void check_boundary(size_t n, unsigned cls, uint32_t size)
{
  CHECK(hm_class_of(n) == cls, "hm_class_of(%zu) = %u, expected %u", n, hm_class_of(n), cls);
  CHECK(hm_class_size[cls] == size, "class %u has size %u, expected %u", cls,
        hm_class_size[cls], size);
}

/* The boundaries size_class.h documents: steps of 16 up to 128, then eight
 * steps per power of two; the table lookup ends at HM_LUT_MAX = 1024. */
static void check_boundaries(void)
{
  check_boundary(1, 0, 16);
  check_boundary(16, 0, 16);
  check_boundary(17, 1, 32);
  check_boundary(128, 7, 128);
  check_boundary(129, 8, 144);
  check_boundary(256, 15, 256);
  check_boundary(257, 16, 288);
  check_boundary(1024, 31, 1024);
  check_boundary(1025, 32, 1152);
  check_boundary(HM_SMALL_MAX - 1, 87, 128 * 1024);
  check_boundary(HM_SMALL_MAX, 87, 128 * 1024);
  UNIT_PASS("documented boundaries (16, 128, 1024, 128 KiB = class 87)");
}

/* A span of the class: 1..16 granules, at least one block, header and
 * blocks inside, and as many blocks as fit. */
static void check_span_geometry(void)
{
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    size_t granules = hm_class_granules[c];
    CHECK(granules >= 1 && granules <= 16 && (granules & (granules - 1)) == 0,
          "class %u: %zu granules per span", c, granules);
    size_t span = granules * HM_GRANULE, size = hm_class_size[c];
    uint32_t cap = hm_class_capacity(c);
    CHECK(cap >= 1, "class %u: capacity 0", c);
    size_t offset = hm_class_offset(size);
    CHECK(offset >= HM_HEADER_SIZE && offset <= HM_CLASS_ALIGN_MAX, "class %u: blocks at %zu", c,
          offset);
    CHECK(offset + cap * size <= span, "class %u: %u blocks of %zu overflow %zu bytes", c, cap,
          size, span);
    /* Aligning the first block costs no block: as many as after the header. */
    CHECK(HM_HEADER_SIZE + (cap + 1) * size > span, "class %u: room for more than %u blocks",
          c, cap);
    /* size_class.c: spans hold at least 8 blocks where 16 granules allow. */
    CHECK(cap >= 8 || granules == 16, "class %u: %u blocks in %zu granules", c, cap, granules);
    CHECK(granules == 1 || (granules / 2 * HM_GRANULE - offset) / size < 8,
          "class %u: %zu granules where half would hold 8 blocks", c, granules);
  }
  UNIT_PASS("spans of every class hold header + capacity blocks, capacity >= 1");
}

/* aligned_alloc's rule (size_class.h): for every power-of-two alignment up
 * to HM_CLASS_ALIGN_MAX and every size, the class of the size rounded up to
 * the alignment has blocks of a multiple of it, the first at a multiple of
 * it: every block of a span (64 KiB-aligned) has the alignment. */
static void check_aligned_classes(void)
{
  for (size_t align = 16; align <= HM_CLASS_ALIGN_MAX; align *= 2)
    for (size_t n = 1; n <= HM_SMALL_MAX; n++) {
      size_t rounded = (n + align - 1) & ~(align - 1);
      if (rounded > HM_SMALL_MAX)
        break;
      unsigned c = hm_class_of(rounded);
      size_t size = hm_class_size[c];
      CHECK(size % align == 0 && hm_class_offset(size) % align == 0,
            "aligned_alloc(%zu, %zu): class %u (%zu bytes, first block at %zu) not %zu-aligned",
            align, n, c, size, hm_class_offset(size), align);
    }
  UNIT_PASS("every class an alignment of 16 .. 4096 rounds to serves it aligned");
}

int main(void)
{
  hm_process_init();
  check_table();
  check_class_of();
  check_boundaries();
  check_span_geometry();
  check_aligned_classes();
  return 0;
}
