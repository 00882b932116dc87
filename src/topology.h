/* The NUMA topology: how many nodes, which CPU belongs to which, and the
 * OS number of each node for binding.
 *
 * hwloc knows the topology, but calling it costs what an allocation call
 * cannot pay (it dlopens plugins, migrates the calling thread, allocates
 * hundreds of times, takes milliseconds) and a one-node machine should not
 * pay it at all. So hwloc is not linked: hm_topology_start() decides whether
 * it is needed and, if so, a helper thread dlopens libhwloc.so.15, builds a
 * compact CPU -> node table and publishes it with one atomic store. Until
 * then, and for good on a one-node machine, everything is node 0 of 1.
 *
 * Nodes here are hwloc's logical indexes, 0 .. hm_topology_nodes() - 1,
 * folded below HM_TOPOLOGY_MAX_NODES; CPUs are the OS's numbers, as
 * sched_getcpu reports them. The query side is lock-free and never makes a
 * system call.
 *
 * hwloc is asked when HMALLOC_NUMA is not 0 and either the kernel reports
 * more than one online node or one of HWLOC_SYNTHETIC, HWLOC_XMLFILE,
 * HWLOC_FSROOT is set (how tests and users fake a topology). */
#ifndef HM_TOPOLOGY_H
#define HM_TOPOLOGY_H

#include "internal.h"

#include "../arch/numa.h"

/* Arenas the allocator may keep; nodes beyond are folded onto node % max. */
#define HM_TOPOLOGY_MAX_NODES 64

typedef struct hm_topology_table {
  uint32_t nodes;       /* logical nodes, 1 .. HM_TOPOLOGY_MAX_NODES */
  uint32_t cpus;        /* entries of node_of_cpu: the highest OS CPU + 1 */
  bool thissystem;      /* hwloc describes this machine: binding makes sense */
  int32_t os_node[HM_TOPOLOGY_MAX_NODES]; /* logical node -> OS node */
  uint16_t node_of_cpu[];                 /* OS CPU -> logical node */
} hm_topology_table;

/* What the query side reads: the table (NULL until published) and whether
 * any thread has faked its CPU (the test hook), in one cache line. */
struct hm_topology_shared {
  _Atomic(const hm_topology_table *) table;
  _Atomic int fake_cpu_used;
};
extern HM_HIDDEN struct hm_topology_shared hm_topology_shared;

/* Called by the allocator once per process from a slow path after start-up,
 * outside any allocator-internal critical state (and again after
 * hm_topology_fork_child()). Cheap when already called: one load. It may
 * start a thread, and pthread_create allocates (the new thread's TLS
 * vector): the caller must accept a nested malloc. */
void hm_topology_start(void);
/* For the allocator's atfork handlers: prepare first, before any lock of
 * its own; parent and child after. None allocates. glibc resets its loader
 * lock in a fork child without holding it in the parent, so a child forked
 * while the helper thread was inside dlopen (of hwloc or of its plugins)
 * may find the loader half-updated and must not dlopen again. So prepare
 * holds a helper that has not entered the loader yet, and waits for one
 * inside it to come out, at most 250 ms (the helper may be stuck on the
 * loader lock of a thread that forks from a library constructor). The child
 * keeps a published table; if discovery was under way, the next
 * hm_topology_start() restarts it; if the helper was still in the loader
 * (prepare gave up, or was not called), the child stays at one node, with
 * one warning. */
void hm_topology_fork_prepare(void);
void hm_topology_fork_parent(void);
void hm_topology_fork_child(void);

/* A table has been published (hwloc ran). */
bool hm_topology_ready(void);
/* Logical nodes: 1 until a table is published. */
int hm_topology_nodes(void);
/* Logical node of OS CPU `cpu`; 0 for a CPU the table does not know. */
int hm_topology_node_of_cpu(int cpu);
/* OS node of logical node `node`, for binding; -1 without a table or for a
 * node out of range. */
int hm_topology_os_node(int node);

/* Binds [p, p + size) to logical node `node` (hm_os_bind: MPOL_PREFERRED on
 * its OS node). Does nothing and returns 0 when there is nothing to bind
 * to: no table, or a topology hwloc says is not this machine's (synthetic
 * or XML input without HWLOC_THISSYSTEM=1). A failure returns its errno
 * value and leaves the memory usable and unbound; the first one in the
 * process prints one warning line. */
int hm_topology_bind(void *p, size_t size, int node);

/* hm_topology_current_node() when the CPU is faked (test hook) or rseq
 * does not give it: the same answer, out of line. */
int hm_topology_current_node_slow(void);

static inline int hm_topology_node_in(const hm_topology_table *t, int cpu)
{
  return (unsigned)cpu < t->cpus ? t->node_of_cpu[cpu] : 0;
}

/* The node the calling thread runs on: 0 without a table (one load and a
 * branch); with one, two more loads for the CPU from rseq and one for the
 * table entry. The rare ways go out of line as tail calls, so that the
 * fast ones need no stack frame. */
static inline int hm_topology_current_node(void)
{
  const hm_topology_table *t =
      atomic_load_explicit(&hm_topology_shared.table, memory_order_acquire);
  if (hm_likely(t == NULL))
    return 0;
  if (hm_unlikely(atomic_load_explicit(&hm_topology_shared.fake_cpu_used, memory_order_relaxed)))
    return hm_topology_current_node_slow();
#ifdef RSEQ_SIG
  int cpu = hm_os_rseq_cpu_id();
  if (hm_likely(cpu >= 0))
    return hm_topology_node_in(t, cpu);
#endif
  return hm_topology_current_node_slow();
}

/* Test hooks, not used by the allocator. */

/* Makes the calling thread's CPU, as the topology sees it, `cpu`; -1 goes
 * back to the real one. Lets tests put threads on the nodes of a synthetic
 * topology that has more CPUs than the machine. */
void hm_topology_set_fake_cpu(int cpu);
/* Waits until a table is published (true) or discovery ended without one,
 * was never started, or `timeout_ms` passed (false). Sleeps; not for the
 * allocator. */
bool hm_topology_wait_ready(int timeout_ms);
/* How many times this process has started discovery (a helper thread). */
unsigned hm_topology_discoveries(void);
/* Loads `soname` instead of libhwloc.so.15 (a missing one, or the tests'
 * fake hwloc).
 * Before hm_topology_start(); the string must outlive discovery. */
void hm_topology_set_library(const char *soname);
/* How long hm_topology_fork_prepare waits for the helper to leave the
 * loader (250 ms unless changed), so tests do not depend on timing. */
void hm_topology_set_fork_wait(int ms);

#endif
