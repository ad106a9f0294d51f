"""The bounded work queue in front of the model.

Model calls (encode, decode) run one at a time per space: diffusers schedulers hold state, and one device
gains nothing from interleaving. At most `capacity` calls may wait; beyond that `QueueFull` is raised at
once (the API turns it into 429 with Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    def __init__(self, retry_after: int):
        super().__init__(f"the model is busy; try again in {retry_after} s")
        self.retry_after = retry_after


class ClientGone(RuntimeError):
    """The client went away while its job waited; the job was not run."""


class WorkQueue:
    def __init__(self, capacity: int):
        self._slots = threading.BoundedSemaphore(capacity)
        self._device = threading.Lock()
        self._recent: list[float] = []  # durations of recent jobs, for Retry-After

    def run(self, fn: Callable[[], T], gone: Callable[[], bool] | None = None) -> T:
        """Run `fn` when the device is free. `gone()` is asked just before: a client that disconnected while
        waiting gives its slot back without its job running."""
        if not self._slots.acquire(blocking=False):
            raise QueueFull(self.retry_after())
        try:
            with self._device:
                if gone is not None and gone():
                    raise ClientGone("client disconnected before its job ran")
                start = time.perf_counter()
                try:
                    return fn()
                finally:
                    self._recent = (self._recent + [time.perf_counter() - start])[-20:]
        finally:
            self._slots.release()

    def retry_after(self) -> int:
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        return max(1, int(round(typical * 2)))
