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

/* Reserve `size` bytes (a multiple of HM_GRANULE) aligned to `align` (a power
 * of two, at least HM_GRANULE). With `commit` the range is usable at once.
 * Returns NULL when the OS refuses (address space or RLIMIT_AS exhausted). */
void *hm_os_reserve(size_t size, size_t align, bool commit);
void hm_os_release(void *p, size_t size);
bool hm_os_commit(void *p, size_t size);
/* The range's contents are discarded and its memory goes back to the OS at
 * once; it must be committed again before use. */
void hm_os_decommit(void *p, size_t size);

/* Process services, none of which allocates. */
const char *hm_os_getenv(const char *name);
void hm_os_write_error(const char *msg, size_t len);
uint64_t hm_os_random(void);
/* Registers `on_exit` to run when a thread that called hm_os_thread_attach
 * exits, with the value given there. */
bool hm_os_thread_exit_init(void (*on_exit)(void *));
void hm_os_thread_attach(void *value);
void hm_os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
_Noreturn void hm_os_abort(void);

#endif
