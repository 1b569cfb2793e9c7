"""Prints the scalars of a TensorBoard run folder with TensorBoard's own reader (pip install tensorboard).

  python scripts/tensorboard_read.py RUN/tb
"""
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
tags = acc.Tags()['scalars']
print('tags:', tags)
for t in tags:
    print(t, [(e.step, round(e.value, 5)) for e in acc.Scalars(t)])
