"""Request-body limits, enforced while the body streams in (not after it has all been read), and the one
validation-error handler.

- Multipart uploads (images, bundles) may be `max_request_bytes`; every other body (JSON) `max_json_bytes`:
  a 1.5 MB list of zeros is refused before anything parses it.
- The whole body must arrive within `body_timeout_seconds`: a client trickling a byte at a time is cut off
  with 408 instead of holding a connection and a worker.
- A request that fails validation answers one short message (the first error and how many more), never an
  echo of every error (a 500,000-element list made a 49 MB error body).
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class RequestSizeLimit:
    """ASGI middleware: 413 when Content-Length or the streamed body passes the cap for its content type,
    408 when the body takes longer than `timeout` seconds to arrive."""

    def __init__(self, app, max_bytes: int, max_json_bytes: int | None = None, timeout: float | None = None):
        self.app, self.max_bytes = app, max_bytes
        self.max_json_bytes = max_json_bytes or max_bytes
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        limit = self.max_bytes if multipart else min(self.max_json_bytes, self.max_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, 413, f"request body is larger than {limit} bytes")
        seen = 0
        started = rejected = body_done = False
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        async def counting_receive():
            nonlocal seen, rejected, body_done
            if body_done or deadline is None:  # after the body: wait for the disconnect as long as it takes
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    return await refuse(408, f"the request body did not arrive within {self.timeout:g} s")
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    return await refuse(413, f"request body is larger than {limit} bytes")
                if not message.get("more_body", False):
                    body_done = True
            return message

        async def refuse(status: int, detail: str):
            nonlocal rejected
            # Answer now, then tell the app the client is gone: whatever it does next is dropped.
            if not started and not rejected:
                rejected = True
                await self._reject(send, status, detail)
            return {"type": "http.disconnect"}

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    @staticmethod
    async def _reject(send, status: int, detail: str):
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def validation_message(errors: list, max_chars: int) -> str:
    """The first validation error as `where: what`, and how many more there are; at most `max_chars`."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
    text = f"{where}: {first.get('msg', 'invalid')}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more {'error' if len(errors) == 2 else 'errors'})"
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def install_validation_handler(app: FastAPI, max_chars: int) -> None:
    async def handle(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc.errors(), max_chars)}, status_code=422)

    app.add_exception_handler(RequestValidationError, handle)
