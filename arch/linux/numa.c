/* Linux implementation of arch/numa.h. */
#define _GNU_SOURCE
#include "../numa.h"
#include "../os.h"
#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* From <linux/mempolicy.h>, which not every libc's headers carry. */
#define HM_MPOL_PREFERRED 1
/* Nodes a mask can name; node numbers above it are refused as EINVAL. */
#define HM_MAX_OS_NODES 1024

int hm_os_cpu_from_rseq(void)
{
#ifdef RSEQ_SIG
  int cpu = hm_os_rseq_cpu_id();
  return cpu >= 0 ? cpu : -1;
#else
  return -1;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
enum { RDPID_UNKNOWN, RDPID_YES, RDPID_NO };
static int rdpid_support; /* a benign race: every thread computes the same */

static bool has_rdpid(void)
{
  int known = __atomic_load_n(&rdpid_support, __ATOMIC_RELAXED);
  if (known == RDPID_UNKNOWN) {
    unsigned eax, ebx, ecx = 0, edx;
    bool yes = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 22));
    known = yes ? RDPID_YES : RDPID_NO;
    __atomic_store_n(&rdpid_support, known, __ATOMIC_RELAXED);
  }
  return known == RDPID_YES;
}
#endif

int hm_os_cpu_from_rdpid(void)
{
#if defined(__x86_64__) || defined(__i386__)
  if (!has_rdpid())
    return -1;
  /* Linux keeps (node << 12) | cpu in TSC_AUX, which RDPID reads. */
  unsigned long aux;
  __asm__ __volatile__("rdpid %0" : "=r"(aux));
  return (int)(aux & 0xfff);
#else
  return -1;
#endif
}

int hm_os_cpu_from_getcpu(void)
{
  int cpu = sched_getcpu(); /* the vDSO's getcpu, where the kernel has one */
  return cpu >= 0 ? cpu : -1;
}

enum hm_os_cpu_source hm_os_current_cpu_source(void)
{
  if (hm_os_cpu_from_rseq() >= 0)
    return HM_CPU_FROM_RSEQ;
  if (hm_os_cpu_from_rdpid() >= 0)
    return HM_CPU_FROM_RDPID;
  return HM_CPU_FROM_GETCPU;
}

const char *hm_os_cpu_source_name(enum hm_os_cpu_source source)
{
  switch (source) {
  case HM_CPU_FROM_RSEQ:
    return "rseq";
  case HM_CPU_FROM_RDPID:
    return "rdpid";
  case HM_CPU_FROM_GETCPU:
    return "getcpu";
  }
  return "?";
}

int hm_os_current_cpu_slow(void)
{
  int cpu = hm_os_cpu_from_rdpid();
  if (cpu >= 0)
    return cpu;
  cpu = hm_os_cpu_from_getcpu();
  return cpu >= 0 ? cpu : 0;
}

/* Reads the decimal number at *s, advancing it; -1 if there is none. */
static long parse_number(const char **s, const char *end)
{
  if (*s == end || **s < '0' || **s > '9')
    return -1;
  long v = 0;
  while (*s < end && **s >= '0' && **s <= '9' && v < 1000000)
    v = v * 10 + (*(*s)++ - '0');
  return v;
}

int hm_os_parse_node_list(const char *text, size_t len)
{
  const char *s = text, *end = text + len;
  while (end > s && (end[-1] == '\n' || end[-1] == ' '))
    end--;
  long count = 0;
  while (s < end) {
    long first = parse_number(&s, end), last = first;
    if (first < 0)
      return -1;
    if (s < end && *s == '-') {
      s++;
      last = parse_number(&s, end);
      if (last < first)
        return -1;
    }
    count += last - first + 1;
    if (s < end && *s++ != ',')
      return -1;
  }
  return count > 0 && count <= HM_MAX_OS_NODES ? (int)count : -1;
}

int hm_os_numa_nodes_online(void)
{
  int fd = open("/sys/devices/system/node/online", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  char buf[256];
  ssize_t n;
  do
    n = read(fd, buf, sizeof buf);
  while (n < 0 && errno == EINTR);
  close(fd);
  int nodes = n > 0 ? hm_os_parse_node_list(buf, (size_t)n) : -1;
  return nodes > 0 ? nodes : 1;
}

int hm_os_bind(void *p, size_t size, int node)
{
  if (node < 0 || node >= HM_MAX_OS_NODES)
    return EINVAL;
  if (hm_os_fault(HM_FAULT_BIND))
    return ENOMEM;
  unsigned long mask[HM_MAX_OS_NODES / (8 * sizeof(unsigned long))] = {0};
  mask[node / (8 * sizeof mask[0])] = 1ul << (node % (8 * sizeof mask[0]));
  int saved = errno;
  /* maxnode is one more than the bits in the mask: the kernel reads
   * maxnode - 1 of them (a historical off-by-one that libnuma also pays).
   * No MPOL_MF_MOVE: the pages are not touched yet, nothing to migrate. */
  long r = syscall(SYS_mbind, p, size, HM_MPOL_PREFERRED, mask,
                   (unsigned long)HM_MAX_OS_NODES + 1, 0u);
  int err = r == 0 ? 0 : errno;
  errno = saved;
  return err;
}
