"""The bounded work queue in front of the model, with priority lanes.

Model calls (encode, decode) run one at a time per space: diffusers schedulers hold state, and one device
gains nothing from interleaving. At most `capacity` calls may wait; beyond that `QueueFull` is raised at
once (the API turns it into 429 with Retry-After) instead of queueing without bound.

Lanes: a job starts only when no job of a more urgent lane waits. CLICK (people waiting for a picture: clicks,
paths, uploads) goes first, then TILE (terrain tiles), then BACKGROUND (prompt pictures). Tile work runs as
many short slices (`run_steps`: one denoising step of a batch each, the blending and encoding around them
too), so a click waits for at most one slice, never for a whole tile, and no tile work runs beside it. Terrain admission (app/maps/terrain.py) bounds tile work; tiles do not take the
capacity that clicks need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from .errors import LatentmapError

T = TypeVar("T")

CLICK, TILE, BACKGROUND = 0, 1, 2
LANES = (CLICK, TILE, BACKGROUND)


class QueueFull(LatentmapError, RuntimeError):
    status = 429

    def __init__(self, retry_after: int, what: str = "the model is busy"):
        super().__init__(f"{what}; try again in {retry_after} s")
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
        self._waiting = [0] * len(LANES)  # jobs waiting for the device, per lane
        self._recent: list[float] = []  # durations of recent jobs, for Retry-After
        self.started = [0] * len(LANES)  # jobs (slices) started per lane, for tests and benchmarks

    def run(
        self,
        fn: Callable[[], T],
        gone: Callable[[], bool] | None = None,
        background: bool = False,
        lane: int | None = None,
    ) -> T:
        """Run `fn` when the device is free. `gone()` is asked just before: a client that disconnected while
        waiting gives its slot back without its job running. `background` (= lane BACKGROUND) jobs start only
        when no one's request is waiting, so a click waits for at most the one background job already running."""
        lane = (BACKGROUND if background else CLICK) if lane is None else lane
        if not self._slots.acquire(blocking=False):
            raise QueueFull(self.retry_after())
        try:
            return self._on_device(fn, gone, lane)
        finally:
            self._slots.release()

    def run_steps(self, steps: Iterator[T | None], gone: Callable[[], bool] | None = None, lane: int = TILE) -> T:
        """Drive `steps` (e.g. Space.decode_steps) one slice per turn on the device, in `lane`; more urgent
        lanes go between slices. Returns the last value it yielded. `gone()` is asked before every slice: work
        for a client that left stops there. Not bounded by `capacity`: the caller admits this work."""
        result = None
        try:
            while True:
                try:
                    value = self._on_device(lambda: next(steps), gone, lane)
                except StopIteration:
                    return result
                if value is not None:
                    result = value
        finally:
            close = getattr(steps, "close", None)
            if close is not None:
                close()

    def _on_device(self, fn: Callable[[], T], gone: Callable[[], bool] | None, lane: int) -> T:
        with self._device:
            self._waiting[lane] += 1
            try:
                while self._busy or any(self._waiting[more_urgent] for more_urgent in range(lane)):
                    self._device.wait()
            finally:
                self._waiting[lane] -= 1
            self._busy = True
            self.started[lane] += 1
        try:
            if gone is not None and gone():
                raise ClientGone("client disconnected before its job ran")
            start = time.perf_counter()
            try:
                return fn()
            finally:
                if lane != TILE:  # tile slices are short; Retry-After speaks of whole jobs
                    self._recent = (self._recent + [time.perf_counter() - start])[-20:]
        finally:
            with self._device:
                self._busy = False
                self._device.notify_all()

    def waiting(self, lane: int) -> int:
        with self._device:
            return self._waiting[lane]

    def retry_after(self) -> int:
        typical = sorted(self._recent)[len(self._recent) // 2] if self._recent else 1.0
        return max(1, int(round(typical * 2)))
