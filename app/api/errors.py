"""Domain errors → HTTP errors with a JSON `detail`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..jobs import ClientGone, QueueFull
from ..maps.service import Rejected, SpaceMismatch
from ..maps.store import InvalidId, NotFound, StaleVersion


def install(app: FastAPI) -> None:
    def handler(status: int):
        async def handle(request: Request, exc: Exception):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handle

    app.add_exception_handler(Rejected, handler(422))
    app.add_exception_handler(SpaceMismatch, handler(409))
    app.add_exception_handler(StaleVersion, handler(409))
    app.add_exception_handler(NotFound, handler(404))
    app.add_exception_handler(InvalidId, handler(404))
    app.add_exception_handler(ClientGone, handler(408))

    async def queue_full(request: Request, exc: QueueFull):
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    app.add_exception_handler(QueueFull, queue_full)
