"""Runs shared/reference/bench_torch.py under torchrun with local rank r pinned to PIN_THREADS
cores taken in order from PIN_CPUS (one logical CPU per physical core), so that P processes x T
threads use P*T distinct cores, as `mpirun --bind-to core` does for resnext-ddp.
bench_torch.py's own --pin pins rank r to CPU r only (one thread per process).
    PIN_CPUS=0,1,2,3 PIN_THREADS=2 torchrun --standalone --nproc_per_node=2 pin_torch.py --config 29,4,16 ...
RESNEXT_REFERENCE names the folder of bench_torch.py (default: ../../shared/reference)."""
import os
import runpy
import sys

here = os.path.dirname(os.path.abspath(__file__))
ref = os.environ.get('RESNEXT_REFERENCE', os.path.join(here, '..', '..', 'shared', 'reference'))
t = int(os.environ.get('PIN_THREADS', '1'))
cpus = [int(c) for c in os.environ['PIN_CPUS'].split(',')]
r = int(os.environ.get('LOCAL_RANK', '0'))
os.sched_setaffinity(0, set(cpus[r * t:(r + 1) * t]))
sys.path.insert(0, ref)
sys.argv = ['bench_torch.py'] + sys.argv[1:]
runpy.run_path(os.path.join(ref, 'bench_torch.py'), run_name='__main__')
