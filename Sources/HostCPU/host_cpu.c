#include "host_cpu.h"

#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)

// Everything in this file runs on any x86-64, whatever -march the build passes: the check below
// runs before main, on the processor it is checking.
#pragma clang attribute push(__attribute__((target("arch=x86-64"))), apply_to = function)

#define STRINGIFY2(x) #x
#define STRINGIFY(x) STRINGIFY2(x)
#ifdef RESNEXT_BUILD_CPU
static const char build_cpu[] = STRINGIFY(RESNEXT_BUILD_CPU);
#else
static const char build_cpu[] = "";
#endif

// The instruction sets the compiler may use in this build: the ones its target CPU implies
// (scripts/setup passes the same CPU to the C and the Swift compilers).
static const char *const targeted[] = {
#ifdef __SSE3__
    "sse3",
#endif
#ifdef __SSSE3__
    "ssse3",
#endif
#ifdef __SSE4_1__
    "sse4.1",
#endif
#ifdef __SSE4_2__
    "sse4.2",
#endif
#ifdef __POPCNT__
    "popcnt",
#endif
#ifdef __AVX__
    "avx",
#endif
#ifdef __AVX2__
    "avx2",
#endif
#ifdef __FMA__
    "fma",
#endif
#ifdef __F16C__
    "f16c",
#endif
#ifdef __BMI__
    "bmi",
#endif
#ifdef __BMI2__
    "bmi2",
#endif
#ifdef __MOVBE__
    "movbe",
#endif
#ifdef __AVX512F__
    "avx512f",
#endif
#ifdef __AVX512BW__
    "avx512bw",
#endif
#ifdef __AVX512DQ__
    "avx512dq",
#endif
#ifdef __AVX512VL__
    "avx512vl",
#endif
#ifdef __AVX512CD__
    "avx512cd",
#endif
#ifdef __AVX512VNNI__
    "avx512vnni",
#endif
#ifdef __AVX512BF16__
    "avx512bf16",
#endif
#ifdef __AVX512VBMI__
    "avx512vbmi",
#endif
#ifdef __AVX512VBMI2__
    "avx512vbmi2",
#endif
#ifdef __AVX512IFMA__
    "avx512ifma",
#endif
#ifdef __AVX512BITALG__
    "avx512bitalg",
#endif
#ifdef __AVX512VPOPCNTDQ__
    "avx512vpopcntdq",
#endif
#ifdef __AVX512FP16__
    "avx512fp16",
#endif
#ifdef __AVX512VP2INTERSECT__
    "avx512vp2intersect",
#endif
#ifdef __AVXVNNI__
    "avxvnni",
#endif
#ifdef __GFNI__
    "gfni",
#endif
#ifdef __VAES__
    "vaes",
#endif
#ifdef __VPCLMULQDQ__
    "vpclmulqdq",
#endif
};

// Every instruction set this module knows, in /proc/cpuinfo's spelling, which is also
// __builtin_cpu_supports'. That builtin takes a literal, hence the list as a macro.
#define HOST_CPU_FEATURES(X)                                                                      \
    X("sse3") X("ssse3") X("sse4.1") X("sse4.2") X("popcnt") X("avx") X("avx2") X("fma")          \
    X("f16c") X("bmi") X("bmi2") X("movbe") X("avx512f") X("avx512bw") X("avx512dq")            \
    X("avx512vl") X("avx512cd") X("avx512vnni") X("avx512bf16") X("avx512vbmi") X("avx512vbmi2") \
    X("avx512ifma") X("avx512bitalg") X("avx512vpopcntdq") X("avx512fp16")                      \
    X("avx512vp2intersect") X("avxvnni") X("gfni") X("vaes") X("vpclmulqdq")

#define NAME(literal) literal,
static const char *const known[] = {HOST_CPU_FEATURES(NAME) NULL};

const char *const *host_cpu_known_features(void) { return known; }

// __builtin_cpu_supports also asks the operating system whether it saves the AVX and AVX-512
// registers (XGETBV), so a feature is usable, not only present.
#define CHECK(literal) if (strcmp(name, literal) == 0) return __builtin_cpu_supports(literal) ? 1 : 0;

int host_cpu_supports(const char *name) {
    __builtin_cpu_init();
    HOST_CPU_FEATURES(CHECK)
    return -1;
}

const char *host_cpu_vendor(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) return "GenuineIntel";
    if (__builtin_cpu_is("amd")) return "AuthenticAMD";
    return "";
}

int host_cpu_missing_features(char *out, size_t length) {
    int missing = 0;
    size_t used = 0;
    if (length > 0) out[0] = 0;
    for (size_t i = 0; i < sizeof targeted / sizeof targeted[0]; i++) {
        if (host_cpu_supports(targeted[i]) == 1) continue;
        missing++;
        size_t n = strlen(targeted[i]);
        if (length > 0 && used + n + 3 < length) {
            if (used > 0) { memcpy(out + used, ", ", 2); used += 2; }
            memcpy(out + used, targeted[i], n);
            used += n;
            out[used] = 0;
        }
    }
    return missing;
}

static void say(const char *text) {
    size_t n = strlen(text);
    while (n > 0) {
        ssize_t w = write(2, text, n);
        if (w <= 0) return;
        text += w;
        n -= (size_t)w;
    }
}

// Runs before main (and before any Swift code, which may use every instruction set of the
// target): a binary built for a newer processor stops here with one line and status 1.
__attribute__((constructor(101))) static void host_cpu_check_build_target(void) {
    char missing[512];
    if (host_cpu_missing_features(missing, sizeof missing) == 0) return;
    say("error: this binary was built for ");
    say(build_cpu[0] ? build_cpu : "a newer processor");
    say(" (RESNEXT_TARGET_CPU), but this processor lacks ");
    say(missing);
    say(": rebuild it here with scripts/setup, or for every node of a mixed cluster with RESNEXT_TARGET_CPU=<the oldest node's CPU, e.g. haswell> scripts/setup\n");
    _exit(1);
}

#pragma clang attribute pop

#else

static const char *const known[] = {NULL};
const char *const *host_cpu_known_features(void) { return known; }
int host_cpu_supports(const char *name) { (void)name; return -1; }
const char *host_cpu_vendor(void) { return ""; }
int host_cpu_missing_features(char *out, size_t length) { if (length > 0) out[0] = 0; return 0; }

#endif
