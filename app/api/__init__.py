"""The HTTP API: one router per resource. HTTP only: parse, check access, call the domain (app/maps), shape
the answer (models in schemas.py). Domain errors become HTTP errors in errors.py."""

from __future__ import annotations

from . import (
    columns,
    decode,
    explore,
    exports,
    health,
    items,
    maps,
    presentations,
    quiz,
    terrain,
    tiles,
    tours,
    variants,
)

ROUTERS = [
    health.router,
    maps.router,
    items.router,
    decode.router,
    explore.router,
    exports.router,
    variants.router,
    presentations.router,
    tours.router,
    quiz.router,
    tiles.router,
    columns.router,
    terrain.router,
]
