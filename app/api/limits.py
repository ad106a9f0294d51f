"""Request-body limits, enforced while the body streams in (not after it has all been read), and the one
validation-error handler.

- Multipart uploads (images, bundles) may be `max_request_bytes`; every other body (JSON) `max_json_bytes`:
  a 1.5 MB list of zeros is refused before anything parses it.
- The whole body must arrive within `body_timeout_seconds`: a client trickling a byte at a time is cut off
  with 408 instead of holding a connection and a worker.
- A JSON body of `large_json_bytes` or more is parsed off the event loop, in one worker thread, one body at a
  time, and that thread then rests as long as the parse took: json's C scanner holds the GIL for a whole body
  (~25-80 ms for 1 MiB of small lists), so while it parses nothing else in the process runs; one at a time, at
  most half the time, keeps the loop answering (/api/health) under a flood. The thread also checks the body
  against the route's model (so a bad body is freed there too), and refuses one with more than
  `max_json_containers` `[` and `{` (422) unparsed. At most `max_large_json_in_flight` such bodies are read or
  parsed at once; beyond, 429 with Retry-After, before their body is read. Small bodies (every ordinary request)
  are parsed by FastAPI as before.
- A request that fails validation answers one short message (the first error and how many more), never an
  echo of every error (a 500,000-element list made a 49 MB error body).
"""

from __future__ import annotations

import asyncio
import email.message
import gc
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from ..jobs import QueueFull

# A refused oversized or surplus large body is answered after this long: a client that retries at once is held
# (its body unread; TCP holds the rest back) instead of making the event loop answer it hundreds of times a second.
REFUSAL_DELAY_SECONDS = 0.5


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
            await asyncio.sleep(REFUSAL_DELAY_SECONDS)  # as for a large body refused: no instant retries
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


def _is_json(request: Request) -> bool:
    """The content types FastAPI itself parses as JSON (with its default strict content type)."""
    value = request.headers.get("content-type")
    if not value:
        return False
    message = email.message.Message()
    message["content-type"] = value
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class LargeBodiesBusy(QueueFull):
    """429 for a large body beyond the parser's bound. The connection closes after the answer: the server does
    not read (through h11, in Python, on the event loop) the rest of a body it refused."""

    @property
    def headers(self) -> dict[str, str]:
        return {**super().headers, "Connection": "close"}


class LargeJSONParser:
    """Parses large JSON bodies in one worker thread, one at a time, resting after each parse as long as it
    took; at most `max_in_flight` large bodies read, parsed or waiting at once (429 beyond)."""

    def __init__(self, min_bytes: int, max_in_flight: int, max_containers: int, max_per_second: float):
        self.min_bytes, self.max_in_flight, self.max_containers = min_bytes, max_in_flight, max_containers
        self.max_per_second = max_per_second
        self.in_flight = 0  # only touched on the event loop
        self._executor: ThreadPoolExecutor | None = None  # made on first use, again after close()
        self._next_start = 0.0  # monotonic time before which the worker does not start the next parse

    async def reserve(self) -> None:
        if self.in_flight >= self.max_in_flight:
            await asyncio.sleep(REFUSAL_DELAY_SECONDS)
            raise LargeBodiesBusy(1, "too many large request bodies in flight")
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    async def parse(self, body: bytes, check: Callable[[Any], list] | None = None):
        """The parsed body, or RequestValidationError with `check`'s errors (or FastAPI's JSON decode error)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="large-json")
        parsed, errors = await asyncio.get_running_loop().run_in_executor(self._executor, self._parse, body, check)
        if errors:
            raise RequestValidationError(errors)
        return parsed

    def _parse(self, body: bytes, check: Callable[[Any], list] | None):
        rest = self._next_start - time.monotonic()
        if rest > 0:
            time.sleep(rest)  # the GIL is free meanwhile: the event loop runs
        start = time.monotonic()
        # A MiB of small lists is ~10^5 new containers: the collector's passes over them took 3x the parse itself.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._parse_and_check(body, check)
        finally:  # what the body became is freed by now (in this thread): the rest counts it too
            if collecting:
                gc.enable()
            end = time.monotonic()
            self._next_start = max(end + (end - start), start + 1 / self.max_per_second)

    def _parse_and_check(self, body: bytes, check: Callable[[Any], list] | None):
        # Every array and object costs ~1 µs to make and as much to free (holding the GIL); a request within the
        # settings' list lengths has at most a few thousand. Counted as bytes (a bracket inside a string counts too).
        containers = body.count(b"[") + body.count(b"{")
        if containers > self.max_containers:
            return None, [
                {
                    "type": "too_long",
                    "loc": ("body",),
                    "msg": f"a JSON body may hold at most {self.max_containers} arrays and objects, not {containers}",
                }
            ]
        try:
            parsed = json.loads(body)
        except json.JSONDecodeError as exc:  # the error FastAPI raises for a body it parses itself
            return None, [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        errors = check(parsed) if check else []
        if not errors:
            return parsed, []
        short = [{k: v for k, v in e.items() if k != "input"} for e in errors]
        del parsed, errors  # a body that fails is freed here, in this thread, not on the event loop
        return None, short

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class BoundedJSONRoute(APIRoute):
    """The route class of every router: on a route with a body model, a JSON body of at least the app's
    `LargeJSONParser.min_bytes` (by Content-Length, or as read when chunked) is parsed by that parser instead of on
    the event loop, and checked against the route's body model there; FastAPI then validates the parsed value
    (Starlette's Request keeps it) with the same models and messages."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler
        check = None
        params = self.dependant.body_params
        if len(params) == 1 and not self._embed_body_fields:
            # The body's own model, checked in the parser's thread with the errors FastAPI would give (a valid
            # body is validated again by FastAPI: cheap, every list in it is bounded by the settings).
            field = params[0]

            def check(value):
                return field.validate(value, {}, loc=("body",))[1]

        async def bounded_handler(request: Request):
            parser: LargeJSONParser | None = getattr(request.app.state, "large_json", None)
            if parser is None or not _is_json(request):
                return await handler(request)
            declared = request.headers.get("content-length", "")
            reserved = declared.isdigit() and int(declared) >= parser.min_bytes
            if reserved:
                await parser.reserve()  # refused before its body is read
            try:
                body = await request.body()
                if len(body) >= parser.min_bytes:
                    if not reserved:
                        await parser.reserve()
                        reserved = True
                    request._json = await parser.parse(body, check)
            finally:
                if reserved:
                    parser.release()
            return await handler(request)

        return bounded_handler
