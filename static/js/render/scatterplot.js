// The map renderer on regl-scatterplot: the only module that touches the drawing library. It implements the
// renderer interface documented in core/page.js (points, colours, highlight, camera, screen <-> data, pick), so
// another library can take its place without the panels noticing.

import createScatterplot from "/static/vendor/regl-scatterplot-1.16.0.esm.js";
import { KIND_COLORS, KINDS, MAP_BACKGROUND } from "../core/constants.js";

const LIBRARY = "regl-scatterplot 1.16.0";

function kindIndex(kind) {
  const i = KINDS.indexOf(kind);
  return i >= 0 ? i : 2;
}

/** Data -> scatter coordinates, fixed while the page is open (new points never move the others). */
function computeNorm(bounds, items) {
  let b = bounds;
  if ((!b || b.length !== 4 || b.some((v) => !Number.isFinite(v))) && items.length) {
    b = [Infinity, Infinity, -Infinity, -Infinity];
    for (const p of items) {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
      b = [Math.min(b[0], p.x), Math.min(b[1], p.y), Math.max(b[2], p.x), Math.max(b[3], p.y)];
    }
    if (!Number.isFinite(b[0])) b = null;
  }
  if (!b) return { cx: 0, cy: 0, s: 1 };
  const [xmin, ymin, xmax, ymax] = b;
  const span = Math.max(xmax - xmin, ymax - ymin);
  const s = span > 1e-9 ? 1.8 / span : 1; // bounds fill [-0.9, 0.9] at the default camera
  return { cx: (xmin + xmax) / 2, cy: (ymin + ymax) / 2, s };
}

/**
 * @param {{canvas: HTMLCanvasElement, fast: boolean, pointSize: number, opacity: number}} options
 *   fast: squares without alpha blending (very large maps)
 */
