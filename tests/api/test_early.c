/* malloc where a program's life has no main(): constructors, atexit
 * handlers, destructors, and the destructors of a thread's keys and
 * thread-local objects, some of which run after hmalloc's own per-thread
 * clean-up. Every block is checked by its content.
 *
 * The last stage, the executable's destructor, ends the process with
 * _exit(0) once it has checked that every earlier stage ran; main returns
 * 3, so a run in which that destructor never ran fails. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmalloc.h"
#include "test_util.h"

/* glibc's registration of a thread-local object's destructor: what C++
 * thread_local and C11 implementations with tss destructors build on. */
int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;

enum { STAGE_CONSTRUCTOR, STAGE_KEY, STAGE_KEY_LATE, STAGE_TLS_OBJECT, STAGE_THREAD_DATA,
       STAGE_MAIN_TLS_OBJECT, STAGE_ATEXIT, STAGE_COUNT };
static const char *const stage_names[STAGE_COUNT] = {
    "constructor", "thread key destructor", "thread key destructor, later round",
    "thread-local object destructor", "__thread data freed by a key destructor",
    "main thread's thread-local object destructor", "atexit handler"};
static int stage_done[STAGE_COUNT];

/* malloc, calloc, realloc and free, each block verified. */
static void exercise(const char *where)
{
  char *a = malloc(100);
  CHECK(a != NULL && hm_usable_size(a) >= 100, "%s: malloc(100) failed", where);
  tu_fill(a, 100, 1);
  char *z = calloc(50, 40);
  CHECK(z != NULL && all_zero(z, 2000), "%s: calloc(50, 40) is not zeroed", where);
  a = realloc(a, 300000); /* through the large-block path too */
  CHECK(a != NULL && tu_holds(a, 100, 1), "%s: realloc lost the data", where);
  tu_fill(a, 300000, 2);
  char *s = strdup(where); /* libc allocating inside the context */
  CHECK(s != NULL && strcmp(s, where) == 0 && hm_usable_size(s) > strlen(where),
        "%s: strdup failed", where);
  CHECK(tu_holds(a, 300000, 2), "%s: block was overwritten", where);
  free(s);
  free(z);
  free(a);
}

/* Blocks allocated in a thread's late destructors, freed by main once the
 * thread is gone. */
#define HANDED_OVER 4
static void *handed_over[HANDED_OVER];

static void hand_over(size_t slot, size_t size)
{
  handed_over[slot] = malloc(size);
  CHECK(handed_over[slot] != NULL, "malloc(%zu) in a thread destructor failed", size);
  tu_fill(handed_over[slot], size, (uint8_t)slot);
}

static const size_t handed_size[HANDED_OVER] = {48, 5000, 200000, 8 << 20};

__attribute__((constructor)) static void early_constructor(void)
{
  exercise("constructor");
  stage_done[STAGE_CONSTRUCTOR] = 1;
}

/* The __thread datum is malloc'd; the key destructor frees it. */
static __thread char *thread_data;
static pthread_key_t data_key, late_key;

static void free_thread_data(void *value)
{
  CHECK(value == thread_data, "the key value is not the thread's datum");
  CHECK(tu_holds(thread_data, 1000, 9), "the __thread datum was overwritten");
  free(thread_data);
  thread_data = NULL;
  stage_done[STAGE_THREAD_DATA] = 1;
}

/* Re-arms itself so it runs again in glibc's next destructor round, which
 * comes after hmalloc's own key destructor has flushed the thread's cache
 * (hmalloc's key was created first, at the first malloc). */
static void late_key_destructor(void *value)
{
  uintptr_t round = (uintptr_t)value;
  exercise(round == 1 ? "thread key destructor" : "thread key destructor, later round");
  if (round == 1) {
    hand_over(0, handed_size[0]);
    hand_over(1, handed_size[1]);
    stage_done[STAGE_KEY] = 1;
    CHECK(pthread_setspecific(late_key, (void *)2) == 0, "pthread_setspecific failed");
  } else {
    hand_over(2, handed_size[2]);
    stage_done[STAGE_KEY_LATE] = 1;
  }
}

static void tls_object_destructor(void *obj)
{
  CHECK(tu_holds(obj, 64, 12), "the thread-local object was overwritten");
  free(obj);
  exercise("thread-local object destructor");
  hand_over(3, handed_size[3]);
  stage_done[STAGE_TLS_OBJECT] = 1;
}

static void *thread_main(void *arg)
{
  (void)arg;
  thread_data = malloc(1000);
  CHECK(thread_data != NULL, "malloc in the thread failed");
  tu_fill(thread_data, 1000, 9);
  CHECK(pthread_setspecific(data_key, thread_data) == 0, "pthread_setspecific failed");
  CHECK(pthread_setspecific(late_key, (void *)1) == 0, "pthread_setspecific failed");
  void *obj = malloc(64);
  CHECK(obj != NULL, "malloc in the thread failed");
  tu_fill(obj, 64, 12);
  CHECK(__cxa_thread_atexit_impl(tls_object_destructor, obj, &__dso_handle) == 0,
        "__cxa_thread_atexit_impl failed");
  return NULL;
}

static void run_thread_with_destructors(void)
{
  CHECK(pthread_key_create(&data_key, free_thread_data) == 0, "pthread_key_create failed");
  CHECK(pthread_key_create(&late_key, late_key_destructor) == 0, "pthread_key_create failed");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, thread_main, NULL) == 0, "pthread_create failed");
  CHECK(pthread_join(t, NULL) == 0, "pthread_join failed");
  for (int s = STAGE_KEY; s <= STAGE_THREAD_DATA; s++)
    CHECK(stage_done[s], "the %s did not run", stage_names[s]);
  for (size_t i = 0; i < HANDED_OVER; i++) {
    CHECK(tu_holds(handed_over[i], handed_size[i], (uint8_t)i),
          "block %zu from a dead thread's destructor was overwritten", i);
    free(handed_over[i]);
  }
}

static void main_tls_object_destructor(void *obj)
{
  CHECK(tu_holds(obj, 200, 13), "main's thread-local object was overwritten");
  free(obj);
  exercise("main thread's thread-local object destructor");
  stage_done[STAGE_MAIN_TLS_OBJECT] = 1;
}

static void at_exit(void)
{
  exercise("atexit handler");
  stage_done[STAGE_ATEXIT] = 1;
}

__attribute__((destructor)) static void late_destructor(void)
{
  exercise("destructor");
  for (int s = 0; s < STAGE_COUNT; s++)
    CHECK(stage_done[s], "the %s did not run before the destructor", stage_names[s]);
  printf("early and late allocation: ok\n");
  fflush(stdout);
  _exit(0);
}

int main(void)
{
  CHECK(stage_done[STAGE_CONSTRUCTOR], "the constructor did not run");
  exercise("main");
  run_thread_with_destructors();
  void *obj = malloc(200);
  CHECK(obj != NULL, "malloc failed");
  tu_fill(obj, 200, 13);
  CHECK(__cxa_thread_atexit_impl(main_tls_object_destructor, obj, &__dso_handle) == 0,
        "__cxa_thread_atexit_impl failed");
  CHECK(atexit(at_exit) == 0, "atexit failed");
  return 3; /* replaced by the destructor's _exit(0) */
}
