#!/usr/bin/env bash
# The runs behind the published CIFAR-10 figures, each resumable, then `resnext-ddp report` over
# them: 29-4x64d seeds 1, 2, 3 (hysts/pytorch_resnext: 3.89 %, median of 3 runs) and 29-8x64d seed 1
# (Xie et al. 2017, Table 7: 3.65 %), with the paper's setup (train's defaults): 300 epochs, batch
# 128 = 8 ranks x 16 images, BN over each rank's 16, LR 0.1, x0.1 at epochs 150 and 225, Nesterov
# 0.9, weight decay 5e-4, crop + flip. What it costs: docs/reproduction.md.
#
#   launch/reproduce.sh [--via local|cluster|slurm] [--hostfile FILE] [-np 8] [--threads T]
#                       [--runs DIR] [--only NAME,...] [-- TRAIN_OPTIONS...]
#
#   --via local     (default) launch/local.sh on this machine, the runs one after another
#   --via cluster   launch/cluster.sh --hostfile FILE, the runs one after another
#   --via slurm     one job per run (launch/slurm.sbatch: it requeues itself when stopped by its
#                   time limit or a preemption and resumes), and a report job after them all;
#                   SBATCH_ARGS adds sbatch options (partition, nodes, time)
#   --runs DIR      where the run folders and the report go (default runs/reproduce)
#   --only NAMES    some of the runs: 29-4x64d-seed1, 29-4x64d-seed2, 29-4x64d-seed3, 29-8x64d-seed1
#   TRAIN_OPTIONS   go after each run's own options and win over them; a rehearsal on one machine:
#                   -- --depth 11 --cardinality 2 --base-channels 2 --max-steps 5
#
# Run the same command again to go on: a run with a checkpoint resumes from it (a finished run ends
# at once). Exit status: 0 when every run has ended and the report is written; 75 when a run was
# stopped with a checkpoint (SIGTERM, SIGINT or SIGUSR1; run the command again); otherwise the
# failing run's status.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
via=local hostfile="" np=8 threads="" runs=runs/reproduce only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --via) via="$2"; shift 2 ;;
        --hostfile) hostfile="$2"; shift 2 ;;
        -np) np="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "launch/reproduce.sh: unknown option $1 (train's options go after --)" >&2; exit 2 ;;
    esac
done
extra=("$@")

names=(29-4x64d-seed1 29-4x64d-seed2 29-4x64d-seed3 29-8x64d-seed1)
options_of() {
    case "$1" in
        29-4x64d-seed*) echo "--depth 29 --cardinality 4 --base-channels 64 --seed ${1##*seed}" ;;
        29-8x64d-seed*) echo "--depth 29 --cardinality 8 --base-channels 64 --seed ${1##*seed}" ;;
    esac
}
selected=()
for name in "${names[@]}"; do
    if [ -z "$only" ] || [[ ",$only," == *",$name,"* ]]; then selected+=("$name"); fi
done
for name in ${only//,/ }; do
    [[ " ${names[*]} " == *" $name "* ]] || { echo "launch/reproduce.sh: --only $name: not a run here; the runs are ${names[*]}" >&2; exit 2; }
done
case "$via" in
    local | slurm) ;;
    cluster) [ -n "$hostfile" ] || { echo "launch/reproduce.sh: --via cluster needs --hostfile FILE (see hostfiles/)" >&2; exit 2; } ;;
    *) echo "launch/reproduce.sh: --via $via: expected local, cluster or slurm" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "launch/reproduce.sh: $bin is not built: run scripts/setup" >&2; exit 2; }
mkdir -p "$runs"

folders=()
for name in "${selected[@]}"; do folders+=("$runs/$name"); done
report() { "$bin" report "${folders[@]}" --out "$runs/report"; }

if [ "$via" = slurm ]; then
    ids=()
    for name in "${selected[@]}"; do
        # shellcheck disable=SC2046,SC2086
        id=$(sbatch --parsable --job-name "resnext-$name" --ntasks "$np" ${SBATCH_ARGS:-} \
            --export "ALL,RESNEXT_OUTDIR=$runs/$name" "$here/launch/slurm.sbatch" $(options_of "$name") "${extra[@]}")
        echo "reproduce: $name is Slurm job $id ($runs/$name)"
        ids+=("$id")
    done
    deps=$(IFS=:; echo "${ids[*]}")
    # shellcheck disable=SC2086
    id=$(sbatch --parsable --job-name resnext-report --ntasks 1 ${SBATCH_ARGS:-} --dependency "afterany:$deps" \
        --wrap "$(printf '%q ' "$bin" report "${folders[@]}" --out "$runs/report")")
    echo "reproduce: the report is Slurm job $id, after them: $runs/report"
    exit 0
fi

for name in "${selected[@]}"; do
    out="$runs/$name"
    resume=()
    [ -f "$out/checkpoint.safetensors" ] && resume=(--resume "$out")
    echo "reproduce: $name ${resume[*]:+(resuming) }-> $out"
    # shellcheck disable=SC2046
    set -- $(options_of "$name") --outdir "$out" "${resume[@]}" "${extra[@]}"
    status=0
    if [ "$via" = local ]; then
        RESNEXT_DDP="$bin" "$here/launch/local.sh" -np "$np" "$@" || status=$?
    else
        RESNEXT_DDP="$bin" "$here/launch/cluster.sh" --hostfile "$hostfile" -np "$np" ${threads:+--threads "$threads"} "$@" || status=$?
    fi
    if [ "$status" -ne 0 ]; then
        if [ "$status" -eq 75 ]; then
            echo "reproduce: $name stopped with a checkpoint; run the same command again to resume" >&2
        else
            echo "reproduce: $name failed with status $status" >&2
        fi
        report >/dev/null 2>&1 || true
        exit "$status"
    fi
done
report
