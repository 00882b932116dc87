/* Death tests: a bad pointer makes hmalloc abort after exactly one line on
 * stderr naming the function, the fault and the pointer. Each case runs in
 * a fork()ed child; the child stores the pointer it is about to pass in
 * shared memory, so the parent can check the printed value. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "test_util.h"

void free_sized(void *p, size_t size); /* C23; glibc 2.36 does not declare it */

/* Written by the child before the fatal call: the pointer it passes. */
static volatile uintptr_t *passed;

static void *record(void *p)
{
  *passed = (uintptr_t)p;
  return tu_opaque_ptr(p);
}

static void free_stack_address(void *arg)
{
  (void)arg;
  char local[32];
  free(record(local));
}

static void free_interior_small(void *arg)
{
  (void)arg;
  char *p = malloc(64);
  free(record(p + 8));
}

/* An over-aligned block marks its span as holding pointers inside blocks;
 * that must not make every interior pointer of the span acceptable. */
static void free_interior_small_aligned_span(void *arg)
{
  (void)arg;
  /* A 352-byte block, the pointer aligned inside it (opaque: GCC would drop
   * an unused aligned_alloc). */
  tu_opaque_ptr(aligned_alloc(256, 100));
  char *p = malloc(340); /* same class, same span */
  free(record(p + 8));
}

static void free_interior_large_near(void *arg)
{
  (void)arg;
  char *p = malloc(1 << 20);
  free(record(p + 16));
}

/* Past the granule of the header: a page-map lookup finds no header. */
static void free_interior_large_far(void *arg)
{
  (void)arg;
  char *p = malloc(1 << 20);
  free(record(p + (512 << 10)));
}

static void double_free_small(void *arg)
{
  (void)arg;
  void *p = malloc(64);
  free(p);
  free(record(p));
}

static void *free_in_thread(void *p)
{
  free(p);
  return NULL;
}

/* The first free is a remote free: the block sits on the span's remote
 * list when the owning thread frees it again. */
static void double_free_remote_then_owner(void *arg)
{
  (void)arg;
  void *p = malloc(64);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_in_thread, p) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  free(record(p));
}

static void double_free_large(void *arg)
{
  (void)arg;
  void *p = malloc(1 << 20);
  void *keep = malloc(1 << 20); /* the run next door stays in use */
  free(p);
  free(record(p));
  free(keep);
}

static void double_free_huge(void *arg)
{
  (void)arg;
  void *p = malloc(16 << 20);
  free(p);
  free(record(p));
}

static void realloc_invalid(void *arg)
{
  (void)arg;
  char local[32];
  void *q = realloc(record(local), 100);
  (void)q;
}

static void realloc_interior(void *arg)
{
  (void)arg;
  char *p = malloc(100);
  void *q = realloc(record(p + 32), 200);
  (void)q;
}

static void usable_size_invalid(void *arg)
{
  (void)arg;
  char *p = malloc(100);
  size_t n = malloc_usable_size(record(p + 48));
  (void)n;
}

static void free_sized_too_big(void *arg)
{
  (void)arg;
  void *p = malloc(100);
  free_sized(record(p), 100000);
}

struct death_case {
  const char *name;
  void (*body)(void *);
  const char *expected; /* the line's start; the pointer follows */
  const char *also_ok;  /* another acceptable start, or NULL */
};

#define INVALID(func) "hmalloc: " func "(): invalid pointer 0x"
#define DOUBLE_FREE "hmalloc: free(): double free 0x"

static const struct death_case cases[] = {
    {"free of a stack address", free_stack_address, INVALID("free"), NULL},
    {"free of a small block + 8", free_interior_small, INVALID("free"), NULL},
    {"free of a small block + 8, in a span that served an over-aligned block",
     free_interior_small_aligned_span, INVALID("free"), NULL},
    {"free of a 1 MiB block + 16", free_interior_large_near, INVALID("free"), NULL},
    {"free of a 1 MiB block + 512 KiB", free_interior_large_far, INVALID("free"), NULL},
    {"small block freed twice", double_free_small, DOUBLE_FREE, NULL},
    {"small block freed by a thread, then by its owner", double_free_remote_then_owner,
     DOUBLE_FREE, NULL},
    {"1 MiB block freed twice", double_free_large, DOUBLE_FREE, NULL},
    /* The mapping is gone after the first free: nothing is left to tell a
     * double free from a pointer hmalloc never handed out. */
    {"16 MiB block freed twice", double_free_huge, DOUBLE_FREE, INVALID("free")},
    {"realloc of a stack address", realloc_invalid, INVALID("realloc"), NULL},
    {"realloc of a small block + 32", realloc_interior, INVALID("realloc"), NULL},
    {"malloc_usable_size of a block + 48", usable_size_invalid, INVALID("malloc_usable_size"),
     NULL},
    {"free_sized with a size larger than the block", free_sized_too_big,
     "hmalloc: free_sized(): size larger than the block 0x", NULL},
};

/* Returns NULL if the child died as expected, else what went wrong. */
static const char *judge(const struct death_case *c, const struct tu_child *r, char *why,
                         size_t cap)
{
  char status[64];
  if (!WIFSIGNALED(r->status) || WTERMSIG(r->status) != SIGABRT) {
    snprintf(why, cap, "ended with %s, expected SIGABRT",
             tu_describe_status(r->status, status, sizeof status));
    return why;
  }
  const char *newline = strchr(r->err, '\n');
  if (newline == NULL || newline[1] != '\0') {
    snprintf(why, cap, "stderr is not exactly one line");
    return why;
  }
  size_t len = strlen(c->expected);
  if (strncmp(r->err, c->expected, len) != 0) {
    if (c->also_ok == NULL || strncmp(r->err, c->also_ok, strlen(c->also_ok)) != 0) {
      snprintf(why, cap, "the line does not start with \"%s\"", c->expected);
      return why;
    }
    len = strlen(c->also_ok);
  }
  char *end;
  uintmax_t printed = strtoumax(r->err + len, &end, 16);
  if (end == r->err + len || end != newline || printed != *passed) {
    snprintf(why, cap, "the line does not end with the pointer passed, 0x%" PRIxPTR,
             (uintptr_t)*passed);
    return why;
  }
  return NULL;
}

int main(void)
{
  /* The children abort on purpose: no core files. */
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  passed = mmap(NULL, sizeof *passed, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(passed != MAP_FAILED, "mmap failed");
  setvbuf(stdout, NULL, _IOLBF, 0);
  int failures = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct death_case *c = &cases[i];
    static struct tu_child r;
    *passed = 0;
    tu_run_child(c->body, NULL, 20, &r);
    char why[256];
    if (judge(c, &r, why, sizeof why) != NULL) {
      fprintf(stderr, "FAIL %s: %s; stderr was:\n%s\n", c->name, why, r.err);
      failures++;
    } else {
      printf("ok   %s: %s", c->name, r.err);
    }
  }
  if (failures)
    fprintf(stderr, "%d of %zu death tests failed\n", failures, sizeof cases / sizeof cases[0]);
  return failures ? 1 : 0;
}
