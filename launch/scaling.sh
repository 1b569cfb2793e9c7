#!/usr/bin/env bash
# Weak scaling on this machine: P = 1, 2, 4 processes with a fixed number of images per process,
# 1 OpenBLAS thread each. Prints images/s, efficiency against P = 1 and the time per step still spent
# waiting for the gradient allreduce after the backward pass (pass --bucket-mb 0 for one allreduce
# after it, which is then its whole duration).
#   launch/scaling.sh [--per-process 16] [--steps 5] [bench model options, e.g. --cardinality 4 --base-channels 64]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
per=16 steps=5 procs="${PROCS:-1 2 4}"
while [ $# -gt 0 ]; do
    case "$1" in
        --per-process) per="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        *) break ;;
    esac
done
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
cores=$(nproc)
echo "| processes | batch | images/s | efficiency | ms/step | waiting for allreduce ms/step |"
echo "|---:|---:|---:|---:|---:|---:|"
base=""
for p in $procs; do
    extra=()
    [ "$p" -le "$cores" ] || extra+=(--oversubscribe)
    line=$(mpirun -np "$p" "${extra[@]}" -x OPENBLAS_NUM_THREADS=1 "$bin" bench --batch-size $((p * per)) \
        --bn-group "$per" --threads 1 --steps "$steps" --json "$@" | grep '^{')
    ips=$(echo "$line" | sed 's/.*"images_per_s":\([0-9.]*\).*/\1/')
    ms=$(echo "$line" | sed 's/.*"ms_per_step":\([0-9.]*\).*/\1/')
    ar=$(echo "$line" | sed 's/.*"allreduce_ms":\([0-9.]*\).*/\1/')
    [ -n "$base" ] || base="$ips"
    eff=$(awk -v a="$ips" -v b="$base" -v p="$p" 'BEGIN { printf "%.0f %%", 100 * a / (b * p) }')
    echo "| $p | $((p * per)) | $ips | $eff | $ms | $ar |"
done
[ "$(echo $procs | wc -w)" -le 1 ] || [ "$(echo $procs | awk '{print $NF}')" -le "$cores" ] || \
    echo "(more processes than the $cores cores here: the last rows share cores, their efficiency is not a scaling figure)"
