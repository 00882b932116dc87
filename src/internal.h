/* Definitions shared by every part of the allocator. */
#ifndef HM_INTERNAL_H
#define HM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../arch/cpu.h"
#include "../arch/os.h"

#define hm_likely(x) __builtin_expect(!!(x), 1)
#define hm_unlikely(x) __builtin_expect(!!(x), 0)
#define HM_NOINLINE __attribute__((noinline))
#define HM_COLD __attribute__((cold, noinline))
/* Internal data the fast paths read: hidden, so the library reaches it
 * directly instead of through the GOT. */
#define HM_HIDDEN __attribute__((visibility("hidden")))

/* Every allocation is at least this aligned and this big. */
#define HM_MIN_ALIGN 16
/* The header at the start of every span, large run and huge mapping. */
#define HM_HEADER_SIZE 128

/* A free block. `key` holds hm_free_key while the block is free, so that a
 * second free of it can be recognised (the scheme of glibc's tcache). */
typedef struct hm_block {
  struct hm_block *next;
  uint64_t key;
} hm_block;

/* Random per process, never 0; set before the first block is handed out. */
extern HM_HIDDEN uint64_t hm_free_key;
/* In the key word of a free block that was never handed out and reads as
 * zeros otherwise: calloc need not clear it. */
extern HM_HIDDEN uint64_t hm_zero_key;

/* A relaxed load of an atomic word on a fast path. Other threads write the
 * word (an owner, a bound), and any value it held is safe for the caller,
 * which rechecks on its slow path. A plain load lets the compiler fold it
 * into the compare that uses it; ThreadSanitizer builds keep the atomic
 * load, so the race the C memory model sees is not reported. */
#ifdef __SANITIZE_THREAD__
#define hm_fast_load(p) atomic_load_explicit(p, memory_order_relaxed)
#else
#define hm_fast_load(p) (*(const __typeof__(+*(p)) *)(p))
#endif

static inline uintptr_t hm_align_up(uintptr_t x, uintptr_t align)
{
  return (x + align - 1) & ~(align - 1);
}

static inline bool hm_is_pow2(size_t x)
{
  return x != 0 && (x & (x - 1)) == 0;
}

/* One line on stderr, then abort: `hmalloc: free(): invalid pointer 0x...`. */
_Noreturn void hm_fatal(const char *func, const char *what, const void *p) HM_COLD;
/* One line on stderr: `hmalloc: <msg>`. */
void hm_warn(const char *msg);
/* Formats into buf; returns the length. Enough for the statistics lines. */
size_t hm_format(char *buf, size_t cap, const char *fmt, ...);

#endif
