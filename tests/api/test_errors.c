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

/* C23; glibc 2.36 has none: weak, so that the report build (glibc's malloc,
 * see main) links. */
void free_sized(void *p, size_t size) __attribute__((weak));

static void free_stack_address(void *arg)
{
  (void)arg;
  char local[32];
  free(tu_record(local));
}

static void free_interior_small(void *arg)
{
  (void)arg;
  char *p = malloc(64);
  free(tu_record(p + 8));
}

/* Aligned blocks are handed out at their start too (size_class.h): a
 * pointer inside one is as invalid as inside any block. */
static void free_interior_small_aligned(void *arg)
{
  (void)arg;
  char *p = aligned_alloc(256, 100);
  free(tu_record(p + 16));
}

static void free_interior_large_near(void *arg)
{
  (void)arg;
  char *p = malloc(1 << 20);
  free(tu_record(p + 16));
}

/* Past the granule of the header: a page-map lookup finds no header. */
static void free_interior_large_far(void *arg)
{
  (void)arg;
  char *p = malloc(1 << 20);
  free(tu_record(p + (512 << 10)));
}

/* A block's address with bit 63 set: the page map covers 48 bits, and the
 * granule this aliases holds the block. For 48-byte blocks, the page-map
 * path's multiply-compare alone would take it for the block (2^63 times
 * floor(2^64/48)+1 is 0 mod 2^64): it must never get that far. */
static void free_alias_beyond_48_bits(void *arg)
{
  (void)arg;
  char *p = malloc(48);
  free(tu_record(p + ((uintptr_t)1 << 63)));
}

static void double_free_small(void *arg)
{
  (void)arg;
  void *p = malloc(64);
  free(p);
  free(tu_record(p));
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
  free(tu_record(p));
}

static void double_free_large(void *arg)
{
  (void)arg;
  void *p = malloc(1 << 20);
  void *keep = malloc(1 << 20); /* the run next door stays in use */
  free(p);
  free(tu_record(p));
  free(keep);
}

static void double_free_huge(void *arg)
{
  (void)arg;
  void *p = malloc(16 << 20);
  free(p);
  free(tu_record(p));
}

static void realloc_invalid(void *arg)
{
  (void)arg;
  char local[32];
  void *q = realloc(tu_record(local), 100);
  (void)q;
}

static void realloc_interior(void *arg)
{
  (void)arg;
  char *p = malloc(100);
  void *q = realloc(tu_record(p + 32), 200);
  (void)q;
}

/* Smaller, and by less than half: realloc would keep the block where it
 * is, and hand out a block that the next malloc of its class returns too. */
static void realloc_freed_small(void *arg)
{
  (void)arg;
  void *p = malloc(64);
  free(p);
  void *q = realloc(tu_record(p), 40);
  (void)q;
}

/* The freed run waits in the thread's cache: resized in place, it would
 * be handed out twice. */
static void realloc_freed_large(void *arg)
{
  (void)arg;
  void *p = malloc(1 << 20);
  void *keep = malloc(1 << 20);
  free(p);
  void *q = realloc(tu_record(p), 512 << 10);
  (void)q;
  free(keep);
}

static void usable_size_invalid(void *arg)
{
  (void)arg;
  char *p = malloc(100);
  size_t n = malloc_usable_size(tu_record(p + 48));
  (void)n;
}

static void free_sized_too_big(void *arg)
{
  (void)arg;
  void *p = malloc(100);
  if (free_sized == NULL)
    exit(TU_UNAVAILABLE);
  free_sized(tu_record(p), 100000);
}

#define INVALID(func) "hmalloc: " func "(): invalid pointer 0x"
#define DOUBLE_FREE "hmalloc: free(): double free 0x"

static const struct tu_death_case cases[] = {
    {"free of a stack address", free_stack_address, {INVALID("free")}},
    {"free of a small block + 8", free_interior_small, {INVALID("free")}},
    {"free of an aligned_alloc(256) block + 16", free_interior_small_aligned, {INVALID("free")}},
    {"free of a 1 MiB block + 16", free_interior_large_near, {INVALID("free")}},
    {"free of a 1 MiB block + 512 KiB", free_interior_large_far, {INVALID("free")}},
    {"free of a 48-byte block's address + 2^63", free_alias_beyond_48_bits, {INVALID("free")}},
    {"small block freed twice", double_free_small, {DOUBLE_FREE}},
    {"small block freed by a thread, then by its owner",
     double_free_remote_then_owner,
     {DOUBLE_FREE}},
    {"1 MiB block freed twice", double_free_large, {DOUBLE_FREE}},
    /* The mapping is gone after the first free: nothing is left to tell a
     * double free from a pointer hmalloc never handed out. */
    {"16 MiB block freed twice", double_free_huge, {DOUBLE_FREE, INVALID("free")}},
    {"realloc of a stack address", realloc_invalid, {INVALID("realloc")}},
    {"realloc of a small block + 32", realloc_interior, {INVALID("realloc")}},
    {"realloc of a freed small block to a smaller size",
     realloc_freed_small,
     {"hmalloc: realloc(): double free 0x"}},
    {"realloc of a freed 1 MiB block", realloc_freed_large, {"hmalloc: realloc(): double free 0x"}},
    {"malloc_usable_size of a block + 48", usable_size_invalid, {INVALID("malloc_usable_size")}},
    {"free_sized with a size larger than the block",
     free_sized_too_big,
     {"hmalloc: free_sized(): size larger than the block 0x"}},
};

/* With --report: a table row per case of what the malloc linked did, for
 * README's table (built also against glibc's malloc: misuse_glibc). */
int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "--report") == 0) {
    tu_report_death_cases(cases, sizeof cases / sizeof cases[0]);
    return 0;
  }
  return tu_run_death_cases(cases, sizeof cases / sizeof cases[0]) ? 1 : 0;
}
