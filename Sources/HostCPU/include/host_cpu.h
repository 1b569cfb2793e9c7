// What this processor can run, and the check that a binary built for a newer one stops with a
// message instead of SIGILL. C because the check must run before any Swift code (a constructor)
// and must itself be compiled for the baseline x86-64, whatever the rest of the build targets.
#ifndef HOST_CPU_H
#define HOST_CPU_H

#include <stddef.h>

/// The names `host_cpu_supports` knows, NULL-terminated (none on a processor other than x86-64).
const char *const *host_cpu_known_features(void);

/// 1 if the processor and the operating system support the instruction set `name` (the names of
/// /proc/cpuinfo and of GCC's __builtin_cpu_supports: "avx2", "fma", "avx512f", ...), 0 if not,
/// -1 for a name this module does not know or on a processor other than x86-64.
int host_cpu_supports(const char *name);

/// "GenuineIntel", "AuthenticAMD", or "" (another vendor, or not x86-64).
const char *host_cpu_vendor(void);

/// The instruction sets the build targeted that this processor lacks, comma-separated, written
/// into `out` (at most `length` bytes, NUL-terminated). Returns how many are missing.
int host_cpu_missing_features(char *out, size_t length);

#endif
