"""CPU floating-point settings shared by inference, training and evaluation."""
from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Flush denormal floats to zero on this process's CPU math (x86 with SSE3; a no-op elsewhere).

    At tau = 0.01 the non-local softmax's logits span about +-100, so most of its exponentials
    underflow into denormal floats, which this CPU processes many times slower than normal ones
    (a training step of the learned matching: 16.6-22.2 s -> 2.8-3.3 s; ``warp`` 21 frames at
    216x384: 722 -> 492 ms/frame; ../shared/QUALITY-NOTES.md). Their share of a softmax-weighted
    sum is below 1e-37 (tests/test_cpu_math.py). Called explicitly by the trainer, the matching
    stage and ``refcolor evaluate``, never at import. Not by ``Colorizer``: the flag is per-thread
    CPU state, so OpenMP workers created before the call keep denormals while later threads flush
    them, and the threaded pipeline's output then differed from the plain one in a full test run
    (tests/test_fast_paths.py); inference needs it set in every worker thread first.
    Returns whether the CPU supports it.
    """
    return bool(torch.set_flush_denormal(True))
