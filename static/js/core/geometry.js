// Geometry shared by the page and the renderer (one home, so the page's lasso and the renderer's rings agree).

/** Even-odd rule, as the server's selection by polygon (app/maps/selection.py): is (x, y) inside the polygon? */
export function insidePolygon(x, y, polygon) {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i, i += 1) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
