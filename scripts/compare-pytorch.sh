#!/usr/bin/env bash
# Side by side, in one run: PyTorch DistributedDataParallel (gloo, shared/reference/bench_torch.py)
# and `mpirun -np P resnext-ddp bench`, same model, same global batch, 1 thread per process, each
# process pinned to its own core, alternating for --rounds rounds (the machine's load moves both by
# 15-25 % between runs; the median of per-round ratios is the figure to quote). Prints one markdown
# row per model and round with the ratio, the step's
# effective GFLOP/s per process as a share of a 1024^3 SGEMM that bench times between its steps
# (the median of the samples; in brackets the median share of each step against the SGEMM timed
# right after it), and the peak resident memory per rank of each.
#   scripts/compare-pytorch.sh [--procs 2] [--batch 128] [--steps 3] [--rounds 1] [--configs "29,4,16 29,4,64"]
# Needs PyTorch in a virtualenv outside the checkout (TORCH_PYTHON, default /tmp/torchref/bin/python):
#   python3 -m venv /tmp/torchref && /tmp/torchref/bin/pip install torch safetensors numpy
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
py="${TORCH_PYTHON:-/tmp/torchref/bin/python}"
ref="${RESNEXT_REFERENCE:-$here/../shared/reference}"
procs=2 batch=128 steps=3 rounds=1 configs="29,4,16 29,4,64" extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --procs) procs="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --configs) configs="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        *) extra+=("$1"); shift ;;
    esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive integer, got '$rounds'" >&2; exit 2; }
[ -x "$py" ] || { echo "error: no PyTorch python at $py; set TORCH_PYTHON or create the virtualenv (see the header of $0)" >&2; exit 1; }
[ -f "$ref/bench_torch.py" ] || { echo "error: $ref/bench_torch.py not found; set RESNEXT_REFERENCE" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
torchrun="$(dirname "$py")/torchrun"
get() { echo "$2" | sed "s/.*\"$1\": *\([0-9.]*\).*/\1/"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.4g\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "| model | round | processes | global batch | PyTorch images/s | resnext-ddp images/s | ratio | resnext-ddp step / SGEMM rate | PyTorch peak MiB/rank | resnext-ddp peak MiB/rank |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for cfg in $configs; do
    IFS=, read -r depth card base <<<"$cfg"
    tis=() ris=() ratios=()
    for round in $(seq 1 "$rounds"); do
        # PyTorch then resnext-ddp, back to back: each round sees the same machine load
        if [ "$procs" -gt 1 ]; then
            t=$(cd "$ref" && OMP_NUM_THREADS=1 "$torchrun" --standalone --nproc_per_node="$procs" bench_torch.py \
                --config "$cfg" --batch "$batch" --threads 1 --warmup 1 --steps "$steps" --pin 2>/dev/null | grep '^{')
        else
            t=$(cd "$ref" && OMP_NUM_THREADS=1 "$py" bench_torch.py --config "$cfg" --batch "$batch" --threads 1 \
                --warmup 1 --steps "$steps" --pin | grep '^{')
        fi
        r=$(mpirun -np "$procs" --bind-to core -x OPENBLAS_NUM_THREADS=1 "$bin" bench --depth "$depth" --cardinality "$card" \
            --base-channels "$base" --batch-size "$batch" --bn-group $((batch / procs < 16 ? batch / procs : 16)) \
            --threads 1 --steps "$steps" --json "${extra[@]}" | grep '^{')
        ti=$(get images_per_s "$t"); ri=$(get images_per_s "$r")
        tm=$(awk -v g="$(get maxrss_GiB "$t")" 'BEGIN { printf "%.0f", g * 1024 }')
        ratio=$(awk -v a="$ri" -v b="$ti" 'BEGIN { printf "%.2f", a / b }')
        share=$(awk -v s="$(get step_share_of_sgemm "$r")" -v g="$(get sgemm_gflops_per_process "$r")" \
            -v a="$(get step_share_of_adjacent_sgemm "$r")" 'BEGIN { printf "%.0f %% of %.0f GFLOP/s (steps: %.0f %%)", 100 * s, g, 100 * a }')
        tis+=("$ti"); ris+=("$ri"); ratios+=("$ratio")
        echo "| $depth-${card}x${base}d | $round | $procs | $batch | $ti | $ri | ${ratio}x | $share | $tm | $(get peak_mib_per_process "$r") |"
    done
    if [ "$rounds" -gt 1 ]; then
        lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1); hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
        echo "| $depth-${card}x${base}d | **median of $rounds** | $procs | $batch | $(median "${tis[@]}") | $(median "${ris[@]}") | **$(printf '%.2f' "$(median "${ratios[@]}")")x** (rounds ${lo}-${hi}x) | | | |"
    fi
done
