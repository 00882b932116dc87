/* Size classes.
 *
 * 16..128 bytes in steps of 16 (classes 0-7), then each power-of-two range
 * (128·2^k, 128·2^(k+1)] split into 8 equal steps, up to 128 KiB (classes
 * 8-87). Rounding waste above 128 B is therefore below 1/8 of the request,
 * and every class is a multiple of 16, so every block is 16-aligned. */
#ifndef HM_SIZE_CLASS_H
#define HM_SIZE_CLASS_H

#include "internal.h"

#define HM_CLASSES 88
#define HM_SMALL_MAX ((size_t)128 * 1024)
/* Requests up to this size find their class with one table load. */
#define HM_LUT_MAX 1024
/* Requests of 1 to this size are of class (size - 1) / 16 (classes 0-15). */
#define HM_DIRECT_MAX 256

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

/* Blocks in a span of the class, after the header. */
static inline uint32_t hm_class_capacity(unsigned cls)
{
  return (uint32_t)(((size_t)hm_class_granules[cls] * HM_GRANULE - HM_HEADER_SIZE) /
                    hm_class_size[cls]);
}

#endif
