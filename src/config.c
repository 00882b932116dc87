#include "config.h"

#include <string.h>

struct hm_config hm_config;

static bool read_bool(const char *name, bool fallback)
{
  const char *v = hm_os_getenv(name);
  if (v == NULL || *v == '\0')
    return fallback;
  if (strcmp(v, "1") == 0)
    return true;
  if (strcmp(v, "0") == 0)
    return false;
  char msg[160];
  hm_format(msg, sizeof msg, "%s=%s is not 0 or 1; using %s", name, v, fallback ? "1" : "0");
  hm_warn(msg);
  return fallback;
}

void hm_config_read(void)
{
  hm_config.stats = read_bool("HMALLOC_STATS", false);
}
