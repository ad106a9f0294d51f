"""create_app(settings): wires routers, static files, templates and the lifespan. Nothing else lives here."""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from . import api
from .api import docs, errors
from .api.limits import LargeJSONParser, RequestSizeLimit, install_validation_handler
from .api.responses import MAP_VERSION_HEADER
from .api.security import SecurityHeaders, content_security_policy
from .jobs import WorkQueue
from .maps import demo
from .maps.classroom import Classroom
from .maps.explore import Explorer
from .maps.service import MapService
from .maps.store import Store
from .maps.terrain import Terrain
from .maps.tiles import PointTiles
from .settings import STATIC_DIR, TEMPLATES_DIR, Settings
from .spaces.base import Space
from .spaces.registry import load_space
from .web import pages

log = logging.getLogger("latentmap")


def create_app(settings: Settings | None = None, space: Space | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.data_dir, settings.decode_cache_bytes, settings.array_dtype)
        loaded = space or load_space(settings)
        service = MapService(store, loaded, settings, WorkQueue(settings.max_queued_jobs))
        app.state.settings, app.state.service, app.state.explorer = settings, service, Explorer(service)
        app.state.tiles = PointTiles(store, settings)
        app.state.terrain = Terrain(service)
        app.state.classroom = Classroom(
            settings.max_presentation_seconds, settings.max_followers, settings, check_point=service.check_point
        )
        if settings.create_demo_map:
            demo.ensure_demo_map(service)
        if settings.warm_umap:
            # numba compiles UMAP on first use (seconds): do it now, off the request path.
            threading.Thread(target=demo.warm_umap, args=(settings,), daemon=True, name="warm-umap").start()
        # The model and libraries are millions of long-lived objects: keep them out of the collector's full passes,
        # which a request body of many small lists triggers (a 1 MB body took 1-2 s of event-loop time with them).
        gc.freeze()
        log.info("latentmap ready: space %s on %s, data in %s", loaded.name, loaded.device, settings.data_dir)
        yield
        service.close()
        app.state.large_json.close()
        store.close()

    app = FastAPI(
        title="latentmap",
        description="Map a latent space; decode any point to pixels.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.large_json = LargeJSONParser(
        settings.large_json_bytes,
        settings.max_large_json_in_flight,
        settings.max_json_containers,
        settings.max_large_json_per_second,
    )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[MAP_VERSION_HEADER, "Retry-After"],
        )
    app.add_middleware(
        RequestSizeLimit,
        max_bytes=settings.max_request_bytes,
        max_json_bytes=settings.max_json_bytes,
        timeout=settings.body_timeout_seconds,
    )
    app.add_middleware(SecurityHeaders, csp=content_security_policy(TEMPLATES_DIR))
    errors.install(app)
    install_validation_handler(app, settings.max_error_chars)
    app.include_router(docs.router)
    for router in api.ROUTERS:
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
