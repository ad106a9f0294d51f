"""Prompt images that come later.

Spaces that generate an image per prompt (unclip-h, turbo-h: a text-to-image run each, seconds on a GPU) would
make a user wait for every image before a prompt appears on the map. Instead the map stores the prompt at once
(position from its text vector, decode vector = the text vector moved across the modality gap, flagged
`pending_image`), and this worker generates the images one by one through the same work queue as decodes, as
background jobs (a click or a new prompt goes first and waits for at most the one image being made), and
stores each thumbnail, decode vector and latent as it arrives. Pending prompts are in SQLite, so a restart
picks up where the last run stopped.
"""

from __future__ import annotations

import logging
import threading

from .. import imaging
from ..jobs import QueueFull, WorkQueue
from ..spaces.base import Space
from .store import ItemRecord, Store

log = logging.getLogger(__name__)


class PromptImageWorker:
    def __init__(
        self, store: Store, space: Space, queue: WorkQueue, thumbnail_size: int, busy_retry_seconds: float = 1.0
    ):
        self.store, self.space, self.queue = store, space, queue
        self.thumbnail_size, self.busy_retry_seconds = thumbnail_size, busy_retry_seconds
        self._wake, self._stop = threading.Event(), threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="prompt-images")
        self._thread.start()
        self._wake.set()  # prompts a previous run left pending

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending (tests, shutdown); False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            try:
                while not self._stop.is_set():
                    pending = self.store.pending_images(self.space.name, limit=1)
                    if not pending:
                        break
                    self._complete(pending[0])
            except Exception:  # the store closed under us (shutdown) or broke: say so, wait for the next wake
                if not self._stop.is_set():
                    log.exception("prompt images: worker stopped on an error; pending prompts resume on restart")
            if not self._wake.is_set():
                self._idle.set()

    def _complete(self, item: ItemRecord) -> None:
        try:
            images, encoded = self.queue.run(lambda: self.space.prompt_images([item.label]), background=True)
        except QueueFull:  # users' clicks first: try again shortly
            self._stop.wait(self.busy_retry_seconds)
            return
        except Exception:
            log.exception("prompt images: generating %s failed; it keeps its text-side vector", item.id)
            self.store.complete_image(item.id, None, None, None)
            return
        latent = None if encoded.latents is None else encoded.latents[0]
        self.store.complete_image(
            item.id, encoded.vectors[0], latent, imaging.thumbnail_png(images[0], self.thumbnail_size)
        )
