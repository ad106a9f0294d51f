"""HTML pages: the map list (`/`) and one map (`/m/{map_id}`).

The pages render without touching the database: the map page gets only `map_id` and its JavaScript fetches
the metadata and points from the JSON API (an unknown map shows a readable error on the page).
"""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.settings import TEMPLATES_DIR

MAP_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")

router = APIRouter()
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"page": "index"})


@router.get("/m/{map_id}", response_class=HTMLResponse, include_in_schema=False)
def map_page(request: Request, map_id: str) -> HTMLResponse:
    if not MAP_ID_RE.fullmatch(map_id):
        raise HTTPException(status_code=404, detail="Not a map id")
    return templates.TemplateResponse(request, "map.html", {"page": "map", "map_id": map_id})
