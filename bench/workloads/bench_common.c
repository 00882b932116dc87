#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *program_name = "workload";

static __attribute__((noreturn)) void usage(void)
{
  fprintf(stderr, "usage: %s [-t THREADS] [-n ITERATIONS] [-s SEED] [-m MODE]\n", program_name);
  exit(2);
}

static uint64_t parse_count(const char *text, uint64_t min)
{
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 0);
  if (errno != 0 || end == text || *end != '\0' || value < min)
    usage();
  return value;
}

void bench_parse_args(int argc, char **argv, struct bench_args *args)
{
  const char *slash = strrchr(argv[0], '/');
  program_name = slash ? slash + 1 : argv[0];
  int option;
  while ((option = getopt(argc, argv, "t:n:s:m:")) != -1) {
    switch (option) {
    case 't': args->threads = (unsigned)parse_count(optarg, 1); break;
    case 'n': args->iterations = parse_count(optarg, 1); break;
    case 's': args->seed = parse_count(optarg, 0); break;
    case 'm': args->mode = optarg; break;
    default: usage();
    }
  }
  if (optind != argc || args->threads > 4096)
    usage();
}

uint64_t bench_mix(uint64_t x)
{
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* The pattern is tag repeated word by word, then the first bytes of tag for
 * the tail: unique to a block (tags are), and cheap to write and check. */
void bench_fill(void *block, size_t size, uint64_t tag)
{
  unsigned char *bytes = block;
  size_t words = size / sizeof tag;
  for (size_t i = 0; i < words; i++)
    memcpy(bytes + i * sizeof tag, &tag, sizeof tag);
  memcpy(bytes + words * sizeof tag, &tag, size % sizeof tag);
}

bool bench_intact(const void *block, size_t size, uint64_t tag)
{
  const unsigned char *bytes = block;
  size_t words = size / sizeof tag;
  uint64_t differ = 0;
  for (size_t i = 0; i < words; i++) {
    uint64_t word;
    memcpy(&word, bytes + i * sizeof tag, sizeof word);
    differ |= word ^ tag;
  }
  /* The tail byte by byte: a memcmp call costs more than the few bytes. */
  const unsigned char *tag_bytes = (const unsigned char *)&tag;
  for (size_t i = 0; i < size % sizeof tag; i++)
    differ |= bytes[words * sizeof tag + i] ^ tag_bytes[i];
  return differ == 0;
}

enum { PAGE = 4096 };

/* The word of page i: the tag mixed with the page's index, so a page that
 * moved (a realloc or a mapping gone wrong) does not pass. */
static uint64_t page_word(uint64_t tag, size_t page)
{
  return tag ^ (page * 0x9e3779b97f4a7c15ull);
}

void bench_fill_pages(void *block, size_t size, uint64_t tag)
{
  unsigned char *bytes = block;
  for (size_t offset = 0, page = 0; offset + sizeof tag <= size; offset += PAGE, page++) {
    uint64_t word = page_word(tag, page);
    memcpy(bytes + offset, &word, sizeof word);
  }
  memcpy(bytes + size - sizeof tag, &tag, sizeof tag);
}

bool bench_intact_pages(const void *block, size_t size, uint64_t tag)
{
  const unsigned char *bytes = block;
  uint64_t word, differ = 0;
  for (size_t offset = 0, page = 0; offset + sizeof tag <= size; offset += PAGE, page++) {
    memcpy(&word, bytes + offset, sizeof word);
    /* A page word the last word overlaps was overwritten by it. */
    if (offset + 2 * sizeof tag <= size)
      differ |= word ^ page_word(tag, page);
  }
  memcpy(&word, bytes + size - sizeof tag, sizeof word);
  return differ == 0 && word == tag;
}

void bench_fail(const char *format, ...)
{
  va_list ap;
  va_start(ap, format);
  fprintf(stderr, "%s: FAILED: ", program_name);
  vfprintf(stderr, format, ap);
  fputc('\n', stderr);
  va_end(ap);
  /* Other threads may still be allocating from a heap that is corrupt:
   * leave without running exit handlers. */
  _exit(1);
}

void *bench_malloc(size_t size)
{
  void *block = malloc(size);
  if (!block)
    bench_fail("malloc(%zu) returned NULL", size);
  return block;
}

void bench_run_parallel(unsigned count, void *(*body)(void *), void *items, size_t item_size)
{
  if (count == 1) {
    body(items);
    return;
  }
  pthread_t *threads = bench_malloc(count * sizeof *threads);
  for (unsigned i = 0; i < count; i++) {
    int error = pthread_create(&threads[i], NULL, body, (char *)items + i * item_size);
    if (error)
      bench_fail("pthread_create: %s", strerror(error));
  }
  for (unsigned i = 0; i < count; i++)
    pthread_join(threads[i], NULL);
  free(threads);
}

double bench_now(void)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

struct object_header {
  uint64_t tag;
  size_t size; /* of the whole object, header included */
};

void *bench_object_new(size_t size, uint64_t tag)
{
  size = size < sizeof(struct object_header) ? sizeof(struct object_header) : size;
  struct object_header *object = bench_malloc(size);
  *object = (struct object_header){.tag = tag, .size = size};
  bench_fill(object + 1, size - sizeof *object, tag);
  return object;
}

void bench_object_free(void *block, const char *holder)
{
  struct object_header *object = block;
  if (!bench_intact(object + 1, object->size - sizeof *object, object->tag))
    bench_fail("%s: object %p (%zu bytes) changed while held", holder, block, object->size);
  free(object);
}

/* Without stdio: no allocation, so a sampling thread does not disturb the
 * heap it measures. */
long bench_rss_kb(void)
{
  char text[128];
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0)
    return -1;
  ssize_t length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0)
    return -1;
  text[length] = '\0';
  char *end;
  strtol(text, &end, 10); /* the size; the resident set follows */
  long resident = strtol(end, NULL, 10);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

size_t bench_log_uniform(uint64_t random, size_t lo, size_t hi)
{
  /* 53 random bits as a fraction in [0, 1). */
  double fraction = (double)(random >> 11) * 0x1p-53;
  size_t size = (size_t)((double)lo * exp(fraction * log((double)hi / (double)lo)));
  return size < lo ? lo : size > hi ? hi : size;
}

void bench_report(const char *name, const struct bench_args *args, double seconds)
{
  bench_report_extra(name, args, seconds, NULL);
}

void bench_report_extra(const char *name, const struct bench_args *args, double seconds,
                        const char *extra)
{
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  double cpu = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
               (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
  printf("workload=%s threads=%u iterations=%" PRIu64 " time_s=%.3f rss_kb=%ld cpu_s=%.3f%s%s\n",
         name, args->threads, args->iterations, seconds, usage.ru_maxrss, cpu, extra ? " " : "",
         extra ? extra : "");
  fflush(stdout);
}

void bench_report_ops(const char *name, const struct bench_args *args, double seconds,
                      uint64_t ops, const char *extra)
{
  char text[512];
  snprintf(text, sizeof text, "ops=%" PRIu64 " ns_per_op=%.2f%s%s", ops,
           ops ? seconds * 1e9 / (double)ops : 0.0, extra ? " " : "", extra ? extra : "");
  bench_report_extra(name, args, seconds, text);
}
