/* Putting the calling thread on a node of the topology (shared by
 * test_numa_arenas and the 4-node stress shim): pinned to a real CPU of the
 * node, or through the fake-CPU hook, which puts threads on nodes that have
 * no real CPU on this machine. Needs the internals (hmalloc_api). */
#ifndef NODE_TEST_H
#define NODE_TEST_H

enum placement { BY_PINNING, BY_FAKE_CPU };

/* A CPU of logical node `node`: one this process may run on when pinning,
 * any the topology puts there when faking. Fails if there is none. */
int cpu_on_node(enum placement how, int node);
/* Pins the calling thread to (or fakes) a CPU of `node`, then checks that
 * hm_topology_current_node() says `node`. */
void move_to_node(enum placement how, int node);

#endif
