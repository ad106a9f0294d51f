"""Security headers on every response, and no Host header echoed back in redirects.

The pages run no inline script: the Content-Security-Policy allows scripts from this origin only, plus the
hashes of the templates' inline import maps (JSON that maps module names to files, not code). Nothing may
frame the pages (the owner's page holds the edit key), no response is content-sniffed, and no Referer leaves
the site (share links carry keys in their fragment; a Referer would not, but other paths might).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from urllib.parse import urlsplit

IMPORT_MAP = re.compile(rb'<script type="importmap">(.*?)</script>', re.DOTALL)


def import_map_hashes(templates_dir: Path) -> list[str]:
    """CSP source expressions ('sha256-…') for every inline import map in the templates, as written there."""
    found = set()
    for template in sorted(Path(templates_dir).glob("*.html")):
        for body in IMPORT_MAP.findall(template.read_bytes()):
            found.add("'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'")
    return sorted(found)


def content_security_policy(templates_dir: Path) -> str:
    """No inline script and no eval: scripts come from this origin only (and inline import maps by hash)."""
    scripts = ["'self'", *import_map_hashes(templates_dir)]
    return "; ".join(
        [
            "default-src 'self'",
            "script-src " + " ".join(scripts),
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class SecurityHeaders:
    """ASGI middleware: the headers below on every HTTP response, and a redirect's absolute Location that
    points back at the request's own Host (Starlette's trailing-slash redirect builds one from the Host
    header) made relative, so no client-chosen host is ever sent back."""

    def __init__(self, app, csp: str):
        self.app = app
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in {name for name, _ in self.headers}
                ]
                headers = [(k, _relative(v) if k.lower() == b"location" else v) for k, v in headers]
                message = {**message, "headers": headers + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _relative(location: bytes) -> bytes:
    """An absolute URL → its path and query (this app never redirects to another site)."""
    try:
        parts = urlsplit(location.decode("latin-1"))
    except ValueError:
        return b"/"
    if not parts.scheme and not parts.netloc:
        return location
    path = parts.path or "/"
    if path.startswith("//"):  # "//evil.example" would be read as another host
        path = "/" + path.lstrip("/")
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
