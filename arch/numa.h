/* NUMA services of the OS layer: the current CPU, the node count and memory
 * binding (the helper thread is hm_os_thread_start, arch/os.h). Nothing here
 * allocates or loads hwloc; the topology itself (which CPU belongs to which
 * node) is src/topology.c.
 *
 * CPU and node numbers here are the operating system's (what sched_getcpu
 * and mbind use), not hwloc's logical indexes. */
#ifndef HM_ARCH_NUMA_H
#define HM_ARCH_NUMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__linux__) && defined(__has_include)
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#endif
#endif

/* The CPU the calling thread runs on (it may have moved by the time the
 * caller looks). Cheap: glibc 2.35+ registers rseq for every thread, and the
 * kernel keeps rseq.cpu_id current, so the fast path is one load from the
 * thread's own rseq area (thread pointer + __rseq_offset). Where rseq is not
 * registered (GLIBC_TUNABLES=glibc.pthread.rseq=0, valgrind, another library
 * owning rseq), hm_os_current_cpu_slow() uses RDPID on x86, else the vDSO's
 * getcpu. Never a raw system call. */
int hm_os_current_cpu_slow(void);

#ifdef RSEQ_SIG
/* cpu_id of the calling thread's rseq area: negative until registration (-1)
 * or when it failed (-2). One load relative to the thread pointer. */
static inline int hm_os_rseq_cpu_id(void)
{
  int cpu;
#if defined(__x86_64__)
  /* volatile: the kernel rewrites cpu_id whenever the thread migrates. */
  __asm__ __volatile__("movl %%fs:%c2(%1), %0"
                       : "=r"(cpu)
                       : "r"(__rseq_offset), "i"(offsetof(struct rseq, cpu_id)));
#else
  const char *area = (const char *)__builtin_thread_pointer() + __rseq_offset;
  cpu = (int)__atomic_load_n((const unsigned *)(area + offsetof(struct rseq, cpu_id)),
                             __ATOMIC_RELAXED);
#endif
  return cpu;
}
#endif

static inline int hm_os_current_cpu(void)
{
#ifdef RSEQ_SIG
  int cpu = hm_os_rseq_cpu_id();
  if (__builtin_expect(cpu >= 0, 1))
    return cpu;
#endif
  return hm_os_current_cpu_slow();
}

/* Each way of finding the current CPU on its own, for tests and for
 * measuring: -1 when that way is not available to the calling thread. */
int hm_os_cpu_from_rseq(void);
int hm_os_cpu_from_rdpid(void);
int hm_os_cpu_from_getcpu(void);

/* Which of the ways above hm_os_current_cpu() takes in the calling thread. */
enum hm_os_cpu_source { HM_CPU_FROM_RSEQ, HM_CPU_FROM_RDPID, HM_CPU_FROM_GETCPU };
enum hm_os_cpu_source hm_os_current_cpu_source(void);
const char *hm_os_cpu_source_name(enum hm_os_cpu_source source);

/* Number of online NUMA nodes (/sys/devices/system/node/online, read with
 * open/read: no stdio, no allocation); 1 when the file is absent (a kernel
 * without NUMA) or unreadable. */
int hm_os_numa_nodes_online(void);
/* Counts the nodes of a kernel node list such as "0", "0-3" or "0,2-5\n";
 * -1 if `text` (of `len` bytes) is not one. */
int hm_os_parse_node_list(const char *text, size_t len);

/* Asks the kernel to place the pages of [p, p + size) on OS node `node`
 * (mbind with MPOL_PREFERRED): call it before the pages are first touched.
 * Preferred, not MPOL_BIND: when the node runs out of memory, pages come
 * from another node instead of the process being OOM-killed; locality is a
 * performance property of an allocator, never one of correctness. Each
 * policy boundary splits a mapping (a process has ~65,000), so bind large
 * reservations once, never per span. Returns 0, or an errno value: EINVAL
 * for a node the kernel does not have, EPERM, ENOSYS (no NUMA support)...
 * errno itself is left as it was. */
int hm_os_bind(void *p, size_t size, int node);

#endif
