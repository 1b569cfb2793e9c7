#include "alloc_counter.h"

#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static __thread int counting = 0;
static __thread long count = 0;

void *malloc(size_t n) {
    if (counting) count++;
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b) {
    if (counting) count++;
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    if (counting) count++;
    return __libc_realloc(p, n);
}

int posix_memalign(void **out, size_t alignment, size_t n) {
    if (counting) count++;
    void *p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t n) {
    if (counting) count++;
    return __libc_memalign(alignment, n);
}

void *memalign(size_t alignment, size_t n) {
    if (counting) count++;
    return __libc_memalign(alignment, n);
}

void alloc_counter_start(void) {
    count = 0;
    counting = 1;
}

long alloc_counter_stop(void) {
    counting = 0;
    return count;
}
