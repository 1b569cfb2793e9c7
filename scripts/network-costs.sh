#!/usr/bin/env bash
# What the network costs a training step: `resnext-ddp bench` over 2 simulated nodes
# (launch/simulated-cluster.sh, 1 rank each, 16 images per rank) at each link rate, with the
# gradients in one allreduce after the backward pass (--bucket-mb 0: its wait is the whole
# allreduce), in the default buckets (the wait is what the overlap leaves), and in buckets of
# bfloat16 (--grad-dtype bf16); and the same 2 ranks on one node (shared memory) for reference.
# Prints a Markdown table. Needs root (namespaces); takes about a minute per row for 29-4x64d.
#   scripts/network-costs.sh [--models "4,64 8,64"] [--rates "1gbit 10gbit 25gbit"] [--steps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
models="4,64 8,64" rates="1gbit 10gbit 25gbit" steps=3
while [ $# -gt 0 ]; do
    case "$1" in
        --models) models="$2"; shift 2 ;;
        --rates) rates="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        *) echo "scripts/network-costs.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" <<<"$2" | tr -d '"'; }
echo "| model | link | gradients | buckets | ms/step | waiting for the allreduce, ms | MiB per step |"
echo "|---|---|---|---|---:|---:|---:|"
for m in $models; do
    c=${m%,*} d=${m#*,}
    bench=(bench --depth 29 --cardinality "$c" --base-channels "$d" --batch-size 32 --bn-group 16 --steps "$steps" --json)
    json=$(mpirun -np 2 --bind-to core "${RESNEXT_DDP:-.build/release/resnext-ddp}" "${bench[@]}" | grep '^{')
    echo "| 29-${c}x${d}d | one node (shared memory) | fp32 | 25 MiB | $(field ms_per_step "$json") | $(field allreduce_ms "$json") | $(field gradient_mib "$json") |"
    for rate in $rates; do
        for setting in "fp32 0" "fp32 25" "bf16 25"; do
            dtype=${setting% *} bucket=${setting#* }
            json=$(launch/simulated-cluster.sh --nodes 2 --rate "$rate" -- --command bench "${bench[@]:1}" \
                --bucket-mb "$bucket" --grad-dtype "$dtype" | grep '^{') || { echo "| 29-${c}x${d}d | $rate | $dtype | $bucket | failed | | |"; continue; }
            label=$([ "$bucket" = 0 ] && echo "none (after backward)" || echo "$bucket MiB")
            echo "| 29-${c}x${d}d | 2 nodes, $rate | $dtype | $label | $(field ms_per_step "$json") | $(field allreduce_ms "$json") | $(field gradient_mib "$json") |"
        done
    done
done
