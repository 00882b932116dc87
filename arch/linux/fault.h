/* Fault injection for tests (arch/os.h, hm_os_fail_after): the OS calls of
 * this layer ask here whether to fail as the OS would refuse them. */
#ifndef HM_ARCH_LINUX_FAULT_H
#define HM_ARCH_LINUX_FAULT_H

#include <stdbool.h>

/* Whether this call, of kind `kind` (an HM_FAULT_ bit), is the one to fail. */
bool hm_os_fault(unsigned kind);

#endif
