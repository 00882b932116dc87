/* Uses the installed header and library: the hm_ API, and malloc, which
 * linking libhmalloc.so makes hmalloc's (hm_usable_size would abort on a
 * block from another allocator). */
#include <hmalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
  char *a = hm_malloc(100);
  char *b = malloc(200);
  if (a == NULL || b == NULL) {
    fprintf(stderr, "consumer: allocation failed\n");
    return 1;
  }
  memset(a, 'a', 100);
  memset(b, 'b', 200);
  if (hm_usable_size(a) < 100 || hm_usable_size(b) < 200 || a[99] != 'a' || b[199] != 'b') {
    fprintf(stderr, "consumer: blocks are not hmalloc's\n");
    return 1;
  }
  hm_free(a);
  free(b);
  printf("consumer: ok (hmalloc %d.%d)\n", HMALLOC_VERSION_MAJOR, HMALLOC_VERSION_MINOR);
  return 0;
}
