/* Error output that never allocates: stdio may, and the allocator is often
 * broken (or being called from inside itself) when it has to speak. */
#include <stdarg.h>
#include <string.h>

#include "internal.h"

static void put(char *buf, size_t cap, size_t *len, char c)
{
  if (*len + 1 < cap)
    buf[*len] = c;
  (*len)++;
}

static void put_number(char *buf, size_t cap, size_t *len, uintmax_t v, unsigned base)
{
  char digits[32];
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v != 0);
  while (n > 0)
    put(buf, cap, len, digits[--n]);
}

/* Understands %s, %zu, %d, %u and %p: what the messages use. */
size_t hm_format(char *buf, size_t cap, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  size_t len = 0;
  for (const char *f = fmt; *f; f++) {
    if (*f != '%') {
      put(buf, cap, &len, *f);
      continue;
    }
    f++;
    if (*f == 's') {
      for (const char *s = va_arg(ap, const char *); *s; s++)
        put(buf, cap, &len, *s);
    } else if (*f == 'z' && f[1] == 'u') {
      f++;
      put_number(buf, cap, &len, va_arg(ap, size_t), 10);
    } else if (*f == 'u') {
      put_number(buf, cap, &len, va_arg(ap, unsigned), 10);
    } else if (*f == 'd') {
      int v = va_arg(ap, int);
      if (v < 0)
        put(buf, cap, &len, '-');
      put_number(buf, cap, &len, v < 0 ? -(uintmax_t)v : (uintmax_t)v, 10);
    } else if (*f == 'p') {
      put(buf, cap, &len, '0');
      put(buf, cap, &len, 'x');
      put_number(buf, cap, &len, (uintptr_t)va_arg(ap, void *), 16);
    } else {
      put(buf, cap, &len, '%');
      if (*f == '\0')
        break;
      put(buf, cap, &len, *f);
    }
  }
  va_end(ap);
  if (cap > 0)
    buf[len < cap ? len : cap - 1] = '\0';
  return len < cap ? len : cap - 1;
}

void hm_fatal(const char *func, const char *what, const void *p)
{
  char line[256];
  size_t n = hm_format(line, sizeof line, "hmalloc: %s(): %s %p\n", func, what, p);
  hm_os_write_error(line, n);
  hm_os_abort();
}

void hm_warn(const char *msg)
{
  char line[256];
  size_t n = hm_format(line, sizeof line, "hmalloc: %s\n", msg);
  hm_os_write_error(line, n);
}
