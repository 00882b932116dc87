/* The OS layer: everything hmalloc needs from the operating system.
 *
 * Address space is handled in 64 KiB granules, the Windows allocation
 * granularity. The interface separates reserving address space from
 * committing it because Windows does (VirtualAlloc MEM_RESERVE / MEM_COMMIT,
 * and a decommitted page faults when touched); on Linux a reservation is
 * readable and writable at once and commit is free. Callers must commit
 * before first use and after a decommit, whatever the platform. */
#ifndef HM_ARCH_OS_H
#define HM_ARCH_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HM_GRANULE_SHIFT 16
#define HM_GRANULE ((size_t)1 << HM_GRANULE_SHIFT)

size_t hm_os_page_size(void);

/* Every range hm_os_reserve returns ends at or below 2^HM_OS_ADDRESS_BITS:
 * the page map covers that much, and atomic words pack pointers with tags
 * and counts in the bits above it. A mapping the OS places higher (a
 * kernel with 5-level page tables or 52-bit addresses, asked for one) is
 * given back and the reserve fails. */
#define HM_OS_ADDRESS_BITS 48

/* Reserve `size` bytes (a multiple of HM_GRANULE) aligned to `align` (a power
 * of two, at least HM_GRANULE). With `commit` the range is usable at once.
 * Returns NULL when the OS refuses (address space or RLIMIT_AS exhausted)
 * or places it above the address limit. */
void *hm_os_reserve(size_t size, size_t align, bool commit);
/* The same, but the range starts `skew` bytes (a multiple of HM_GRANULE,
 * below `align`) before an `align` boundary: room for a header in front of
 * an over-aligned block, without reserving the padding an aligned start
 * would need. */
void *hm_os_reserve_skewed(size_t size, size_t align, size_t skew, bool commit);

/* For tests: lowers the address limit (0: back to 2^HM_OS_ADDRESS_BITS). */
void hm_os_set_address_limit(uintptr_t limit);

/* For tests, fault injection: the nth call from now of the kinds chosen
 * fails as the OS would refuse it (reserve: NULL with ENOMEM; commit:
 * false; purge: the pages stay as they were, not zeroed; release: the
 * mapping stays; bind: an error), and with from_then_on every later one
 * too, as when memory is exhausted. n 0 disarms. Counts over all threads. */
enum {
  HM_FAULT_RESERVE = 1,
  HM_FAULT_COMMIT = 2,
  HM_FAULT_PURGE = 4,
  HM_FAULT_RELEASE = 8,
  HM_FAULT_BIND = 16,
  HM_FAULT_ALL = 31
};
void hm_os_fail_after(unsigned kinds, uint64_t n, bool from_then_on);
/* Calls failed that way so far. */
uint64_t hm_os_faults_fired(void);
void hm_os_release(void *p, size_t size);
/* How many reservations the OS has refused so far: an allocation that saw
 * this change may succeed once hmalloc gave back what it keeps. */
uint32_t hm_os_refusals(void);
bool hm_os_commit(void *p, size_t size);
/* The range's contents are discarded and its memory goes back to the OS at
 * once; it must be committed again before use. */
void hm_os_decommit(void *p, size_t size);
/* The range's memory may go back to the OS; it stays committed (usable
 * without hm_os_commit). `now`: RSS must drop at once, and the range reads
 * as zeros afterwards (Linux MADV_DONTNEED); otherwise the OS may take the
 * pages lazily and their contents are undefined (MADV_FREE). Returns whether
 * the range now reads as zeros. */
bool hm_os_purge(void *p, size_t size, bool now);
/* Asks for the range to be backed by huge pages (2 MiB on x86_64) where
 * the OS can; a hint, without effect where there are none. */
void hm_os_huge_pages(void *p, size_t size);
/* The size of those pages, or 0 if the OS has none to offer. */
size_t hm_os_huge_page_size(void);
/* Bytes of [p, p+size) that are resident now. */
size_t hm_os_resident(void *p, size_t size);
/* Moves or resizes the mapping [p, p+old_size) to [to, to+new_size), where
 * `to` was reserved by hm_os_reserve, without copying the pages. */
bool hm_os_remap(void *p, size_t old_size, void *to, size_t new_size);
/* Grows or shrinks the mapping [p, p+old_size) where it is. */
bool hm_os_resize(void *p, size_t old_size, size_t new_size);

/* Milliseconds of a monotonic clock, cheap (no system call where the OS has
 * a vDSO). */
int64_t hm_os_now_ms(void);
/* Starts fn(arg) on a detached thread with every signal blocked (a helper
 * must not take a signal meant for the program). pthread_create allocates
 * (the new thread's TLS vector), so call it where allocating is allowed. */
bool hm_os_thread_start(void *(*fn)(void *), void *arg);
/* Sleeps while *word == expected, at most timeout_ms (-1: no limit). */
void hm_os_wait(_Atomic uint32_t *word, uint32_t expected, int64_t timeout_ms);
void hm_os_wake(_Atomic uint32_t *word);
void hm_os_yield(void);

/* A full memory barrier on every running thread of the process (Linux
 * membarrier, Windows FlushProcessWriteBuffers): with it, the readers of
 * read-copy-update need only a compiler barrier. hm_os_barrier_init
 * registers for it, once per process and again in a fork child; false
 * where the OS offers none, and then the readers must fence. */
bool hm_os_barrier_init(void);
void hm_os_barrier(void);

/* For free_sized and free_aligned_sized, given a pointer hmalloc did not
 * hand out: when another allocator serves this process's malloc (valgrind's
 * replacements, a sanitizer's interceptors), the block is its, and goes to
 * its free (returns true); otherwise the pointer is invalid (false). Those
 * tools replace malloc and free but not the C23 names. */
bool hm_os_foreign_free(void *p);

/* Process services, none of which allocates. */
/* An environment variable; NULL in set-user-ID/set-group-ID programs. */
const char *hm_os_getenv(const char *name);
void hm_os_write_error(const char *msg, size_t len);
/* Keeps the error output usable even if the program closes it later (as
 * coreutils do at exit): for statistics printed at exit. */
void hm_os_keep_error_output(void);
uint64_t hm_os_random(void);
/* Registers `on_exit` to run when a thread that called hm_os_thread_attach
 * exits, with the value given there. */
bool hm_os_thread_exit_init(void (*on_exit)(void *));
void hm_os_thread_attach(void *value);
/* The calling thread's id, and whether the thread of that id still exists
 * (a thread whose exit hook never ran). Each costs a system call. */
uint32_t hm_os_thread_id(void);
bool hm_os_thread_alive(uint32_t id);
void hm_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
_Noreturn void hm_os_abort(void);

#endif
