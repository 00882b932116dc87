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

static int64_t read_int(const char *name, int64_t min, int64_t max, int64_t fallback)
{
  const char *v = hm_os_getenv(name);
  if (v == NULL || *v == '\0')
    return fallback;
  const char *p = v;
  bool negative = *p == '-';
  if (negative)
    p++;
  int64_t n = 0;
  for (; *p >= '0' && *p <= '9' && n <= max; p++)
    n = n * 10 + (*p - '0');
  if (negative)
    n = -n;
  if (*p == '\0' && p != v + negative && n >= min && n <= max)
    return n;
  char msg[160];
  hm_format(msg, sizeof msg, "%s=%s is not a whole number from %d to %d; using %d", name, v,
            (int)min, (int)max, (int)fallback);
  hm_warn(msg);
  return fallback;
}

void hm_config_read(void)
{
  hm_config.stats = read_bool("HMALLOC_STATS", false);
  if (hm_config.stats)
    hm_os_keep_error_output();
  hm_config.purge_delay_ms =
      read_int("HMALLOC_PURGE_DELAY_MS", -1, 3600 * 1000, HM_PURGE_DELAY_DEFAULT_MS);
  const char *bg = hm_os_getenv("HMALLOC_BACKGROUND_THREAD");
  hm_config.background_thread = bg == NULL || *bg == '\0' ? -1 : read_bool("HMALLOC_BACKGROUND_THREAD", false);
  hm_config.purge_lazy = read_bool("HMALLOC_PURGE_LAZY", false);
  hm_config.huge_pages = read_bool("HMALLOC_THP", false);
}
