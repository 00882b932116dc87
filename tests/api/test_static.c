/* Linked with libhmalloc.a: the plain names and the memory libc allocates
 * for the program (strdup, asprintf, getline) are hmalloc's. Proof:
 * hm_usable_size accepts the blocks (it aborts on a foreign pointer) and
 * hmalloc counts the mallocs. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmalloc.h"
#include "test_util.h"

static size_t mallocs(void)
{
  struct hm_stats st;
  hm_stats_get(&st);
  return st.mallocs;
}

/* The block is hmalloc's and holds what it should. */
static void check_hmallocs(const void *p, size_t size, const char *what)
{
  CHECK(p != NULL, "%s returned NULL", what);
  CHECK(hm_usable_size(p) >= size, "%s: hm_usable_size %zu < %zu", what, hm_usable_size(p),
        size);
}

static void check_plain_names(void)
{
  size_t before = mallocs();
  enum { N = 50 };
  void *p[N];
  for (size_t i = 0; i < N; i++) {
    p[i] = malloc(100 + i);
    check_hmallocs(p[i], 100 + i, "malloc");
    tu_fill(p[i], 100 + i, (uint8_t)i);
  }
  CHECK(mallocs() >= before + N, "hmalloc counted %zu mallocs for %d", mallocs() - before, N);
  for (size_t i = 0; i < N; i++) {
    CHECK(tu_holds(p[i], 100 + i, (uint8_t)i), "block %zu was overwritten", i);
    free(p[i]);
  }

  char *z = calloc(100, 30);
  check_hmallocs(z, 3000, "calloc");
  CHECK(all_zero(z, 3000), "calloc block is not zeroed");
  tu_fill(z, 3000, 1);
  z = realloc(z, 500000);
  check_hmallocs(z, 500000, "realloc");
  CHECK(tu_holds(z, 3000, 1), "realloc lost the data");
  free(z);

  void *a = NULL;
  CHECK(posix_memalign(&a, 4096, 1000) == 0, "posix_memalign failed");
  check_hmallocs(a, 1000, "posix_memalign");
  CHECK(tu_aligned(a, 4096), "posix_memalign(4096) gave %p", a);
  free(a);
}

/* libc calls malloc through its PLT: with libhmalloc.a linked, that is
 * hmalloc's malloc, and the program frees the result with hmalloc's free. */
static void check_libc_allocations(void)
{
  size_t before = mallocs();
  char *s = strdup("hmalloc, linked statically");
  check_hmallocs(s, strlen(s) + 1, "strdup");
  CHECK(mallocs() > before, "strdup's malloc was not hmalloc's");
  CHECK(strcmp(s, "hmalloc, linked statically") == 0, "strdup copied wrongly");
  free(s);

  char *f = NULL;
  CHECK(asprintf(&f, "%d-%s", 42, "hmalloc") > 0, "asprintf failed");
  check_hmallocs(f, 11, "asprintf");
  CHECK(strcmp(f, "42-hmalloc") == 0, "asprintf wrote %s", f);
  free(f);

  char text[] = "first line\nsecond line\n";
  FILE *in = fmemopen(text, strlen(text), "r");
  CHECK(in != NULL, "fmemopen failed");
  char *line = NULL;
  size_t cap = 0;
  CHECK(getline(&line, &cap, in) == 11, "getline failed");
  check_hmallocs(line, cap, "getline");
  CHECK(strcmp(line, "first line\n") == 0, "getline read %s", line);
  free(line);
  fclose(in);
}

int main(void)
{
  check_plain_names();
  check_libc_allocations();
  printf("static linking: ok\n");
  return 0;
}
