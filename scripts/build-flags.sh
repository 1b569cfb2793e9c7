# Sourced by scripts/setup, scripts/test and scripts/device-pack.sh: sets `build_flags`, the
# flags of `swift build` / `swift test`, and `build_target`, the CPU they build for.
#   RESNEXT_TARGET_CPU  the CPU to build for: "native" (default: this machine, its full vector
#                       width), a CPU name LLVM knows (haswell: AVX2 + FMA, any x86-64 cluster node
#                       since 2013; skylake-avx512, znver4, sapphirerapids, ...), or "none" (the
#                       compiler's default: portable SIMD only, runs on any x86-64)
# The same CPU goes to the Swift and the C compilers, so that HostCPU's check before main knows
# what the build needs; RESNEXT_X86_AVX/AVX2/AVX512 tell the Swift code which x86 intrinsics it
# may use (Swift has no #if for target features).
resnext_build_flags() {
    local cpu="${1:-${RESNEXT_TARGET_CPU:-native}}"
    build_flags=()
    build_target="the compiler's default target"
    [ "$cpu" = none ] && return 0
    if [ "$(uname -m)" != x86_64 ]; then
        [ "$cpu" = native ] && return 0
        echo "setup: RESNEXT_TARGET_CPU=$cpu: target CPUs are chosen on x86-64 only; on $(uname -m) leave it unset" >&2
        return 1
    fi
    local clang
    clang="$(dirname "$(command -v swift)")/clang"
    [ -x "$clang" ] || clang=clang
    if [ "$cpu" = native ]; then
        cpu=$("$clang" -march=native -### -x c -c /dev/null 2>&1 | sed -n 's/.*"-target-cpu" "\([^"]*\)".*/\1/p' | head -1)
        [ -n "$cpu" ] || { echo "setup: could not tell which CPU this is (clang -march=native); set RESNEXT_TARGET_CPU, e.g. haswell" >&2; return 1; }
    fi
    local macros
    if ! macros=$("$clang" -march="$cpu" -dM -E -x c /dev/null 2>/dev/null); then
        echo "setup: RESNEXT_TARGET_CPU=$cpu is not a CPU the compiler knows; use native, none, or a name such as haswell, skylake-avx512, znver4, sapphirerapids" >&2
        return 1
    fi
    build_target="$cpu"
    build_flags=(-Xswiftc -target-cpu -Xswiftc "$cpu" -Xcc "-march=$cpu" -Xcc "-DRESNEXT_BUILD_CPU=$cpu")
    grep -q '#define __AVX__ ' <<<"$macros" && build_flags+=(-Xswiftc -DRESNEXT_X86_AVX)
    grep -q '#define __AVX2__ ' <<<"$macros" && grep -q '#define __FMA__ ' <<<"$macros" && build_flags+=(-Xswiftc -DRESNEXT_X86_AVX2)
    if grep -q '#define __AVX512F__ ' <<<"$macros" && grep -q '#define __AVX512BW__ ' <<<"$macros" \
        && grep -q '#define __AVX512VL__ ' <<<"$macros" && grep -q '#define __AVX512DQ__ ' <<<"$macros"; then
        build_flags+=(-Xswiftc -DRESNEXT_X86_AVX512)
    fi
    return 0
}
