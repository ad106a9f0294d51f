"""The HTTP API: one router per resource. HTTP only: parse, check access, call the domain (app/maps), shape
the answer (models in schemas.py). Domain errors become HTTP errors in errors.py."""

from __future__ import annotations

from . import (
    column_routes,
    decode,
    explore,
    exports,
    health,
    items,
    maps,
    presentations,
    quiz,
    terrain,
    tile_routes,
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
    tile_routes.router,
    column_routes.router,
    terrain.router,
]
