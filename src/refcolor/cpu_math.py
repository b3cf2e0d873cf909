"""CPU floating-point settings shared by inference, training and evaluation."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator

import torch

_lock = threading.Lock()
_runtime: list = []  # [share or None] (_share_fp_env), found once


def flush_denormals() -> bool:
    """Flush denormal floats to zero on this thread and every intra-op (OpenMP) thread of its pool.

    At tau = 0.01 the non-local softmax's logits span about +-100, so most of its exponentials
    underflow into denormal floats, which this CPU processes many times slower than normal ones
    (a training step of the learned matching: 16.6-22.2 s -> 2.8-3.3 s; ``warp`` 21 frames at
    216x384: 722 -> 492 ms/frame; ../shared/QUALITY-NOTES.md). Their share of a softmax-weighted
    sum is below 1e-37 (tests/test_cpu_math.py). Called explicitly by the trainer, the matching
    stage and ``refcolor evaluate``, never at import; ``Colorizer`` flushes only while its
    network runs (``denormals_flushed``). Returns whether every thread that torch's intra-op
    work uses now flushes (see ``set_flush_denormal_everywhere``).
    """
    return set_flush_denormal_everywhere(True)


def set_flush_denormal_everywhere(on: bool) -> bool:
    """``torch.set_flush_denormal(on)`` on the calling thread and on each of its OpenMP workers.

    The flag is a bit of each thread's MXCSR register. ``torch.set_flush_denormal`` sets it on
    the calling thread only; the intra-op workers (OpenMP, which ``at::parallel_for``, MKL and
    oneDNN run on) that already exist keep theirs, and threads created later copy their creator's.
    A parallel op then flushes in one part of a tensor and not in another, and which part depends
    on which threads happened to exist when the flag was set (tests/test_cpu_math.py). So the
    calling thread's floating-point environment is then copied to every thread of its OpenMP team
    in one parallel region (GNU libgomp's ``GOMP_parallel`` running ``fesetenv``; libgomp is the
    runtime of torch's Linux wheels), which covers every worker a torch op of this thread can use.
    Returns False, and leaves flushing off on this thread, where that cannot be done (no denormal
    control on this CPU, or more than one intra-op thread with another OpenMP runtime or a second
    libgomp loaded): a mixed state would make the output depend on the threads.
    """
    if not torch.set_flush_denormal(on):
        return False
    threads = torch.get_num_threads()
    if threads <= 1:
        return True
    share = _share_fp_env()
    if share is None:
        torch.set_flush_denormal(False)
        return False
    share(threads)
    return True


def flushing() -> bool:
    """Whether the calling thread flushes denormals (a denormal float32 literal becomes 0)."""
    return torch.tensor([1e-40], dtype=torch.float32).item() == 0.0


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[bool]:
    """Flush denormals on this thread and its intra-op workers inside the block; afterwards every
    one of them is set back to what the calling thread had before. Yields whether it flushes."""
    if not enabled:
        yield False
        return
    before = flushing()
    on = set_flush_denormal_everywhere(True)
    try:
        yield on
    finally:
        if on and not before:
            set_flush_denormal_everywhere(False)
        elif before and not on:  # the workers could not be reached: give the caller its own flag back
            torch.set_flush_denormal(True)


def _share_fp_env() -> Callable[[int], None] | None:
    """``share(n)``: the calling thread's floating-point environment (``fegetenv``: MXCSR with its
    flush bits, rounding mode) copied to each of the n threads of its OpenMP team (``fesetenv``
    run by ``GOMP_parallel``, no Python in the workers), or None when torch does not run on
    libgomp (other OpenMP runtimes, other systems)."""
    with _lock:
        if not _runtime:
            _runtime.append(_find_gomp())
        return _runtime[0]


def _find_gomp() -> Callable[[int], None] | None:
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:  # the libgomp that libtorch loaded (torch/lib/libgomp*.so.1 in the wheels)
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libgomp" in line}
    except OSError:
        return None
    own = {p for p in paths if p.startswith(os.path.dirname(torch.__file__) + os.sep)}
    if len(own or paths) != 1:  # another package's libgomp beside torch's: which is torch's is unknown
        return None
    try:
        gomp_parallel = ctypes.CDLL((own or paths).pop()).GOMP_parallel
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fegetenv, fesetenv = libm.fegetenv, libm.fesetenv
    except (OSError, AttributeError):
        return None
    gomp_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp_parallel.restype = None
    fegetenv.argtypes = [ctypes.c_void_p]
    set_env = ctypes.cast(fesetenv, ctypes.c_void_p)  # void fn(void *data) for GOMP_parallel

    def share(n: int) -> None:
        env = ctypes.create_string_buffer(256)  # fenv_t: 32 bytes on x86-64, less elsewhere
        if fegetenv(env) != 0:
            raise OSError("fegetenv failed")
        gomp_parallel(set_env, env, n, 0)  # the GIL is released during the call

    return share
