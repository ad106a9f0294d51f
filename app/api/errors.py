"""Errors → HTTP, in one place: every domain error (app/errors.py) answers its own `status` with a JSON
`detail` (and its headers, e.g. Retry-After)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import LatentmapError


def install(app: FastAPI) -> None:
    async def handle(request: Request, exc: LatentmapError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(LatentmapError, handle)
