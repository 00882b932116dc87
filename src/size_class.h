/* Size classes.
 *
 * 16..128 bytes in steps of 16 (classes 0-7), then each power-of-two range
 * (128·2^k, 128·2^(k+1)] split into 8 equal steps, up to 128 KiB (classes
 * 8-87). Rounding waste above 128 B is therefore below 1/8 of the request,
 * and every class is a multiple of 16, so every block is 16-aligned.
 *
 * A class's blocks start at the largest power of two dividing its size
 * (at least the header's 128 bytes, at most HM_CLASS_ALIGN_MAX) into the
 * span, so every block is aligned to that power: a request rounded up to a
 * multiple of an alignment up to HM_CLASS_ALIGN_MAX names a class that
 * serves it aligned (aligned_alloc on malloc's paths, no pointer inside a
 * block). A span is a multiple of 64 KiB, so no class loses a block to it:
 * the header's 128 bytes took that block's place already. */
#ifndef HM_SIZE_CLASS_H
#define HM_SIZE_CLASS_H

#include "internal.h"

#define HM_CLASSES 88
#define HM_SMALL_MAX ((size_t)128 * 1024)
/* Requests up to this size find their class with one table load. */
#define HM_LUT_MAX 1024
/* Requests of 1 to this size are of class (size - 1) / 16 (classes 0-15). */
#define HM_DIRECT_MAX 256
/* Alignments that small classes serve (a page: valloc's). */
#define HM_CLASS_ALIGN_MAX 4096

extern HM_HIDDEN uint8_t hm_class_lut[HM_LUT_MAX / 16 + 1];
extern HM_HIDDEN uint32_t hm_class_size[HM_CLASSES];
/* Granules per span of the class: 1, 2, 4, 8 or 16. */
extern HM_HIDDEN uint8_t hm_class_granules[HM_CLASSES];

void hm_size_class_init(void);

/* The class of a request of 1..HM_SMALL_MAX bytes; 0 is treated as 1. */
static inline unsigned hm_class_of(size_t n)
{
  if (n <= HM_LUT_MAX)
    return hm_class_lut[(n + 15) >> 4];
  size_t m = n - 1;
  unsigned log = 63u - (unsigned)__builtin_clzl(m); /* >= 10 here */
  return 8u + (log - 7u) * 8u + (unsigned)((m >> (log - 3u)) & 7u);
}

/* Where the first block of a span of blocks of `size` bytes starts. */
static inline size_t hm_class_offset(size_t size)
{
  size_t power = size & -size;
  return power < HM_HEADER_SIZE ? HM_HEADER_SIZE : power > HM_CLASS_ALIGN_MAX ? HM_CLASS_ALIGN_MAX : power;
}

/* Blocks in a span of the class, after the header. */
static inline uint32_t hm_class_capacity(unsigned cls)
{
  size_t size = hm_class_size[cls];
  return (uint32_t)(((size_t)hm_class_granules[cls] * HM_GRANULE - hm_class_offset(size)) / size);
}

#endif
