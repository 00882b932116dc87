/* The OS layer: reservations, commit/decommit, release, page size,
 * environment and random numbers. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "unit.h"

/* Whether [p, p + size) is mapped: msync fails with ENOMEM where it is not. */
static bool is_mapped(void *p, size_t size)
{
  if (msync(p, size, MS_ASYNC) == 0)
    return true;
  CHECK(errno == ENOMEM, "msync(%p, %zu) failed with errno %d", p, size, errno);
  return false;
}

/* Writes one byte in every page, then reads them back. */
static void check_writable(uint8_t *p, size_t size)
{
  size_t page = hm_os_page_size();
  for (size_t off = 0; off < size; off += page)
    p[off] = (uint8_t)(off / page + 1);
  p[size - 1] = 0x77;
  for (size_t off = 0; off + 1 < size; off += page)
    CHECK(p[off] == (uint8_t)(off / page + 1), "byte %zu of %p did not keep its value", off,
          (void *)p);
  CHECK(p[size - 1] == 0x77, "last byte of %p did not keep its value", (void *)p);
}

static void check_reserve_aligned(void)
{
  for (size_t align = HM_GRANULE; align <= ((size_t)64 << 20); align *= 2) {
    size_t sizes[] = {HM_GRANULE, 3 * HM_GRANULE, align};
    for (size_t i = 0; i < 3; i++) {
      size_t size = sizes[i];
      uint8_t *p = hm_os_reserve(size, align, true);
      CHECK(p != NULL, "hm_os_reserve(%zu, %zu) failed", size, align);
      CHECK(((uintptr_t)p & (align - 1)) == 0, "hm_os_reserve(%zu, %zu) = %p, misaligned",
            size, align, (void *)p);
      CHECK(hm_os_commit(p, size), "hm_os_commit(%p, %zu) failed", (void *)p, size);
      check_writable(p, size);
      hm_os_release(p, size);
      CHECK(!is_mapped(p, size), "%p still mapped after hm_os_release", (void *)p);
    }
  }
  UNIT_PASS("hm_os_reserve: aligned (64 KiB .. 64 MiB), writable; hm_os_release unmaps");
}

/* Total bytes mapped by the process (VmSize in /proc/self/status). */
static size_t mapped_bytes(void)
{
  FILE *f = fopen("/proc/self/status", "r");
  CHECK(f != NULL, "cannot open /proc/self/status");
  char line[256];
  size_t kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
      break;
  fclose(f);
  CHECK(kib != 0, "no VmSize in /proc/self/status");
  return kib * 1024;
}

/* Aligning over-maps and trims: nothing of the trimmed parts may stay. */
static void check_no_leak_when_aligning(void)
{
  enum { ROUNDS = 200 };
  const size_t size = (size_t)64 << 20;
  size_t before = mapped_bytes();
  for (int i = 0; i < ROUNDS; i++) {
    void *p = hm_os_reserve(size, size, false);
    CHECK(p != NULL, "hm_os_reserve(64 MiB, 64 MiB) failed in round %d", i);
    hm_os_release(p, size);
  }
  size_t after = mapped_bytes();
  CHECK(after < before + size, "%d aligned reserve/release rounds left %zu bytes mapped",
        ROUNDS, after - before);
  UNIT_PASS("aligned reservations leave nothing mapped once released");
}

static void check_reserve_refused(void)
{
  CHECK(hm_os_reserve(0, HM_GRANULE, true) == NULL, "a reservation of 0 bytes succeeded");
  CHECK(hm_os_reserve(SIZE_MAX - HM_GRANULE + 1, HM_GRANULE, false) == NULL,
        "a reservation whose size + align overflows succeeded");
  CHECK(hm_os_reserve((size_t)1 << 62, HM_GRANULE, false) == NULL,
        "a reservation of 2^62 bytes succeeded");
  UNIT_PASS("impossible reservations return NULL");
}

/* Mappings the OS places past the address limit are given back and the
 * reserve fails: here with the limit lowered to 4 GiB, below where Linux
 * places mappings (the real limit, 2^48, is reached only on kernels with
 * larger address spaces when asked). */
