"""Selection by polygon (a lasso) on the server, for maps the browser does not hold whole."""

from __future__ import annotations

import numpy as np

from .service import Rejected


def check_polygon(polygon: list[list[float]], max_vertices: int) -> np.ndarray:
    """[[x, y], ...] → (k, 2) float64; Rejected (422) for fewer than 3 vertices, too many, or non-finite ones."""
    if len(polygon) < 3:
        raise Rejected("a polygon needs at least 3 vertices [[x, y], ...]")
    if len(polygon) > max_vertices:
        raise Rejected(f"a polygon may have at most {max_vertices} vertices (LATENTMAP_MAX_SELECTION_POLYGON_VERTICES)")
    if any(len(v) != 2 for v in polygon):
        raise Rejected("each polygon vertex is [x, y]")
    poly = np.asarray(polygon, dtype=np.float64)
    if not np.isfinite(poly).all():
        raise Rejected("polygon vertices must be finite numbers")
    return poly


def inside_polygon(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside the closed polygon (even-odd rule, as the page's lasso fills it).
    Only points inside the polygon's bounding box are tested edge by edge: O(points in box × vertices)."""
    inside = np.zeros(len(xy), dtype=bool)
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    box = np.flatnonzero((xy[:, 0] >= lo[0]) & (xy[:, 0] <= hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] <= hi[1]))
    if len(box) == 0:
        return inside
    px, py = xy[box, 0].astype(np.float64), xy[box, 1].astype(np.float64)
    odd = np.zeros(len(box), dtype=bool)
    x1, y1 = poly[-1]
    for x2, y2 in poly:  # a ray to +x from the point crosses edge (x1,y1)-(x2,y2)?
        if y1 != y2:
            spans = (y1 > py) != (y2 > py)
            cross_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
            odd ^= spans & (px < cross_x)
        x1, y1 = x2, y2
    inside[box] = odd
    return inside
