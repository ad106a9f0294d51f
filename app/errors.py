"""Domain errors that know their HTTP status.

Code anywhere in the app (maps, jobs, spaces) raises these; app/api/errors.py turns every one of them into
an HTTP response in one place, so the domain never imports the API layer. The message is shown to the user.
"""

from __future__ import annotations


class LatentmapError(Exception):
    """Base of the errors a request can end with: `status` is the HTTP status, the message its `detail`."""

    status = 500

    @property
    def headers(self) -> dict[str, str]:
        return {}


class Rejected(LatentmapError, ValueError):
    """Input that breaks a limit or rule."""

    status = 422


class NotFound(LatentmapError, LookupError):
    status = 404


class Forbidden(LatentmapError, PermissionError):
    """The request lacks the key that this change needs."""

    status = 403


class Conflict(LatentmapError, RuntimeError):
    """The request is valid but does not fit the current state (another space, a changed map)."""

    status = 409