static void check_address_limit(void)
{
  const size_t size = (size_t)4 << 20;
  uint8_t *kept = hm_os_reserve(size, HM_GRANULE, true);
  CHECK(kept != NULL && (uintptr_t)kept + size <= (uintptr_t)1 << HM_OS_ADDRESS_BITS,
        "hm_os_reserve = %p, past 2^%d", (void *)kept, HM_OS_ADDRESS_BITS);
  CHECK((uintptr_t)kept > (uintptr_t)4 << 30, "mapping at %p, below the test's limit",
        (void *)kept);
  size_t before = mapped_bytes();
  hm_os_set_address_limit((uintptr_t)4 << 30);
  for (size_t align = HM_GRANULE; align <= size; align *= 4) {
    errno = 0;
    CHECK(hm_os_reserve(size, align, true) == NULL && errno == ENOMEM,
          "hm_os_reserve(%zu, %zu) past the limit: not NULL/ENOMEM (errno %d)", size, align,
          errno);
  }
  CHECK(!hm_os_resize(kept, size, 2 * size), "hm_os_resize grew a mapping past the limit");
  size_t after = mapped_bytes();
  hm_os_set_address_limit(0);
  CHECK(after <= before, "refused reservations left %zu bytes mapped", after - before);
  uint8_t *p = hm_os_reserve(size, HM_GRANULE, true);
  CHECK(p != NULL, "hm_os_reserve failed once the limit was back");
  hm_os_release(p, size);
  hm_os_release(kept, size);
  UNIT_PASS("reservations past the address limit fail with ENOMEM, leaving nothing mapped");
}

static void check_decommit_zeroes(void)
{
  size_t size = 4 * HM_GRANULE;
  uint8_t *p = hm_os_reserve(size, HM_GRANULE, true);
  CHECK(p != NULL, "hm_os_reserve failed");
  memset(p, 0xab, size);
  /* Decommit the middle two granules only: the rest keeps its contents. */
  hm_os_decommit(p + HM_GRANULE, 2 * HM_GRANULE);
  CHECK(hm_os_commit(p + HM_GRANULE, 2 * HM_GRANULE), "hm_os_commit after decommit failed");
  for (size_t i = 0; i < size; i++) {
    bool middle = i >= HM_GRANULE && i < 3 * HM_GRANULE;
    CHECK(p[i] == (middle ? 0 : 0xab), "byte %zu is %#x after decommit/commit of the middle", i,
          p[i]);
  }
  check_writable(p + HM_GRANULE, 2 * HM_GRANULE);
  hm_os_release(p, size);
  UNIT_PASS("decommit then commit gives zeroed, writable pages; neighbours kept");
}

static void check_page_size(void)
{
  size_t page = hm_os_page_size();
  CHECK(page >= 4096 && (page & (page - 1)) == 0, "page size %zu", page);
  CHECK(page == (size_t)sysconf(_SC_PAGESIZE), "page size %zu, sysconf says %ld", page,
        sysconf(_SC_PAGESIZE));
  CHECK(HM_GRANULE % page == 0, "the granule is not a multiple of the page size %zu", page);
  UNIT_PASS("page size is a power of two");
}

static void check_getenv(void)
{
  CHECK(setenv("HM_UNIT_VAR", "value-42", 1) == 0, "setenv failed");
  CHECK(setenv("HM_UNIT_VAR_LONGER", "other", 1) == 0, "setenv failed");
  CHECK(setenv("HM_UNIT_EMPTY", "", 1) == 0, "setenv failed");
  const char *v = hm_os_getenv("HM_UNIT_VAR");
  CHECK(v != NULL && strcmp(v, "value-42") == 0, "hm_os_getenv(HM_UNIT_VAR) = %s",
        v ? v : "NULL");
  v = hm_os_getenv("HM_UNIT_VAR_LONGER");
  CHECK(v != NULL && strcmp(v, "other") == 0, "hm_os_getenv(HM_UNIT_VAR_LONGER) = %s",
        v ? v : "NULL");
  v = hm_os_getenv("HM_UNIT_EMPTY");
  CHECK(v != NULL && *v == '\0', "hm_os_getenv(HM_UNIT_EMPTY) = %s", v ? v : "NULL");
  /* A prefix of a name is not the name. */
  CHECK(hm_os_getenv("HM_UNIT_VA") == NULL, "hm_os_getenv matched a prefix");
  CHECK(hm_os_getenv("HM_UNIT_MISSING") == NULL, "hm_os_getenv found a missing variable");
  unsetenv("HM_UNIT_VAR");
  CHECK(hm_os_getenv("HM_UNIT_VAR") == NULL, "hm_os_getenv found an unset variable");
  UNIT_PASS("hm_os_getenv finds set variables, NULL for missing ones");
}

static void check_random(void)
{
  uint64_t prev = hm_os_random();
  CHECK(prev != 0, "hm_os_random returned 0");
  for (int i = 0; i < 1000; i++) {
    uint64_t r = hm_os_random();
    CHECK(r != 0, "hm_os_random returned 0 (call %d)", i);
    CHECK(r != prev, "hm_os_random returned %#lx twice in a row", (unsigned long)r);
    prev = r;
  }
  UNIT_PASS("hm_os_random: never 0, never the same twice in a row");
}

int main(void)
{
  check_page_size();
  check_reserve_aligned();
  check_no_leak_when_aligning();
  check_reserve_refused();
  check_address_limit();
  check_decommit_zeroes();
  check_getenv();
  check_random();
  return 0;
}
