#!/usr/bin/env bash
# Kills a random rank of a training run with SIGKILL at random moments, K times, resuming each
# time from what the run left, with the process count taken in turn from --procs; then checks
# that the run ends where an uninterrupted one does and that metrics.jsonl has every epoch once.
#   scripts/fault-injection.sh [--kills 3] [--procs "1 2 4"] [--seed 1] --outdir DIR -- TRAIN_OPTIONS...
# TRAIN_OPTIONS are resnext-ddp train's (--data-dir, the model, --epochs, --checkpoint-steps, ...;
# not --outdir or --resume). The final model must equal, byte for byte, that of a run without
# kills that stops (--max-steps) and resumes at the same steps with the same process counts:
# what a kill cost is only the steps since the last checkpoint, which are done again exactly.
# Where every segment ran with the first process count, that is the uninterrupted run itself.
# (Across process counts the sums' order, and so the rounding, differs: docs/design.md.) Prints
# one line per segment; exits 0 when the checks hold. Another binary: RESNEXT_DDP.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(readlink -f "${RESNEXT_DDP:-$here/.build/release/resnext-ddp}")"
kills=3 procs="1 2 4" seed=1 outdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kills) kills="$2"; shift 2 ;;
        --procs) procs="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --outdir) outdir="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "fault-injection: unknown option $1 (train options go after --)" >&2; exit 2 ;;
    esac
done
[ -n "$outdir" ] || { echo "fault-injection: --outdir DIR is required" >&2; exit 2; }
[[ "$kills" =~ ^[0-9]+$ ]] || { echo "fault-injection: --kills must be a number, got '$kills'" >&2; exit 2; }
read -r -a counts <<<"$procs"
[ "${#counts[@]}" -ge 1 ] || { echo "fault-injection: --procs needs at least one process count" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
RANDOM=$seed
reference="$outdir/reference" run="$outdir/run"
rm -rf "$reference" "$run" "$outdir/replay" "$outdir/log"
mkdir -p "$outdir"
log="$outdir/log"
train() { # processes outdir extra-options...
    local p=$1 out=$2; shift 2
    mpirun -np "$p" --oversubscribe "$bin" train "$@" --outdir "$out" >>"$log" 2>&1
}
# the step the last run in the log resumed from (0: it started afresh)
resumed_at() { sed -n 's/^resuming from .* at step \([0-9]*\)$/\1/p' "$log" | tail -1 | grep . || echo 0; }
epochs_logged() { [ -f "$1/metrics.jsonl" ] && wc -l <"$1/metrics.jsonl" || echo 0; }
resume() { [ -f "$run/checkpoint.safetensors" ] && echo --resume "$run" || true; }

train "${counts[0]}" "$reference" "$@" || { echo "fault-injection: the uninterrupted run failed (see $log)" >&2; exit 1; }
same=1 schedule=()  # "processes start-step" of each segment
for k in $(seq 1 "$kills"); do
    p=${counts[$(( (k - 1) % ${#counts[@]} ))]}
    [ "$p" = "${counts[0]}" ] || same=0
    start=$(epochs_logged "$run")
    echo "== segment $k" >>"$log"
    # shellcheck disable=SC2046
    train "$p" "$run" "$@" $(resume) &
    job=$!
    # a random moment once this segment has logged an epoch of its own
    while kill -0 "$job" 2>/dev/null && [ "$(epochs_logged "$run")" -le "$start" ]; do sleep 0.05; done
    sleep "0.$(( RANDOM % 30 ))"
    ranks=()
    for pid in $(pgrep -f -- "--outdir $run" || true); do
        [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$bin" ] && ranks+=("$pid")
    done
    if [ ${#ranks[@]} -eq 0 ]; then
        wait "$job" || true
        echo "segment $k: $p process(es) finished before the kill"
        break
    fi
    victim=${ranks[$(( RANDOM % ${#ranks[@]} ))]}
    kill -KILL "$victim"
    wait "$job" && status=0 || status=$?
    schedule+=("$p $(resumed_at)")
    echo "segment $k: $p process(es), SIGKILL to pid $victim after epoch $(epochs_logged "$run"), mpirun exited $status"
done
p=${counts[$(( kills % ${#counts[@]} ))]}
[ "$p" = "${counts[0]}" ] || same=0
echo "== last segment" >>"$log"
# shellcheck disable=SC2046
train "$p" "$run" "$@" $(resume) || { echo "fault-injection: the last segment failed (see $log)" >&2; exit 1; }
schedule+=("$p $(resumed_at)")
echo "last segment: $p process(es), finished"

# every epoch exactly once, in order
expected=$(wc -l <"$reference/metrics.jsonl")
got=$(sed 's/.*"epoch":\([0-9]*\).*/\1/' "$run/metrics.jsonl" | tr '\n' ' ')
want=$(seq 1 "$expected" | tr '\n' ' ')
[ "$got" = "$want" ] || { echo "fault-injection: metrics.jsonl holds epochs '$got', expected '$want'" >&2; exit 1; }
if [ "$same" = 1 ]; then
    expected_model="$reference/model.safetensors" what="the uninterrupted run's"
else
    # the same schedule without kills: each segment stops where the next one resumed
    replay="$outdir/replay"
    echo "== replay" >>"$log"
    for i in "${!schedule[@]}"; do
        read -r p start <<<"${schedule[$i]}"
        stop=""
        if [ $(( i + 1 )) -lt ${#schedule[@]} ]; then
            read -r _ stop <<<"${schedule[$(( i + 1 ))]}"
            [ "$stop" -gt "$start" ] || continue  # a segment killed before its first checkpoint
        fi
        extra=()
        [ "$i" -eq 0 ] || extra+=(--resume "$replay")
        [ -z "$stop" ] || extra+=(--max-steps "$stop")
        train "$p" "$replay" "$@" "${extra[@]}" || { echo "fault-injection: the replay failed (see $log)" >&2; exit 1; }
    done
    expected_model="$replay/model.safetensors" what="a run without kills that stops and resumes at the same steps with the same process counts"
fi
cmp -s "$expected_model" "$run/model.safetensors" \
    || { echo "fault-injection: the final model differs from $what" >&2; exit 1; }
echo "fault-injection: the final model equals $what, byte for byte; every epoch logged once"
