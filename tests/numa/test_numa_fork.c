/* fork while topology discovery is under way. The fake libhwloc stops the
 * helper thread at a chosen stage (inside dlopen, in hwloc's init, in its
 * load) while the test forks; a sweep forks at increasing delays during a
 * real hwloc load. The child must never hang nor see a half-built table: it
 * keeps a published table, restarts discovery, or (forked while the helper
 * was inside the dynamic loader, and the fork gave up waiting for it) stays
 * at one node with one warning. The allocator will call the
 * hm_topology_fork_* hooks from its atfork handlers; here the test registers
 * them. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hmalloc.h"
#include "numa_test.h"
#include "topology.h"
#include "topology_test.h"

#define CHILD_TIMEOUT_S 30

static char gate[64];

static void register_fork_hooks(void)
{
  pthread_atfork(hm_topology_fork_prepare, hm_topology_fork_parent, hm_topology_fork_child);
}

static void sleep_us(long us)
{
  struct timespec ts = {us / 1000000, us % 1000000 * 1000};
  nanosleep(&ts, NULL);
}

static bool gate_has(const char *name)
{
  char path[128];
  snprintf(path, sizeof path, "%s/%s", gate, name);
  return access(path, F_OK) == 0;
}

static void gate_create(const char *name)
{
  char path[128];
  snprintf(path, sizeof path, "%s/%s", gate, name);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "create %s: %s", path, strerror(errno));
  fclose(f);
}

/* Starts discovery on the fake hwloc and waits until its helper stops at
 * the stage named in FAKE_HWLOC_BLOCK. */
static void start_and_hold_fake(void)
{
  snprintf(gate, sizeof gate, "/tmp/numa-test-gate-XXXXXX");
  CHECK(mkdtemp(gate) != NULL, "mkdtemp: %s", strerror(errno));
  setenv("FAKE_HWLOC_GATE", gate, 1);
  hm_topology_set_library(FAKE_HWLOC_PATH);
  register_fork_hooks();
  hm_topology_start();
  for (int waited = 0; !gate_has("reached"); waited++) {
    CHECK(waited < 20000, "the helper never reached the gate");
    sleep_us(1000);
  }
}

static void remove_gate(void)
{
  char path[128];
  snprintf(path, sizeof path, "%s/reached", gate);
  unlink(path);
  snprintf(path, sizeof path, "%s/open", gate);
  unlink(path);
  rmdir(gate);
}

/* Forks a child running `child`; opens the gate so the parent's helper
 * goes on; waits for the child (bounded) and checks it passed; then the
 * parent must get its table. */
static void fork_at_gate(void (*child)(void))
{
  capture_stderr_begin(); /* the child inherits it: the fork warning lands there */
  pid_t pid = fork();
  CHECK(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    child();
    _exit(0);
  }
  char unused[64];
  capture_stderr_end(unused, sizeof unused);
  gate_create("open");
  int status = wait_child(pid, CHILD_TIMEOUT_S);
  remove_gate();
  CHECK(status != -1, "the child hung: killed after %d s", CHILD_TIMEOUT_S);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)", status);
  CHECK(hm_topology_wait_ready(20000) && hm_topology_nodes() == 2, "parent: %d nodes",
        hm_topology_nodes());
}

/* Forked inside the loader: one node for good, one warning, no hang. */
static void child_stays_one_node(void)
{
  hm_topology_start();
  bool ready = hm_topology_wait_ready(2000);
  churn(4, 5000);
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(!ready && hm_topology_nodes() == 1, "child: %d nodes", hm_topology_nodes());
  CHECK(hm_topology_discoveries() == 1, "child restarted discovery");
  CHECK(count_lines(err) == 1 &&
            count_lines_with(err, "hmalloc: fork during NUMA topology discovery; this process "
                                  "runs as one node") == 1,
        "child stderr: %s", err);
}

/* Forked outside the loader: the child has the table or discovers it again
 * by itself, without a word. Returns whether it discovered again. */
static bool child_gets_the_table(void)
{
  char err[4096];
  capture_stderr_end(err, sizeof err);
  CHECK(err[0] == '\0', "child stderr: %s", err);
  hm_topology_start();
  CHECK(hm_topology_wait_ready(20000), "child: no table after 20 s");
  CHECK(hm_topology_nodes() == 2 && hm_topology_os_node(1) == 101, "child: %d nodes",
        hm_topology_nodes());
  return hm_topology_discoveries() == 2;
}

static void child_restarts(void)
{
  CHECK(child_gets_the_table(), "child: %u discoveries", hm_topology_discoveries());
}

static void child_restarts_or_keeps(void)
{
  child_gets_the_table();
}

/* The helper is stuck in the loader longer than the fork waits. */
static void fork_in_dlopen_gives_up(void)
{
  hm_topology_set_fork_wait(10);
  start_and_hold_fake();
  fork_at_gate(child_stays_one_node);
}

static void fork_in_hwloc_init_gives_up(void)
{
  hm_topology_set_fork_wait(10);
  start_and_hold_fake();
  fork_at_gate(child_stays_one_node);
}

/* Runs before hm_topology_fork_prepare (prepare handlers run in reverse
 * order of registration), letting the held helper go on. */
