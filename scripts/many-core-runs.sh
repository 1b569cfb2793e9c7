#!/usr/bin/env bash
# PyTorch DDP (gloo) and `mpirun resnext-ddp bench` side by side on a many-core machine, and
# resnext-ddp's scaling from 1 to 16 processes (docs/performance.md, "On a 16-core AVX-512
# Xeon"). Each section prints what it ran and one JSON line per run (or the whole output to
# $OUT/NAME.txt); everything is also appended to $OUT/log.
#   scripts/many-core-runs.sh info s16x2 s16x8 s16x16 s64x8 s64x8t2 scale16 alt16 alt64 layers16 layers64 blas64 prof64 tune16 tune16x16 tune64 torch64 alttuned16 alttuned64
# (alttuned16/64: the default paths against the tuned ones, step by step in one run: what
# --tune-convolutions buys there)
# Environment: RESNEXT_DDP (binary, default .build/release/resnext-ddp), TORCH_PYTHON (a python
# with torch, default /tmp/torchref/bin/python), RESNEXT_REFERENCE (bench_torch.py's folder,
# default ../shared/reference), OUT (default runs/many-core), OPENBLAS_CORETYPE (default: SkylakeX
# where the CPU has AVX-512, else OpenBLAS's own choice), LD_LIBRARY_PATH (passed to the ranks).
# Processes are bound one per core (PyTorch through scripts/pin_torch.py); one thread each
# unless a section says otherwise.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${RESNEXT_DDP:-$here/.build/release/resnext-ddp}"
PY="${TORCH_PYTHON:-/tmp/torchref/bin/python}"
export RESNEXT_REFERENCE="${RESNEXT_REFERENCE:-$here/../shared/reference}"
OUT="${OUT:-$here/runs/many-core}"; mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "error: no resnext-ddp binary at $BIN; run scripts/setup or set RESNEXT_DDP" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME:-lo}"
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
# one logical CPU per physical core, in core order
CPUS=$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -k1,1n | awk -F, '!seen[$2]++ {print $1}' | paste -sd,)
NCORES=$(echo "$CPUS" | tr , '\n' | wc -l)
MPIX=""
log() { echo "$@" | tee -a "$OUT/log"; }
torch() { # processes threads config batch steps
    local p=$1 t=$2 cfg=$3 b=$4 s=$5
    log "## torch np=$p threads=$t $cfg batch=$b"
    OMP_NUM_THREADS=$t PIN_THREADS=$t PIN_CPUS=$CPUS timeout 300 "$PY" -m torch.distributed.run --standalone \
        --nproc_per_node="$p" "$here/scripts/pin_torch.py" --config "$cfg" --batch "$b" --threads "$t" --warmup 1 --steps "$s" \
        2>>"$OUT/torch.err" | grep '^{' | tee -a "$OUT/log"
}
mpi() { # seconds processes, then mpirun's environment and the program
    local t=$1 p=$2; shift 2
    local hw=""; [ "$p" -le "$NCORES" ] || hw="--use-hwthread-cpus"
    timeout "$t" mpirun -np "$p" --bind-to core --map-by core $hw $MPIX -x LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}" -x OPENBLAS_NUM_THREADS=1 \
        ${OPENBLAS_CORETYPE:+-x OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} "$@"
}
ours() { # processes config batch steps [bench options]: one JSON line
    local p=$1 cfg=$2 b=$3 s=$4; shift 4
    local d c w; IFS=, read -r d c w <<<"$cfg"
    log "## ours np=$p $cfg batch=$b $*"
    local r; r=$(mpi 300 "$p" "$BIN" bench --depth "$d" --cardinality "$c" --base-channels "$w" --batch-size "$b" \
        --bn-group $(( b / p < 16 ? b / p : 16 )) --threads 1 --steps "$s" --json "$@" 2>>"$OUT/ours.err" | grep '^{')
    if [ -n "$r" ]; then log "$r"
    elif [ -z "$MPIX" ]; then
        # containers that forbid cross-process memory access need Open MPI's copy-in/copy-out path
        MPIX="--mca btl_vader_single_copy_mechanism none"; log "retry with $MPIX"; ours "$p" "$cfg" "$b" "$s" "$@"
    fi
}
full() { # name processes "VAR=value ..." bench options: the whole output to $OUT/name.txt
    local name=$1 p=$2 envs=$3; shift 3
    local xs=(); for e in $envs; do xs+=(-x "$e"); done
    log "## $name np=$p $envs $*"
    mpi "${FULL_TIMEOUT:-200}" "$p" "${xs[@]}" "$BIN" bench --threads 1 "$@" > "$OUT/$name.txt" 2>&1
    log "rc=$?"; grep -E '^median|^SGEMM|^--tune|^--alternate|^all conv|^the same conv' "$OUT/$name.txt" | tee -a "$OUT/log"
}
M16="--depth 29 --cardinality 4 --base-channels 16"
M64="--depth 29 --cardinality 8 --base-channels 64"
for sec in "$@"; do
    t0=$(date +%s)
    case $sec in
    info) { date; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L3"; echo "cores: $NCORES; OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-}"
            mpirun --version | head -1; "$PY" -c 'import torch; print("torch", torch.__version__)'; "$BIN" --version; } 2>&1 | tee -a "$OUT/log" ;;
    s16x2) torch 2 1 29,4,16 128 3; ours 2 29,4,16 128 3 ;;
    s16x8) torch 8 1 29,4,16 128 3; ours 8 29,4,16 128 3 ;;
    s16x16) torch 16 1 29,4,16 128 3; ours 16 29,4,16 128 3 ;;
    s64x8) torch 8 1 29,8,64 128 2; ours 8 29,8,64 128 2 ;;
    s64x8t2) torch 8 2 29,8,64 128 2; ours 16 29,8,64 128 2 ;;
    scale16) ours 1 29,4,16 128 2; ours 4 29,4,16 128 3 ;;
    alt16) for a in direct3x3 pointwise; do ours 8 29,4,16 128 6 --alternate "$a"; done ;;
    alt64) for a in direct3x3 pointwise; do ours 8 29,8,64 128 2 --alternate "$a"; done ;;
    layers16) full layers16 1 "" $M16 --batch-size 16 --steps 2 --layers ;;
    layers64) FULL_TIMEOUT=150 full layers64 1 "" $M64 --batch-size 16 --steps 1 --layers ;;
    blas64) full blas64 8 "" $M64 --batch-size 128 --steps 2 --profile --path openblas ;;
    prof64) full prof64 8 "" $M64 --batch-size 128 --steps 2 --profile ;;
    tune16) full tune16 8 "" $M16 --batch-size 128 --steps 4 --tune-convolutions ;;
    tune16x16) full tune16x16 16 "" $M16 --batch-size 128 --bn-group 8 --steps 4 --tune-convolutions ;;
    tune64) full tune64 8 "" $M64 --batch-size 128 --steps 2 --tune-convolutions ;;
    torch64) torch 8 1 29,8,64 128 2 ;;
    alttuned16) full alttuned16 8 "" $M16 --batch-size 128 --steps 6 --alternate tuned ;;
    alttuned64) FULL_TIMEOUT=300 full alttuned64 8 "" $M64 --batch-size 128 --steps 2 --alternate tuned ;;
    *) echo "error: unknown section '$sec'; see the header of $0" >&2; exit 2 ;;
    esac
    log "# section $sec took $(( $(date +%s) - t0 )) s"
done
