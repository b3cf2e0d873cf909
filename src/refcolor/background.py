"""Decoding and encoding in background threads, overlapping the network.

``ReadAhead`` iterates a frame source in a thread, a few frames ahead of the consumer;
``BlockWriter`` runs the end of each block (chroma up-sampling, Lab -> RGB at full resolution,
given as a function by ``Colorizer.infer``) and the writer in another thread. Both queues are
bounded (``depth`` items), so memory stays constant however long the video is. PyAV, NumPy
and torch release the GIL in their heavy calls, so the threads really run beside the network.

With ``threaded=False`` the same objects do the same work inline, in the same order: the
output is identical either way (tests/test_fast_paths.py). Errors raised in a thread are
raised again in the caller at its next call.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

_END = object()


class ReadAhead:
    """Iterates ``source`` in a background thread, at most ``depth`` items ahead.

    ``seconds`` is the time spent producing items (decoding), in whichever thread did it.
    Call ``close()`` (or use ``with``) before closing the source itself.
    """

    def __init__(self, source: Iterable, depth: int = 8, threaded: bool = True) -> None:
        self.source = source
        self.threaded = threaded
        self.seconds = 0.0
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        it = iter(self.source)
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                finally:
                    self.seconds += time.perf_counter() - start
                self._put((item, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put((None, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            self._put((_END, None))

    def _put(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator:
        if not self.threaded:
            it = iter(self.source)
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.seconds += time.perf_counter() - start
                yield item
        if self._thread is not None:
            raise RuntimeError("ReadAhead can be iterated once")
        self._thread = threading.Thread(target=self._run, name="refcolor-decode", daemon=True)
        self._thread.start()
        while True:
            item, exc = self._queue.get()
            if exc is not None:
                raise exc
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlockWriter:
    """Finishes blocks and writes their frames to ``writer`` in a background thread.

    ``write_block(finish, pts)`` queues a block: ``finish()`` returns its N,H,W,3 uint8 frames.
    ``sync()`` waits until everything queued is written; ``end_segment``, ``close`` and
    ``abort`` are passed on to ``writer`` after it. ``seconds`` is the time spent in the writer's
    ``write``, ``end_segment`` and ``close`` (encoding, with the encoder's final flush).
    """

    def __init__(self, writer, depth: int = 2, threaded: bool = True) -> None:
        self.writer = writer
        self.threaded = threaded
        self.seconds = 0.0
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="refcolor-encode", daemon=True)
            self._thread.start()

    def _write(self, finish: Callable[[], np.ndarray], pts: list) -> None:
        frames = finish()
        start = time.perf_counter()
        for rgb, p in zip(frames, pts):
            self.writer.write(rgb, pts=p)
        self.seconds += time.perf_counter() - start

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _END:
                    return
                if self._error is None:  # after an error, later blocks are dropped
                    self._write(*job)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write_block(self, finish: Callable[[], np.ndarray], pts: list) -> None:
        if not self.threaded:
            self._write(finish, pts)
            return
        self._raise()
        self._queue.put((finish, list(pts)))

    def sync(self) -> None:
        if self.threaded:
            self._queue.join()
            self._raise()

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_END)
            self._thread.join()

    def _timed(self, method: Callable, *args) -> None:
        start = time.perf_counter()
        try:
            method(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def end_segment(self, memory) -> None:
        self.sync()
        self._timed(self.writer.end_segment, memory)

    def close(self) -> None:
        self.sync()
        self._stop()
        self._timed(self.writer.close)

    def abort(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._error = self._error or RuntimeError("aborted")  # drop what is still queued
            self._stop()
        self.writer.abort()

    def finish(self) -> None:
        """Waits for the queued blocks and stops the thread (the writer stays open)."""
        self.sync()
        self._stop()
