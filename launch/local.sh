#!/usr/bin/env bash
# Multi-process training on this machine: P ranks (default: the number of cores), each with
# cores / P OpenBLAS threads, one core set per rank.
#   launch/local.sh [-np P] [resnext-ddp train options...]
#   launch/local.sh -np 2 --depth 29 --cardinality 4 --base-channels 16 --outdir runs/4x16d
# Extra mpirun arguments go in MPIRUN_ARGS; another binary in RESNEXT_DDP.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
cores=$(nproc)
np=$cores
if [ "${1:-}" = "-np" ]; then np="$2"; shift 2; fi
threads=$(( cores / np )); [ "$threads" -ge 1 ] || threads=1
args=(-np "$np" -x "OPENBLAS_NUM_THREADS=$threads")
[ "$np" -le "$cores" ] || args+=(--oversubscribe)
if [ "$threads" -gt 1 ]; then args+=(--map-by "slot:PE=$threads"); fi
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
. "$here/launch/graceful.sh"
# shellcheck disable=SC2086
run_gracefully mpirun "${args[@]}" ${MPIRUN_ARGS:-} "$bin" train --threads "$threads" "$@"
