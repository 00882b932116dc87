/* The tagged lock-free stack: LIFO order, and under contention no node is
 * lost or duplicated. */
#include "stack.h"
#include "unit.h"

#define NODES 48
#define THREADS 16
#define ROUNDS_PER_THREAD UNIT_SCALE(400000)

/* A node is 4 KiB aligned, as the stack requires. `holder` is 1 + the index
 * of the thread that popped it, 0 while it is on the stack. */
typedef struct node {
  hm_link link;
  _Atomic unsigned holder;
  unsigned id;
} __attribute__((aligned(4096))) node;

static node *nodes;
static hm_stack stack;

static void nodes_reserve(void)
{
  size_t bytes = hm_align_up(NODES * sizeof(node), HM_GRANULE);
  nodes = hm_os_reserve(bytes, HM_GRANULE, true);
  CHECK(nodes != NULL, "hm_os_reserve(%zu) failed", bytes);
  for (unsigned i = 0; i < NODES; i++)
    nodes[i].id = i;
}

static void check_lifo(void)
{
  CHECK(hm_stack_pop(&stack) == NULL, "pop of an empty stack returned a node");
  for (unsigned i = 0; i < NODES; i++)
    hm_stack_push(&stack, &nodes[i].link);
  for (unsigned i = NODES; i-- > 0;) {
    hm_link *l = hm_stack_pop(&stack);
    CHECK(l == &nodes[i].link, "pop returned %p, expected node %u at %p", (void *)l, i,
          (void *)&nodes[i]);
  }
  CHECK(hm_stack_pop(&stack) == NULL, "stack not empty after popping every node");
  /* Interleaved: push 0, 1; pop 1; push 2; pop 2, 0. */
  hm_stack_push(&stack, &nodes[0].link);
  hm_stack_push(&stack, &nodes[1].link);
  CHECK(hm_stack_pop(&stack) == &nodes[1].link, "interleaved: expected node 1");
  hm_stack_push(&stack, &nodes[2].link);
  CHECK(hm_stack_pop(&stack) == &nodes[2].link, "interleaved: expected node 2");
  CHECK(hm_stack_pop(&stack) == &nodes[0].link, "interleaved: expected node 0");
  CHECK(hm_stack_pop(&stack) == NULL, "interleaved: stack not empty");
  UNIT_PASS("single-threaded LIFO order");
}

/* Pops a node and marks it held by `self`; a node held already was handed
 * out twice. */
static node *take(unsigned self)
{
  node *n = (node *)hm_stack_pop(&stack);
  /* Each thread holds at most 2 nodes, so at least NODES - 2 * THREADS are
   * on the stack at any time. */
  CHECK(n != NULL, "pop returned NULL with nodes on the stack (a node was lost)");
  unsigned was = atomic_exchange(&n->holder, self + 1);
  CHECK(was == 0, "node %u popped by thread %u while thread %u holds it", n->id, self, was - 1);
  return n;
}

static void give_back(node *n, unsigned self)
{
  unsigned was = atomic_exchange(&n->holder, 0);
  CHECK(was == self + 1, "node %u held by thread %u changed hands (now %u)", n->id, self,
        was - 1);
  hm_stack_push(&stack, &n->link);
}

/* Alternates between one node and two. With two, the first is pushed back
 * while the second is still held: a pop that read the first node's old
 * `next` (the second) and then succeeded would hand out a held node, the
 * ABA failure the tag prevents. */
static void *churn(void *arg)
{
  unsigned self = *(unsigned *)arg;
  for (unsigned r = 0; r < ROUNDS_PER_THREAD; r++) {
    node *a = take(self);
    if (r & 1) {
      node *b = take(self);
      give_back(a, self);
      give_back(b, self);
    } else {
      give_back(a, self);
    }
  }
  return NULL;
}

/* Walks the stack: every node exactly once, and nothing else. */
static void check_all_on_stack_once(void)
{
  unsigned seen[NODES] = {0};
  unsigned count = 0;
  for (hm_link *l = hm_stack_node(atomic_load(&stack.head)); l != NULL;
       l = atomic_load(&l->next)) {
    node *n = (node *)l;
    CHECK(n >= nodes && n < nodes + NODES, "stack holds a foreign pointer %p", (void *)l);
    CHECK(seen[n->id] == 0, "node %u is on the stack twice", n->id);
    CHECK(atomic_load(&n->holder) == 0, "node %u on the stack but held", n->id);
    seen[n->id] = 1;
    count++;
  }
  CHECK(count == NODES, "%u nodes on the stack, expected %u", count, NODES);
}

static void check_concurrent(void)
{
  for (unsigned i = 0; i < NODES; i++)
    hm_stack_push(&stack, &nodes[i].link);
  unsigned ids[THREADS];
  for (unsigned i = 0; i < THREADS; i++)
    ids[i] = i;
  run_threads(THREADS, churn, ids, sizeof ids[0]);
  check_all_on_stack_once();
  printf("ok: %u threads x %u rounds of pop/push on %u nodes: none lost or duplicated\n",
         THREADS, ROUNDS_PER_THREAD, NODES);
}

int main(void)
{
  nodes_reserve();
  check_lifo();
  check_concurrent();
  return 0;
}
