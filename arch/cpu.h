/* CPU services: spin-wait hint and cache-line size. */
#ifndef HM_ARCH_CPU_H
#define HM_ARCH_CPU_H

#define HM_CACHE_LINE 64

static inline void hm_cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
