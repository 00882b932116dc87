#include "size_class.h"

uint8_t hm_class_lut[HM_LUT_MAX / 16 + 1];
uint32_t hm_class_size[HM_CLASSES];
uint8_t hm_class_granules[HM_CLASSES];

static size_t class_size_formula(unsigned cls)
{
  if (cls < 8)
    return (cls + 1) * 16;
  unsigned k = (cls - 8) / 8, j = (cls - 8) % 8;
  return ((size_t)128 << k) + (j + 1) * ((size_t)16 << k);
}

/* Spans hold at least 8 blocks where 16 granules allow it: fewer blocks per
 * span means more span changes on the slow path. */
static uint8_t span_granules(size_t size)
{
  unsigned g = 1;
  while (g < 16 && (g * HM_GRANULE - hm_class_offset(size)) / size < 8)
    g *= 2;
  return (uint8_t)g;
}

static unsigned class_of_slow(size_t n)
{
  unsigned cls = 0;
  while (class_size_formula(cls) < n)
    cls++;
  return cls;
}

static _Atomic bool tables_ready;

/* The fast path reads the tables without synchronising with their writer,
 * so they are written before any thread can exist: by the constructor below,
 * or earlier by process start-up if another library's constructor allocates
 * first (still single-threaded then). */
void hm_size_class_init(void)
{
  if (atomic_load_explicit(&tables_ready, memory_order_acquire))
    return;
  for (unsigned c = 0; c < HM_CLASSES; c++) {
    hm_class_size[c] = (uint32_t)class_size_formula(c);
    hm_class_granules[c] = span_granules(hm_class_size[c]);
  }
  for (size_t i = 0; i <= HM_LUT_MAX / 16; i++)
    hm_class_lut[i] = (uint8_t)class_of_slow(i == 0 ? 1 : i * 16);
  atomic_store_explicit(&tables_ready, true, memory_order_release);
}

__attribute__((constructor)) static void size_class_constructor(void)
{
  hm_size_class_init();
}
