#!/usr/bin/env bash
# The engine's throughput table: 29-4x16d and 29-4x64d at batch 64 and 128, with 1 and 2 OpenBLAS
# threads, one process (BN group 16). Prints one markdown row per run (median of --steps steps).
#   scripts/bench-table.sh [steps]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
steps="${1:-3}"
echo "| model | batch | threads | ms/step | images/s | GFLOP/s | peak MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for base in 16 64; do
    for batch in 64 128; do
        for threads in 1 2; do
            line=$(OPENBLAS_NUM_THREADS=$threads "$bin" bench --depth 29 --cardinality 4 --base-channels $base \
                --batch-size $batch --bn-group 16 --threads $threads --steps "$steps" --json)
            get() { echo "$line" | sed "s/.*\"$1\":\([0-9.]*\).*/\1/"; }
            echo "| 29-4x${base}d | $batch | $threads | $(get ms_per_step) | $(get images_per_s) | $(get gflops) | $(get peak_mib_per_process) |"
        done
    done
done
