#!/usr/bin/env bash
# Training across nodes listed in a hostfile (see hostfiles/): one rank per slot.
#   launch/cluster.sh --hostfile hostfiles/two-nodes -np 16 [--threads T] [--command train|bench] [resnext-ddp options...]
# The binary and the data must be at the same paths on every node (a shared file system, or
# copies); RESNEXT_DATA and OPENBLAS_NUM_THREADS are passed to the remote ranks with -x.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
hostfile="" np="" threads=1 command=train
while [ $# -gt 0 ]; do
    case "$1" in
        --hostfile) hostfile="$2"; shift 2 ;;
        -np) np="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --command) command="$2"; shift 2 ;;
        *) break ;;
    esac
done
[ -n "$hostfile" ] || { echo "launch/cluster.sh: --hostfile FILE is required (see hostfiles/)" >&2; exit 2; }
[ -f "$hostfile" ] || { echo "launch/cluster.sh: --hostfile $hostfile: no such file" >&2; exit 2; }
args=(--hostfile "$hostfile" -x "OPENBLAS_NUM_THREADS=$threads" --map-by "slot:PE=$threads" --bind-to core)
[ -z "$np" ] || args+=(-np "$np")
[ -z "${RESNEXT_DATA:-}" ] || args+=(-x RESNEXT_DATA)
if [ "$(id -u)" -eq 0 ]; then args+=(--allow-run-as-root); fi
. "$here/launch/graceful.sh"
# shellcheck disable=SC2086
run_gracefully mpirun "${args[@]}" ${MPIRUN_ARGS:-} "$bin" "$command" --threads "$threads" "$@"
