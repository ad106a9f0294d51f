"""GET /docs: Swagger UI from vendored files (static/vendor, version in the name), not from a public CDN on the
origin that holds the maps' edit keys; its start-up code is a static file, so the page needs no inline script."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

SWAGGER_UI_VERSION = "5.35.0"  # npm swagger-ui-dist; files static/vendor/swagger-ui*-{version}.*

router = APIRouter()

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>latentmap API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/static/vendor/swagger-ui-{SWAGGER_UI_VERSION}.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/static/vendor/swagger-ui-bundle-{SWAGGER_UI_VERSION}.js"></script>
  <script src="/static/docs/swagger-init.js"></script>
</body>
</html>
"""


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(PAGE)