export function createRenderer({ canvas, fast, pointSize, opacity }) {
  let norm = { cx: 0, cy: 0, s: 1 };
  let items = [];
  let colors = { by: "kind" };
  let highlighted = [];
  let size = pointSize;
  const viewListeners = [];
  const hoverListeners = [];

  const plot = createScatterplot({
    canvas,
    performanceMode: fast,
    width: "auto",
    height: "auto",
    backgroundColor: MAP_BACKGROUND,
    pointColor: KIND_COLORS,
    pointColorHover: "#ffffff",
    pointColorActive: "#ffffff",
    colorBy: "valueA",
    pointSize,
    pointSizeSelected: 4,
    pointOutlineWidth: 2,
    opacity,
    lassoInitiator: false,
    lassoOnLongPress: false,
    actionKeyMap: {},
    deselectOnDblClick: false,
    deselectOnEscape: false,
    showReticle: false,
  });

  const toScatter = (x, y) => [(x - norm.cx) * norm.s, (y - norm.cy) * norm.s];
  const fromScatter = (sx, sy) => [sx / norm.s + norm.cx, sy / norm.s + norm.cy];

  function canvasSize() {
    const rect = canvas.getBoundingClientRect();
    return [rect.width || 1, rect.height || 1];
  }

  // The library draws point p at clip = projection * cameraView * model * p, with projection = scale(1 / viewAspect,
  // 1) and model = scale(dataAspect, 1). Only the 2D affine part matters.
  function affine() {
    const [w, h] = canvasSize();
    const aspect = w / h;
    const view = plot.get("cameraView");
    const dar = plot.get("aspectRatio") || 1;
    return {
      a: (view[0] * dar) / aspect, c: view[4] / aspect, e: view[12] / aspect,
      b: view[1] * dar, d: view[5], f: view[13],
      w, h,
    };
  }

  function screenToData(px, py) {
    const { a, b, c, d, e, f, w, h } = affine();
    const rx = -1 + (2 * px) / w - e;
    const ry = 1 - (2 * py) / h - f;
    const det = a * d - b * c;
    return fromScatter((d * rx - c * ry) / det, (a * ry - b * rx) / det);
  }

  function dataToScreen(x, y, m = affine()) {
    const { a, b, c, d, e, f, w, h } = m;
    const [sx, sy] = toScatter(x, y);
    const clipX = a * sx + c * sy + e;
    const clipY = b * sx + d * sy + f;
    return [((clipX + 1) / 2) * w, ((1 - clipY) / 2) * h];
  }

  function view() {
    const [w, h] = canvasSize();
    const [x, y] = screenToData(w / 2, h / 2);
    const visibleHeight = 2 / (Math.abs(plot.get("cameraView")[5]) * norm.s);
    return { x, y, zoom: 1 / visibleHeight };
  }

  function applyHighlight() {
    try {
      if (highlighted.length) plot.select(highlighted, { preventEvent: true });
      else plot.deselect({ preventEvent: true });
    } catch (_) { /* nothing drawn yet */ }
  }

  function draw() {
    const values = colors.by === "value" ? colors.values : null;
    const points = items.map((p, i) => {
      const [sx, sy] = toScatter(p.x, p.y);
      return [sx, sy, kindIndex(p.kind), (values && values[i]) || 0];
    });
    if (colors.by === "value") plot.set({ colorBy: "valueB", pointColor: colors.palette });
    else plot.set({ colorBy: "valueA", pointColor: KIND_COLORS });
    return plot.draw(points).then(applyHighlight);
  }

  // The library selects on click by itself: the page decides what is highlighted, so put that back.
  plot.subscribe("select", applyHighlight);
  plot.subscribe("deselect", applyHighlight);
  plot.subscribe("view", () => { for (const fn of viewListeners) fn(); });
  plot.subscribe("pointover", (index) => {
    let pos = null;
    try { pos = plot.getScreenPosition(index); } catch (_) { pos = null; }
    const item = items[index];
    if (!item) return;
    for (const fn of hoverListeners) fn(index, pos || dataToScreen(item.x, item.y));
  });
  plot.subscribe("pointout", () => { for (const fn of hoverListeners) fn(-1); });
  new ResizeObserver(() => { for (const fn of viewListeners) fn(); }).observe(canvas);

  return {
    setPoints(next, { fit = false, bounds = null } = {}) {
      items = next;
      if (fit) norm = computeNorm(bounds, items);
      return draw();
    },
    setColors(next) {
      colors = next && next.by === "value" ? next : { by: "kind" };
      return draw();
    },
    setStyle({ pointSize: nextSize, opacity: nextOpacity, background } = {}) {
      const options = {};
      if (nextSize !== undefined) { size = nextSize; options.pointSize = nextSize; }
      if (nextOpacity !== undefined) options.opacity = nextOpacity;
      if (background !== undefined) options.backgroundColor = background;
      plot.set(options);
    },
    highlight(indices) {
      highlighted = [...indices];
      applyHighlight();
    },
    view,
    setView({ x, y, zoom }) {
      const [sx, sy] = toScatter(x, y);
      const dar = plot.get("aspectRatio") || 1;
      // Visible data height = 1 / zoom; visible scatter height = 2 * camera distance = height * s.
      return plot.zoomToLocation([sx * dar, sy], norm.s / (2 * zoom));
    },
    fitView: () => plot.zoomToOrigin(),
    dataToScreen: (x, y) => dataToScreen(x, y),
    screenToData,
    pick(px, py, slop = 3) {
      let best = -1;
      let bestDistance = size / 2 + slop;
      const m = affine();
      items.forEach((item, i) => {
        const [x, y] = dataToScreen(item.x, item.y, m);
        const distance = Math.hypot(x - px, y - py);
        if (distance <= bestDistance) {
          best = i;
          bestDistance = distance;
        }
      });
      return best;
    },
    onView: (fn) => viewListeners.push(fn),
    onHover: (fn) => hoverListeners.push(fn),
    info: () => ({
      library: LIBRARY,
      mode: fast ? "fast" : "full",
      colorBy: colors.by,
      palette: colors.by === "value" ? colors.palette : KIND_COLORS,
      pointSize: size,
    }),
  };
}
