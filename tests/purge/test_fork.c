/* fork while the background thread runs (and another thread keeps it busy
 * with bursts to purge): the child, where only the forking thread exists,
 * allocates and frees a burst, starts a background thread of its own on its
 * first slow path, which purges the burst, trims, and exits 0. Every child
 * is waited for with a bound and killed by PID past it. */
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "purge_common.h"

#define FORKS 8
#define CHILD_BURST (32 * MiB)
#define CHILD_TIMEOUT_MS 30000

static _Atomic bool stop_churn;

/* Bursts allocated and freed, a big one now and then whose memory then
 * idles, so the parent's background thread has spans to give back and
 * granules to purge when a fork comes. */
static void *churn(void *arg)
{
  (void)arg;
  for (uint64_t round = 0; !atomic_load(&stop_churn); round++) {
    struct block_set s = {0};
    blocks_alloc(&s, round % 4 == 0 ? 48 * MiB : 8 * MiB, round);
    blocks_free_range(&s, 0, s.count, "a churn block");
    blocks_release_array(&s);
    sleep_ms(2);
  }
  return NULL;
}

static _Noreturn void child(void)
{
  set_test_name("purge_fork (child)");
  CHECK(thread_count() == 1, "the child has %u threads right after fork", thread_count());
  size_t before = rss_bytes();
  struct block_set s = {0};
  blocks_alloc(&s, CHILD_BURST, 1234);
  size_t peak = rss_bytes();
  blocks_free_range(&s, 0, s.count, "a block of the child's burst");
  blocks_release_array(&s);
  slow_path(); /* starts the child's background thread */
  CHECK(thread_count() == 2, "the child's background thread did not start (%u threads)",
        thread_count());
  /* The background thread purges: no slow path needed. */
  size_t after = wait_for_rss(before + CHILD_BURST / 4, 5);
  CHECK(after <= before + CHILD_BURST / 4,
        "the child's background thread did not purge its burst: RSS %.1f MiB before, %.1f "
        "at the peak, %.1f after the delay",
        mib(before), mib(peak), mib(after));
  t_trim();
  _exit(0);
}

/* Waits for the child at most CHILD_TIMEOUT_MS; kills it past that. */
static void wait_child(pid_t pid, int k)
{
  int status = 0;
  for (int waited = 0;; waited += 10) {
    pid_t got = waitpid(pid, &status, WNOHANG);
    CHECK(got >= 0, "waitpid failed");
    if (got == pid)
      break;
    if (waited >= CHILD_TIMEOUT_MS) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail("child %d (fork %d) still running after %d ms: killed", (int)pid, k,
           CHILD_TIMEOUT_MS);
    }
    sleep_ms(10);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "child of fork %d: %s %d", k, WIFEXITED(status) ? "exit status" : "killed by signal",
        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

int main(void)
{
  CHECK(background_thread(), "the test needs HMALLOC_BACKGROUND_THREAD=1");
  unsigned threads = thread_count();
  slow_path();
  CHECK(thread_count() == threads + 1, "the background thread did not start");
  pthread_t churner;
  CHECK(pthread_create(&churner, NULL, churn, NULL) == 0, "pthread_create failed");
  for (int k = 0; k < FORKS; k++) {
    sleep_ms(20 + 15 * k); /* forks land at different points of the passes */
    pid_t pid = fork();
    CHECK(pid >= 0, "fork failed");
    if (pid == 0)
      child();
    wait_child(pid, k);
  }
  atomic_store(&stop_churn, true);
  CHECK(pthread_join(churner, NULL) == 0, "pthread_join failed");
  struct hm_stats st;
  hm_stats_get(&st);
  note("%d forks with the background thread purging: every child purged and exited 0 "
       "(parent purged %.1f MiB in %zu calls)",
       FORKS, mib(st.purged), st.purges);
  return 0;
}
