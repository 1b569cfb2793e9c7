// Counts heap allocations made by the calling thread between start and stop (tests only): the
// test executable's malloc family is interposed and forwards to glibc's.
#ifndef ALLOC_COUNTER_H
#define ALLOC_COUNTER_H
void alloc_counter_start(void);
long alloc_counter_stop(void);
#endif
