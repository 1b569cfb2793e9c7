#!/usr/bin/env bash
# Packs a release binary for another x86-64 Linux machine without Swift (the device machine of
# a development session: Ubuntu 24.04, its own Open MPI 4.x and PyTorch, no Swift, no internet):
# the binary built with --static-swift-stdlib and stripped, Debian's OpenBLAS with its Fortran
# runtime (and libcurl, used only where that machine lacks it), PyTorch's reference benchmark,
# and env.sh, which unpacks all that into /tmp/dr and exports RESNEXT_DDP, LD_LIBRARY_PATH,
# RESNEXT_REFERENCE and TORCH_PYTHON for scripts/many-core-runs.sh. About 20 MB as tar.xz.
#   scripts/device-pack.sh [folder, default .devcarry]
# then, on the device machine, carrying that folder (it is in .gitignore):
#   . .devcarry/env.sh && scripts/many-core-runs.sh info s16x8 tune64 torch64
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.devcarry}"
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the static Foundation links -lcurl, which Debian ships only as libcurl.so.4 without the dev package
mkdir -p "$work/link" "$work/pack/lib" "$work/pack/curl"
ln -s /usr/lib/x86_64-linux-gnu/libcurl.so.4 "$work/link/libcurl.so"
# built for haswell (AVX2 + FMA) unless RESNEXT_TARGET_CPU says otherwise: the device is another processor
. scripts/build-flags.sh
resnext_build_flags "${RESNEXT_TARGET_CPU:-haswell}"
swift build -c release --static-swift-stdlib --build-path .build-static "${build_flags[@]}" -Xlinker -L"$work/link"
strip -o "$work/pack/resnext-ddp" .build-static/release/resnext-ddp
for lib in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$work/pack/lib/"; done
cp -L /usr/lib/x86_64-linux-gnu/libcurl.so.4 "$work/pack/curl/"
mkdir -p "$dest/reference"
cp "${RESNEXT_REFERENCE:-../shared/reference}/bench_torch.py" "${RESNEXT_REFERENCE:-../shared/reference}/resnext.py" "$dest/reference/"
tar -cJf "$dest/pack.tar.xz" -C "$work/pack" .
cat > "$dest/env.sh" <<'ENV'
# . .devcarry/env.sh: unpacks the binary and its libraries into /tmp/dr, sets what scripts/many-core-runs.sh reads
_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p /tmp/dr && [ -x /tmp/dr/resnext-ddp ] || tar -xJf "$_here/pack.tar.xz" -C /tmp/dr
export RESNEXT_DDP=/tmp/dr/resnext-ddp RESNEXT_REFERENCE="$_here/reference" TORCH_PYTHON="${TORCH_PYTHON:-python3}"
export LD_LIBRARY_PATH=/tmp/dr/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
LD_LIBRARY_PATH=$LD_LIBRARY_PATH ldd /tmp/dr/resnext-ddp | grep -q "libcurl.so.4 => /" || export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/tmp/dr/curl
ENV
echo "device-pack: $(du -h "$dest/pack.tar.xz" | cut -f1) in $dest; on the device: . $dest/env.sh && scripts/many-core-runs.sh SECTIONS"
