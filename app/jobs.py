"""The bounded work queue in front of the model.

Model calls (encode, decode) run one at a time per space: diffusers schedulers hold state, and one device
gains nothing from interleaving. At most `capacity` calls may wait; beyond that `QueueFull` is raised at
once (the API turns it into 429 with Retry-After) instead of queueing without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import LatentmapError

T = TypeVar("T")


class QueueFull(LatentmapError, RuntimeError):
    status = 429

    def __init__(self, retry_after: int):
        super().__init__(f"the model is busy; try again in {retry_after} s")
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ClientGone(LatentmapError, RuntimeError):
    """The client went away while its job waited; the job was not run."""

    status = 408


class WorkQueue:
    def __init__(self, capacity: int):
        self._slots = threading.BoundedSemaphore(capacity)
        self._device = threading.Condition()
        self._busy = False
        self._people_waiting = 0  # foreground jobs waiting for the device: background work lets them go first
        self._recent: list[float] = []  # durations of recent jobs, for Retry-After

    def run(self, fn: Callable[[], T], gone: Callable[[], bool] | None = None, background: bool = False) -> T:
        """Run `fn` when the device is free. `gone()` is asked just before: a client that disconnected while
        waiting gives its slot back without its job running. `background` jobs (prompt pictures) start only
        when no one's request is waiting, so a click waits for at most the one background job already running."""
        if not self._slots.acquire(blocking=False):
            raise QueueFull(self.retry_after())
        try:
            with self._device:
                if not background:
                    self._people_waiting += 1
                try:
                    while self._busy or (background and self._people_waiting):
                        self._device.wait()
                finally:
                    if not background:
                        self._people_waiting -= 1
                self._busy = True
            try:
                if gone is not None and gone():
                    raise ClientGone("client disconnected before its job ran")
                start = time.perf_counter()
                try:
                    return fn()
                finally:
                    self._recent = (self._recent + [time.perf_counter() - start])[-20:]
            finally:
                with self._device:
                    self._busy = False
                    self._device.notify_all()
        finally:
            self._slots.release()

    def retry_after(self) -> int:
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        return max(1, int(round(typical * 2)))