static void open_gate_before_prepare(void)
{
  gate_create("open");
}

/* fork waits for the helper to come out of dlopen. */
static void fork_waits_for_the_loader(void)
{
  hm_topology_set_fork_wait(20000);
  start_and_hold_fake();
  pthread_atfork(open_gate_before_prepare, NULL, NULL);
  fork_at_gate(child_restarts_or_keeps);
}

static void fork_in_hwloc_load(void)
{
  start_and_hold_fake();
  fork_at_gate(child_restarts);
}

/* A published table is the child's at once: no second discovery. */
static void fork_after_publish(void)
{
  register_fork_hooks();
  start_and_expect_nodes(2);
  const struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL); /* let the helper thread finish and exit */
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    CHECK(hm_topology_ready() && hm_topology_nodes() == 2, "child: %d nodes", hm_topology_nodes());
    hm_topology_start();
    CHECK(hm_topology_discoveries() == 1 && thread_count() == 1, "child restarted discovery");
    expect_current_node_follows_pinning();
    _exit(0);
  }
  int status = wait_child(pid, CHILD_TIMEOUT_S);
  CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x",
        status);
}

enum { KEPT = 10, RESTARTED, ONE_NODE };

/* In the grandchild: whichever way it went, the outcome is whole. */
static int sweep_child(void)
{
  char err[4096];
  capture_stderr_end(err, sizeof err); /* what the fork hooks said */
  bool had_table = hm_topology_ready();
  hm_topology_start();
  void *p = hm_malloc(1000);
  hm_free(p);
  bool ready = hm_topology_wait_ready(20000);
  CHECK(!ready || (hm_topology_nodes() == 2 && hm_topology_node_of_cpu(1) == 1),
        "grandchild: a table of %d nodes", hm_topology_nodes());
  CHECK(ready || hm_topology_nodes() == 1, "grandchild: %d nodes without a table",
        hm_topology_nodes());
  int warnings = count_lines_with(err, "fork during NUMA topology discovery");
  CHECK(count_lines(err) == warnings && warnings == (ready ? 0 : 1), "grandchild stderr: %s",
        err);
  return had_table ? KEPT : ready ? RESTARTED : ONE_NODE;
}

/* In a fresh process: start, wait `delay_us`, fork, check both sides. With
 * `prepare` the fork waits for the helper to leave the loader; without, it
 * is the child handler alone. */
static int sweep_once(long delay_us, bool prepare)
{
  hm_topology_set_fork_wait(20000);
  if (prepare)
    register_fork_hooks();
  else
    pthread_atfork(NULL, NULL, hm_topology_fork_child);
  hm_topology_start();
  sleep_us(delay_us);
  capture_stderr_begin();
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    _exit(sweep_child());
  char unused[64];
  capture_stderr_end(unused, sizeof unused);
  int status = wait_child(pid, CHILD_TIMEOUT_S);
  CHECK(status != -1, "grandchild forked after %ld us hung; killed", delay_us);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) >= KEPT, "grandchild status %#x", status);
  CHECK(hm_topology_wait_ready(20000) && hm_topology_nodes() == 2, "after the fork: %d nodes",
        hm_topology_nodes());
  return WEXITSTATUS(status);
}

/* Returns how many children stayed at one node. */
static int sweep(bool prepare)
{
  int outcomes[3] = {0};
  for (long delay = 0; delay <= 40000; delay = delay ? delay * 2 : 100) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
      _exit(sweep_once(delay, prepare));
    int status = wait_child(pid, 2 * CHILD_TIMEOUT_S);
    CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) >= KEPT,
          "fork after %ld us: status %#x", delay, status);
    outcomes[WEXITSTATUS(status) - KEPT]++;
  }
  printf("  %s: children that kept the table %d, restarted discovery %d, stayed one node %d\n",
         prepare ? "all fork hooks" : "child hook only", outcomes[0], outcomes[1], outcomes[2]);
  return outcomes[ONE_NODE - KEPT];
}

/* With every hook, no child loses NUMA; with the child hook alone, some
 * may (any outcome is whole). */
static void fork_sweep(void)
{
  CHECK(sweep(true) == 0, "a child stayed at one node although fork waited for the loader");
  sweep(false);
}

#define FAKE(stage) {"HWLOC_SYNTHETIC=node:2 pu:1", "FAKE_HWLOC_BLOCK=" stage}
static const struct scenario scenarios[] = {
    {"fork_in_dlopen_gives_up", fork_in_dlopen_gives_up, FAKE("ctor")},
    {"fork_in_hwloc_init_gives_up", fork_in_hwloc_init_gives_up, FAKE("init")},
    {"fork_waits_for_the_loader", fork_waits_for_the_loader, FAKE("ctor")},
    {"fork_in_hwloc_load", fork_in_hwloc_load, FAKE("load")},
    {"fork_after_publish", fork_after_publish, {"HWLOC_SYNTHETIC=node:2 pu:1"}},
    {"fork_sweep", fork_sweep, {"HWLOC_SYNTHETIC=node:2 pu:1"}},
};

int main(int argc, char **argv)
{
  return run_scenarios(scenarios, sizeof scenarios / sizeof scenarios[0], argc, argv, 120);
}
