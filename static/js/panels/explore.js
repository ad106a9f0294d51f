// The Explore panel: paths (drawn in the pointer's path mode), neighbours, search, colour by, clusters, lasso
// selection (the pointer's lasso mode) and export, the map bundle. All user text goes in via textContent.

import { api } from "../api.js";
import { el, showError, toast } from "../common.js";
import { DOUBLE_CLICK_PX, KIND_COLORS, KIND_NAMES, KINDS, MAP_BACKGROUND, MAX_PATH_POINTS, MAX_PATH_STEPS,
  MAX_SELECTION_POLYGON_VERTICES } from "../core/constants.js";
import { actions, canvasSize, dataToScreen, decimals, emit, on, provide, register, renderer, roundTo, setView,
  shareStateChanged, state } from "../core/page.js";
import { insidePolygon } from "../core/geometry.js";
import { handle, mode, setMode, toggleMode } from "../core/pointer.js";

const $ = (id) => document.getElementById(id);
const frame = $("map-frame");
const root = $("map-root");
const mapId = root.dataset.mapId;
const base = `/api/maps/${encodeURIComponent(mapId)}`;

const CLUSTER_COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#aaffc3", "#808000"];
const NO_CLUSTER = "#5d6470";
const BACKGROUND = hexToRgba(MAP_BACKGROUND);
const HEAT_BINS = 16;
// Low -> high similarity; both ends stay visible on the dark map.
const HEAT_STOPS = ["#4a5bd4", "#2ab0e3", "#3cf08a", "#c7ef34", "#fca50a", "#f0501e"];
const NEIGHBORS_K = 8;
const SVG_NS = "http://www.w3.org/2000/svg";

const ex = {
  colorMode: "kind",
  filter: "",
  search: null, // {q, x, y, similarity, neighbors}
  clusters: null, // {clusters, assignments, count}
  showClusterLabels: false,
  vertices: [], // [[x, y], ...] data coordinates
  path: null, // server answer
  lastCount: null,
  serverMatch: null, // {text, bits, version}: label filter answered by the server (maps loaded without labels)
  columns: [], // metadata columns of the map (GET /columns): [{name, type, ...}]
  column: null, // the column coloured by: {name, type, values (codes / numbers), categories, min, max, key}
  hidden: [], // categories of that column hidden (dimmed) by clicking them in the legend
};

// ---------------------------------------------------------------- helpers ----

function hexToRgba(hex, alpha = 1) {
  const n = parseInt(hex.slice(1), 16);
  return [((n >> 16) & 255) / 255, ((n >> 8) & 255) / 255, (n & 255) / 255, alpha];
}

function lerpColor(a, b, t) {
  const ca = hexToRgba(a);
  const cb = hexToRgba(b);
  return [0, 1, 2].map((i) => ca[i] + (cb[i] - ca[i]) * t).concat(1);
}

function heatColor(t) {
  const pos = Math.min(Math.max(t, 0), 1) * (HEAT_STOPS.length - 1);
  const i = Math.min(Math.floor(pos), HEAT_STOPS.length - 2);
  return lerpColor(HEAT_STOPS[i], HEAT_STOPS[i + 1], pos - i);
}

function items() {
  return state.items;
}

/** Tile-only maps: the page holds no points (state.items is sparse). */
function tileOnly() {
  return state.pointsFormat === "tiles";
}

function itemFor(entry) {
  const list = items();
  if (tileOnly()) {
    // The server's answer says all the page needs about the item (its index in points order it does not).
    return { id: entry.id, label: entry.label, kind: entry.kind, x: entry.x, y: entry.y,
      thumbnail: Boolean(entry.thumbnail_url), pending: false };
  }
  if (entry.id) {
    const found = list.find((p) => p.id === entry.id);
    if (found) return found;
  }
  // Binary-loaded maps have no ids in the browser: the point at the same position.
  let best = null;
  let bestD = Infinity;
  for (const p of list) {
    const d = Math.hypot(p.x - entry.x, p.y - entry.y);
    if (d < bestD) { best = p; bestD = d; }
  }
  return bestD < 1e-4 ? best : null;
}

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

// ---------------------------------------------------------------- overlay (path, markers, cluster labels) ----

const overlay = el("div", { class: "explore-overlay", "aria-hidden": "true" });
const svg = document.createElementNS(SVG_NS, "svg");
svg.setAttribute("class", "explore-svg");
const pathLine = document.createElementNS(SVG_NS, "polyline");
pathLine.setAttribute("class", "explore-path-line");
const pathDots = document.createElementNS(SVG_NS, "g");
svg.append(pathLine, pathDots);
const labelLayer = el("div", { class: "explore-labels" });
const searchMarker = el("div", { class: "explore-search-marker", hidden: true },
  el("span", { class: "explore-search-dot" }), el("span", { class: "explore-search-text" }));
overlay.append(svg, labelLayer, searchMarker);
frame.insertBefore(overlay, $("crosshair"));

function svgCircle(cx, cy, r, cls) {
  const c = document.createElementNS(SVG_NS, "circle");
  c.setAttribute("cx", cx.toFixed(1));
  c.setAttribute("cy", cy.toFixed(1));
  c.setAttribute("r", String(r));
  c.setAttribute("class", cls);
  return c;
}

function positionOverlay() {
  if (!renderer()) return;
  const [width, height] = canvasSize();
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  // Path: the drawn vertices, then (once decoded) a dot per frame.
  const screen = ex.vertices.map(([x, y]) => dataToScreen(x, y));
  pathLine.setAttribute("points", screen.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "));
  pathDots.replaceChildren();
  if (ex.path) {
    for (const f of ex.path.frames) {
      const [px, py] = dataToScreen(f.x, f.y);
      pathDots.append(svgCircle(px, py, 3, "explore-path-frame"));
    }
  }
  screen.forEach(([px, py], i) => pathDots.append(svgCircle(px, py, i === 0 ? 6 : 5, i === 0 ? "explore-path-start" : "explore-path-vertex")));
  // Search marker.
  if (ex.search) {
    const [px, py] = dataToScreen(ex.search.x, ex.search.y);
    searchMarker.hidden = false;
    searchMarker.style.transform = `translate(${px}px, ${py}px)`;
  } else {
    searchMarker.hidden = true;
  }
  // Cluster labels.
  for (const node of labelLayer.children) {
    const [px, py] = dataToScreen(Number(node.dataset.x), Number(node.dataset.y));
    const inside = px > -40 && py > -20 && px < width + 40 && py < height + 20;
    node.hidden = !inside;
    node.style.transform = `translate(${px}px, ${py}px) translate(-50%, -50%)`;
  }
}

on("view", positionOverlay);

// ---------------------------------------------------------------- colour by + filter + legend ----

const legend = document.querySelector(".map-footer .legend");
const legendExtra = el("ul", { class: "legend explore-legend", id: "explore-legend", "aria-label": "Colour legend", hidden: true });
if (legend) legend.after(legendExtra);

function matchesFilter() {
  const text = ex.filter.trim().toLowerCase();
  if (!text) return null;
  if (!labelsOnServer()) return items().map((p) => p.label !== null && p.label.toLowerCase().includes(text));
  const found = ex.serverMatch;
  const current = found && found.text === text && found.version === state.pointsVersion;
  return current && found.bits.length === items().length ? found.bits : null;
}

/** Maps loaded from /points.bin (or tile-only) hold no labels in the page: the server matches them (a bit a point). */
function labelsOnServer() {
  return state.pointsFormat !== "json";
}

async function fetchServerMatch() {
  const text = ex.filter.trim().toLowerCase();
  if (!text || !labelsOnServer()) return;
  const version = state.pointsVersion;
  const query = new URLSearchParams({ q: text, version: String(version) });
  const response = await api(`${base}/labels/match?${query}`, { raw: true });
  const buffer = await response.arrayBuffer();
  const n = new DataView(buffer).getUint32(4, true);
  const bytes = new Uint8Array(buffer, 8);
  const bits = new Array(n);
  for (let i = 0; i < n; i += 1) bits[i] = (bytes[i >> 3] >> (i & 7)) & 1 ? true : false;
  if (ex.filter.trim().toLowerCase() === text) ex.serverMatch = { text, bits, version };
}

/** The filter changed (or the points did): on binary-loaded maps ask the server first, then recolour. */
async function refilter() {
  showError($("explore-color-error"), "");
  try {
    await fetchServerMatch();
  } catch (err) {
    showError($("explore-color-error"), `Could not match labels. ${err.message}`);
  }
  return applyColors();
}

let applying = Promise.resolve();

/** Recolour the points: a palette index per point (state.colors), dimmed when filtered out. */
function applyColors() {
  applying = applying.then(applyColorsNow).catch((err) => showError($("explore-color-error"), `Could not colour the map. ${err.message}`));
  return applying;
}

async function applyColorsNow() {
  if (!renderer()) return;
  const list = items();
  const match = matchesFilter();
  renderFilterInfo(match);
  let palette;
  let category;
  if (ex.colorMode === "cluster" && ex.clusters && ex.clusters.assignments.length === list.length) {
    palette = [...CLUSTER_COLORS.map((c) => hexToRgba(c)), hexToRgba(NO_CLUSTER)];
    category = (i) => {
      const a = ex.clusters.assignments[i];
      return a >= 0 ? a % CLUSTER_COLORS.length : CLUSTER_COLORS.length;
    };
  } else if (ex.colorMode === "similarity" && ex.search && ex.search.similarity.length === list.length) {
    const { lo, hi } = simRange();
    palette = Array.from({ length: HEAT_BINS }, (_, b) => heatColor(b / (HEAT_BINS - 1)));
    category = (i) => Math.round(((ex.search.similarity[i] - lo) / (hi - lo || 1)) * (HEAT_BINS - 1));
  } else if (ex.colorMode.startsWith("column:") && ex.column && ex.column.values.length === list.length) {
    ({ palette, category } = columnColors(ex.column));
  } else {
    palette = KIND_COLORS.map((c) => hexToRgba(c));
    if (!tileOnly()) category = (i) => Math.max(0, KINDS.indexOf(list[i].kind));
  }
  const hiddenCodes = columnHiddenCodes();
  const kept = actions.columnFilter(); // panels/columns.js: a number range / text search over a column
  const kindPlain = palette.length === KIND_COLORS.length && !match && !kept && ex.colorMode === "kind";
  // Fast rendering (very large maps) draws without alpha blending: dim by mixing with the background instead.
  const fast = state.renderMode === "fast";
  const dimOf = (colours) => colours.map(([r, g, b]) => (fast ? [r, g, b].map((c, k) => c * 0.12 + BACKGROUND[k] * 0.88)
    .concat(1) : [r, g, b, 0.12]));
  if (kindPlain) {
    await actions.setColors({ by: "kind" });
  } else if (tileOnly() && category === undefined) {
    // Tile-only maps hold no kinds: the renderer colours its tiles' points by kind, dimming those not matching.
    const dim = match || kept ? Uint8Array.from(match || kept, (_, i) => ((match && !match[i]) || (kept && !kept[i]) ? 1 : 0))
      : null;
    await actions.setColors({ by: "kind", dim, dimColors: dimOf(palette) });
  } else {
    const values = new Array(list.length);
    const dimmed = new Uint8Array(list.length); // the renderer dims these points' pictures too
    for (let i = 0; i < list.length; i += 1) {
      const c = Math.min(Math.max(category(i) | 0, 0), palette.length - 1);
      const dim = (match && !match[i]) || (kept && !kept[i]) || (hiddenCodes && hiddenCodes.has(ex.column.values[i]));
      values[i] = dim ? c + palette.length : c;
      dimmed[i] = dim ? 1 : 0;
    }
    await actions.setColors({ by: "value", values, palette: [...palette, ...dimOf(palette)], dimmed });
  }
  ex.lastCount = layoutKey();
  renderLegend(ex.colorMode, match);
  root.dataset.colorBy = ex.colorMode; // last: tests wait on it
}

function simRange() {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of ex.search.similarity) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return { lo, hi };
}

function renderLegend(mode, match) {
  if (legend) {
    for (const li of legend.querySelectorAll("li")) {
      if (li.querySelector(".swatch-text, .swatch-image, .swatch-generated")) li.hidden = mode !== "kind";
    }
  }
  legendExtra.replaceChildren();
  if (mode === "cluster" && ex.clusters) {
    const shown = ex.clusters.clusters.slice(0, 8);
    for (const c of shown) {
      legendExtra.append(el("li", {}, el("span", { class: "swatch", style: `background:${CLUSTER_COLORS[c.id % CLUSTER_COLORS.length]}` }),
        el("span", { class: "explore-legend-label", text: c.label })));
    }
    if (ex.clusters.clusters.length > shown.length) legendExtra.append(el("li", { text: `+${ex.clusters.clusters.length - shown.length} more` }));
    legendExtra.append(el("li", {}, el("span", { class: "swatch", style: `background:${NO_CLUSTER}` }), "No cluster"));
  } else if (mode === "similarity" && ex.search) {
    const { lo, hi } = simRange();
    const stops = HEAT_STOPS.join(", ");
    legendExtra.append(el("li", {},
      el("span", { class: "explore-legend-value", text: lo.toFixed(2) }),
      el("span", { class: "explore-heat-bar", style: `background: linear-gradient(to right, ${stops})` }),
      el("span", { class: "explore-legend-value", text: hi.toFixed(2) }),
      el("span", { class: "explore-legend-label", text: `cosine similarity to “${ex.search.q}”` })));
  } else if (mode.startsWith("column:") && ex.column) {
    renderColumnLegend(ex.column);
  }
  if (match) legendExtra.append(el("li", {}, el("span", { class: "swatch explore-swatch-dim" }), "Label does not match the filter"));
  legendExtra.hidden = !legendExtra.children.length;
}

function renderFilterInfo(match) {
  const info = $("explore-filter-info");
  $("explore-select-matching").disabled = !match;
  if (!match) {
    info.hidden = true;
    return;
  }
  const n = match.filter(Boolean).length;
  info.textContent = `${n} of ${items().length} point${items().length === 1 ? "" : "s"} match “${ex.filter.trim()}”.`;
  info.hidden = false;
}

function layoutKey() {
  // Clusters are of the 2D layout: stale after items come or go, or after a re-projection.
  const meta = state.meta;
  return `${items().length}|${meta && meta.projection ? meta.projection.revision : 0}`;
}

async function loadClusters() {
  const key = layoutKey();
  if (ex.clusters && ex.clusters.key === key) return ex.clusters;
  const data = await api(`${base}/clusters`);
  ex.clusters = { ...data, key };
  return ex.clusters;
}

async function setColorMode(mode) {
  showError($("explore-color-error"), "");
  const select = $("explore-color-by");
  if (mode === "similarity" && (!ex.search || ex.search.similarity.length !== items().length)) {
    const q = ex.search ? ex.search.q : $("explore-search-input").value.trim();
    if (q) {
      await runSearch(q, { similarity: true });
      if (!ex.search) { select.value = ex.colorMode; return; }
    } else {
      select.value = ex.colorMode;
      showError($("explore-color-error"), "Search for a prompt first: the map is then coloured by each point's similarity to it.");
      $("explore-search-input").focus();
      return;
    }
  }
  if (mode === "cluster") {
    try {
      await loadClusters();
    } catch (err) {
      select.value = ex.colorMode;
      showError($("explore-color-error"), `Could not find clusters. ${err.message}`);
      return;
    }
  }
  if (mode.startsWith("column:")) {
    try {
      await loadColumn(mode.slice("column:".length));
    } catch (err) {
      select.value = ex.colorMode;
      showError($("explore-color-error"), `Could not load the column. ${err.message}`);
      return;
    }
  }
  ex.colorMode = mode;
  select.value = mode;
  await applyColors();
  shareStateChanged();
}

// ---------------------------------------------------------------- metadata columns (colour by, hide categories) ----

/** The map's metadata columns (maps built from a folder or a table) as extra "Colour by" choices. */
async function loadColumns() {
  const data = await api(`${base}/columns`);
  ex.columns = data.columns.filter((c) => c.type === "category" || c.type === "number");
  const select = $("explore-color-by");
  for (const c of ex.columns) {
    select.append(el("option", { value: `column:${c.name}`, text: `Column: ${c.name} (${c.type})` }));
  }
}

/** One column for every point (GET /columns/values.bin): category codes or numbers, in points order. */
async function loadColumn(name) {
  const key = `${name}|${state.pointsVersion}|${items().length}`;
  if (ex.column && ex.column.key === key) return;
  const response = await api(`${base}/columns/values.bin?${new URLSearchParams({ name })}`, { raw: true });
  const buffer = await response.arrayBuffer();
  const headLength = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, headLength)));
  const body = buffer.slice(8 + headLength);
  const values = header.encoding === "float32" ? new Float32Array(body) : new Uint32Array(body);
  const column = { name, type: header.type, values, categories: header.categories || [], key };
  if (column.type === "number") {
    column.min = Infinity;
    column.max = -Infinity;
    for (const v of values) {
      if (Number.isNaN(v)) continue;
      if (v < column.min) column.min = v;
      if (v > column.max) column.max = v;
    }
  }
  if (!ex.column || ex.column.name !== name) ex.hidden = ex.hidden.filter((c) => column.categories.includes(c));
  ex.column = column;
}

const MISSING_CODE = 0xffffffff;

function columnColors(column) {
  if (column.type === "number") {
    const palette = [...Array.from({ length: HEAT_BINS }, (_, b) => heatColor(b / (HEAT_BINS - 1))), hexToRgba(NO_CLUSTER)];
    const span = column.max - column.min || 1;
    const category = (i) => {
      const v = column.values[i];
      return Number.isNaN(v) ? HEAT_BINS : Math.round(((v - column.min) / span) * (HEAT_BINS - 1));
    };
    return { palette, category };
  }
  const palette = [...CLUSTER_COLORS.map((c) => hexToRgba(c)), hexToRgba(NO_CLUSTER)];
  const category = (i) => {
    const code = column.values[i];
    return code === MISSING_CODE || code >= CLUSTER_COLORS.length ? CLUSTER_COLORS.length : code;
  };
  return { palette, category };
}

/** Codes of the categories hidden in the legend (null when none or not colouring by a category column). */
function columnHiddenCodes() {
  if (!ex.colorMode.startsWith("column:") || !ex.column || ex.column.type !== "category" || !ex.hidden.length) return null;
  return new Set(ex.hidden.map((c) => ex.column.categories.indexOf(c)).filter((code) => code >= 0));
}

function renderColumnLegend(column) {
  if (column.type === "number") {
    legendExtra.append(el("li", {},
      el("span", { class: "explore-legend-value", text: formatNumber(column.min) }),
      el("span", { class: "explore-heat-bar", style: `background: linear-gradient(to right, ${HEAT_STOPS.join(", ")})` }),
      el("span", { class: "explore-legend-value", text: formatNumber(column.max) }),
      el("span", { class: "explore-legend-label", text: column.name })));
    return;
  }
  const shown = column.categories.slice(0, CLUSTER_COLORS.length);
  shown.forEach((value, code) => {
    const hidden = ex.hidden.includes(value);
    const button = el("button", { type: "button", class: "btn btn-quiet btn-small explore-legend-toggle",
      "aria-pressed": String(!hidden), title: hidden ? "Show these points" : "Hide (dim) these points",
      "data-category": value },
    el("span", { class: "swatch", style: `background:${CLUSTER_COLORS[code]}` }),
    el("span", { class: "explore-legend-label", text: value }));
    button.addEventListener("click", () => toggleCategory(value));
    legendExtra.append(el("li", {}, button));
  });
  if (column.categories.length > shown.length) {
    legendExtra.append(el("li", {}, el("span", { class: "swatch", style: `background:${NO_CLUSTER}` }),
      `other values (${column.categories.length - shown.length} more)`));
  }
}

function formatNumber(v) {
  return Number.isFinite(v) ? String(Math.round(v * 1000) / 1000) : "–";
}

async function toggleCategory(value) {
  ex.hidden = ex.hidden.includes(value) ? ex.hidden.filter((c) => c !== value) : [...ex.hidden, value];
  await applyColors();
  shareStateChanged();
}

$("explore-color-by").addEventListener("change", (event) => setColorMode(event.target.value));

let filterTimer = null;
$("explore-filter-input").addEventListener("input", (event) => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    ex.filter = event.target.value;
    refilter();
  }, 150);
});

// ---------------------------------------------------------------- cluster labels ----

async function setClusterLabels(on) {
  ex.showClusterLabels = on;
  labelLayer.replaceChildren();
  if (!on) return;
  try {
    const data = await loadClusters();
    if (!ex.showClusterLabels) return;
    labelLayer.replaceChildren(...data.clusters.map((c) => el("div", {
      class: "explore-cluster-label", "data-x": c.x, "data-y": c.y, "data-cluster": c.id, text: c.label,
      title: `${c.label} (${c.size} points)`,
    })));
    if (!data.clusters.length) toast("No clusters found: the map needs more (and more grouped) points.");
    positionOverlay();
  } catch (err) {
    $("explore-cluster-labels").checked = false;
    ex.showClusterLabels = false;
    showError($("explore-color-error"), `Could not find clusters. ${err.message}`);
  }
}

$("explore-cluster-labels").addEventListener("change", (event) => setClusterLabels(event.target.checked));

// ---------------------------------------------------------------- neighbours ----

function neighborList(listNode, neighbors) {
  listNode.replaceChildren();
  for (const n of neighbors) {
    const sim = typeof n.similarity === "number" ? n.similarity.toFixed(2) : "";
    const label = `${KIND_NAMES[n.kind] || n.kind}: ${n.label}`;
    const thumb = n.thumbnail_url
      ? el("img", { class: "explore-neighbor-thumb", src: n.thumbnail_url, alt: "", loading: "lazy" })
      : el("span", { class: `explore-neighbor-thumb explore-kind-${KINDS.includes(n.kind) ? n.kind : "generated"}`, "aria-hidden": "true" });
    const button = el("button", {
      type: "button", class: "explore-neighbor", "data-item-id": n.id || "",
      "aria-label": `${label}, similarity ${sim}. Select and centre it.`,
    }, thumb, el("span", { class: "explore-neighbor-label", text: n.label }),
    el("span", { class: "explore-neighbor-sim mono", text: sim, title: "cosine similarity" }));
    button.addEventListener("click", () => goToItem(n));
    listNode.append(el("li", {}, button));
  }
}

async function goToItem(entry) {
  const item = itemFor(entry);
  await setView({ x: entry.x, y: entry.y, zoom: renderer().view().zoom });
  if (item) actions.select(item);
  const digits = decimals();
  await actions.decodeAt(roundTo(entry.x, digits), roundTo(entry.y, digits), { item });
}

let neighborSeq = 0;
let neighborsOf = null; // the decode whose neighbours are on show (or on their way)
/** After a decode: the items nearest the clicked item (when the click hit one), else nearest the spot. */
async function loadNeighbors({ x, y, item }) {
  const seq = ++neighborSeq;
  neighborsOf = { x, y, item };
  const note = $("explore-neighbors-note");
  showError($("explore-neighbors-error"), "");
  let query;
  let heading;
  if (item && item.id) {
    query = `item=${encodeURIComponent(item.id)}`;
    heading = `Nearest to the selected item “${item.label}”:`;
  } else {
    query = `x=${x}&y=${y}`;
    heading = `Nearest to x ${x}, y ${y}:`;
  }
  note.textContent = "Finding the nearest items…";
  try {
    const data = await api(`${base}/neighbors?${query}&k=${NEIGHBORS_K}`);
    if (seq !== neighborSeq) return;
    note.textContent = data.neighbors.length ? heading : "No items on this map yet.";
    neighborList($("explore-neighbors"), data.neighbors);
  } catch (err) {
    if (seq !== neighborSeq) return;
    note.textContent = "";
    $("explore-neighbors").replaceChildren();
    showError($("explore-neighbors-error"), `Could not find the nearest items. ${err.message}`);
  }
}

on("decoded", (detail) => {
  if (items().length) loadNeighbors(detail);
});

// Items were added, deleted or re-projected: the list on show (or a request still on its way) may name an item
// that is gone, so ask again; once its own item is deleted (no longer selected), ask at the decoded spot.
on("points", () => {
  if (!neighborsOf) return;
  const { item } = neighborsOf;
  const gone = item && item.id && !(state.selected && state.selected.id === item.id);
  loadNeighbors(gone ? { ...neighborsOf, item: null } : neighborsOf);
});

// ---------------------------------------------------------------- search ----

let searchSeq = 0;
/** similarity: also fetch every point's similarity (only to colour by it: ~20 B a point of JSON). */
async function runSearch(q, { similarity = ex.colorMode === "similarity" } = {}) {
  const seq = ++searchSeq;
  const button = $("explore-search-btn");
  showError($("explore-search-error"), "");
  const info = $("explore-search-info");
  info.hidden = false;
  info.textContent = "Placing the prompt…";
  button.disabled = true;
  try {
    const data = await api(`${base}/search?q=${encodeURIComponent(q)}&k=${NEIGHBORS_K}${similarity ? "" : "&similarity=false"}`);
    if (seq !== searchSeq) return;
    ex.search = { q, x: data.x, y: data.y, similarity: data.similarity || [], neighbors: data.neighbors || [] };
    searchMarker.querySelector(".explore-search-text").textContent = q;
    info.textContent = `“${q}” would land at x ${data.x.toFixed(3)}, y ${data.y.toFixed(3)} (not added to the map). Nearest items:`;
    const results = $("explore-search-results");
    neighborList(results, ex.search.neighbors);
    results.hidden = false;
    $("explore-search-clear").hidden = false;
    positionOverlay();
    if (ex.colorMode === "similarity") await applyColors();
  } catch (err) {
    if (seq !== searchSeq) return;
    info.hidden = true;
    showError($("explore-search-error"), `Could not place the prompt. ${err.message}`);
  } finally {
    if (seq === searchSeq) button.disabled = false;
  }
}

function clearSearch() {
  searchSeq += 1;
  ex.search = null;
  $("explore-search-info").hidden = true;
  $("explore-search-results").hidden = true;
  $("explore-search-results").replaceChildren();
  $("explore-search-clear").hidden = true;
  $("explore-search-btn").disabled = false;
  positionOverlay();
  if (ex.colorMode === "similarity") setColorMode("kind");
}

$("explore-search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("explore-search-input").value.trim();
  if (!q) {
    showError($("explore-search-error"), "Type a prompt to search for.");
    return;
  }
  runSearch(q);
});
$("explore-search-clear").addEventListener("click", clearSearch);

// ---------------------------------------------------------------- paths ----

function pathSteps() {
  const v = Math.trunc(Number($("explore-path-steps").value));
  const steps = Number.isFinite(v) ? Math.min(MAX_PATH_STEPS, Math.max(2, v)) : 8;
  $("explore-path-steps").value = String(steps);
  return steps;
}

function renderPathControls() {
  const n = ex.vertices.length;
  const drawing = mode() === "path";
  $("explore-path-make").disabled = n < 2;
  $("explore-path-undo").disabled = n === 0;
  $("explore-path-clear").disabled = n === 0 && !ex.path;
  const btn = $("explore-path-btn");
  btn.setAttribute("aria-pressed", String(drawing));
  btn.textContent = drawing ? "Stop drawing" : "Draw a path";
  frame.classList.toggle("explore-path-mode", drawing);
  if (drawing) {
    $("explore-path-status").textContent = n === 0
      ? "Click the map where the path starts."
      : `${n} point${n === 1 ? "" : "s"}. Click to add more; double-click or Enter to decode along the path.`;
  } else if (!ex.path) {
    $("explore-path-status").textContent = n >= 2 ? "Press “Decode along path”." : "";
  }
  positionOverlay();
}

function startDrawing() {
  if (ex.path) {
    // A new path.
    ex.path = null;
    ex.vertices = [];
    renderPath();
  }
  setMode("path");
}

function addVertexAt(px, py) {
  const last = ex.vertices[ex.vertices.length - 1];
  if (last) {
    const [lx, ly] = dataToScreen(last[0], last[1]);
    if (Math.hypot(lx - px, ly - py) < DOUBLE_CLICK_PX) return; // the second click of a double-click
  }
  if (ex.vertices.length >= MAX_PATH_POINTS) {
    toast(`A path has at most ${MAX_PATH_POINTS} points.`, "error");
    return;
  }
  const digits = decimals();
  const [x, y] = renderer().screenToData(px, py);
  ex.vertices.push([roundTo(x, digits), roundTo(y, digits)]);
  renderPathControls();
}

handle("path", {
  click: ({ px, py }) => addVertexAt(px, py),
  dblclick: () => { if (ex.vertices.length >= 2) makePath(); },
  key(event, cursor) {
    if (event.key === " ") {
      addVertexAt(cursor[0], cursor[1]);
    } else if (event.key === "Enter") {
      if (ex.vertices.length >= 2) makePath();
      else addVertexAt(cursor[0], cursor[1]);
    } else if (event.key === "Escape") {
      ex.vertices = [];
      setMode("decode");
      renderPath();
    } else if (event.key === "Backspace") {
      ex.vertices.pop();
      renderPathControls();
    } else {
      return false;
    }
    return true;
  },
  leave: () => renderPathControls(),
});

$("explore-path-btn").addEventListener("click", () => {
  if (mode() === "path") setMode("decode");
  else startDrawing();
});
$("explore-path-undo").addEventListener("click", () => {
  ex.vertices.pop();
  renderPathControls();
});
$("explore-path-clear").addEventListener("click", () => clearPath());
$("explore-path-make").addEventListener("click", () => makePath());
$("explore-path-steps").addEventListener("change", () => {
  pathSteps();
  if (ex.path && ex.vertices.length >= 2) makePath();
});

function clearPath() {
  pathSeq += 1;
  ex.vertices = [];
  ex.path = null;
  $("explore-path-status").textContent = "";
  showError($("explore-path-error"), "");
  shareStateChanged();
  renderPath();
  renderPathControls();
  emit("path", { points: [], steps: 0 });
}

function renderPath() {
  const list = $("explore-path-frames");
  list.replaceChildren();
  const links = $("explore-path-links");
  if (!ex.path) {
    links.hidden = true;
    positionOverlay();
    return;
  }
  const n = ex.path.frames.length;
  ex.path.frames.forEach((f, i) => {
    const label = `Image ${i + 1} of ${n} along the path (x ${f.x.toFixed(3)}, y ${f.y.toFixed(3)}): decode it`;
    const button = el("button", { type: "button", class: "explore-frame", title: label, "aria-label": label },
      el("img", { src: f.url, alt: "" }));
    button.addEventListener("click", () => {
      const digits = decimals();
      actions.decodeAt(roundTo(f.x, digits), roundTo(f.y, digits));
    });
    list.append(el("li", {}, button));
  });
  $("explore-strip-link").href = ex.path.strip_url;
  $("explore-strip-link").download = `latentmap-${mapId}-path.png`;
  $("explore-gif-link").href = ex.path.gif_url;
  $("explore-gif-link").download = `latentmap-${mapId}-path.gif`;
  $("explore-webp-link").href = ex.path.webp_url;
  $("explore-webp-link").download = `latentmap-${mapId}-path.webp`;
  links.hidden = false;
  positionOverlay();
}

let pathSeq = 0;
async function makePath() {
  if (ex.vertices.length < 2) return;
  const seq = ++pathSeq;
  const steps = pathSteps();
  if (mode() === "path") setMode("decode");
  renderPathControls();
  showError($("explore-path-error"), "");
  $("explore-path-status").textContent = `Decoding ${steps} images along the path…`;
  root.dataset.pathState = "loading";
  $("explore-path-make").disabled = true;
  try {
    const data = await api(`${base}/path`, { method: "POST", json: { points: ex.vertices, steps, seed: state.seed } });
    if (seq !== pathSeq) return;
    ex.path = data;
    $("explore-path-status").textContent = `${data.frames.length} images along the path, seed ${state.seed}. Click one to open it.`;
    root.dataset.pathState = "done";
    renderPath();
    shareStateChanged();
    emit("path", { points: ex.vertices.map((v) => [...v]), steps: data.frames.length });
  } catch (err) {
    if (seq !== pathSeq) return;
    root.dataset.pathState = "error";
    $("explore-path-status").textContent = "";
    showError($("explore-path-error"), `Could not decode along the path. ${err.message}`);
  } finally {
    if (seq === pathSeq) renderPathControls();
  }
}

function cleanVertices(vertices) {
  return (vertices || []).filter((v) => Array.isArray(v) && v.length === 2 && v.every(Number.isFinite))
    .slice(0, MAX_PATH_POINTS).map(([x, y]) => [x, y]);
}

/** For other modules (tours, presenting): show a path and decode along it, or clear it (fewer than 2 points). */
function showPath(vertices, steps = 8) {
  const clean = cleanVertices(vertices);
  if (clean.length < 2) {
    clearPath();
    return Promise.resolve();
  }
  $("explore-path-steps").value = String(steps);
  ex.vertices = clean;
  return makePath();
}

function restorePath(query) {
  const text = query.get("path");
  if (!text) return;
  const vertices = cleanVertices(text.split(";").map((pair) => pair.split(",").map(Number)));
  if (vertices.length < 2) return;
  const steps = Math.trunc(Number(query.get("steps")));
  if (Number.isFinite(steps) && steps >= 2) $("explore-path-steps").value = String(Math.min(MAX_PATH_STEPS, steps));
  ex.vertices = vertices;
  makePath();
}

// ---------------------------------------------------------------- lasso selection ----

/** At most the server's vertex limit: a long drag keeps every k-th vertex (the shape stays, to a few pixels). */
function thinned(polygon) {
  if (polygon.length <= MAX_SELECTION_POLYGON_VERTICES) return polygon;
  const step = Math.ceil(polygon.length / MAX_SELECTION_POLYGON_VERTICES);
  return polygon.filter((_, i) => i % step === 0);
}

/** Tile-only maps: the server counts what is inside the lasso (POST /selection {polygon, version}); the export
 *  sends the polygon again. */
async function selectByPolygon(polygon) {
  const shape = thinned(polygon).map(([x, y]) => [x, y]);
  state.selection = [];
  state.selectionPolygon = shape;
  state.selectionCount = null; // counting
  showError($("explore-selection-error"), "");
  emit("selection", { indices: [], polygon: shape });
  renderSelection();
  try {
    const data = await api(`${base}/selection`, { method: "POST",
      json: { polygon: shape, version: state.pointsVersion, format: "count" } });
    if (state.selectionPolygon !== shape) return; // another lasso since
    state.selectionCount = data.count;
  } catch (err) {
    if (state.selectionPolygon !== shape) return;
    state.selectionPolygon = null;
    state.selectionCount = 0;
    emit("selection", { indices: [] });
    showError($("explore-selection-error"), `Could not select inside the lasso. ${err.message}`);
  }
  renderSelection();
}

handle("lasso", {
  lasso(polygon) {
    if (tileOnly()) {
      selectByPolygon(polygon);
      return;
    }
    const chosen = [];
    items().forEach((p, i) => { if (insidePolygon(p.x, p.y, polygon)) chosen.push(i); });
    setSelection(chosen);
  },
  key(event) {
    if (event.key !== "Escape") return false;
    setMode("decode");
    return true;
  },
  leave: () => renderLassoButton(),
});

function renderLassoButton() {
  const on = mode() === "lasso";
  const btn = $("explore-lasso-btn");
  btn.setAttribute("aria-pressed", String(on));
  btn.textContent = on ? "Lasso on: drag around points" : "Lasso";
  frame.classList.toggle("explore-lasso-mode", on);
}

function setSelection(indices) {
  state.selectionPolygon = null;
  state.selectionCount = 0;
  state.selection = [...new Set(indices)].filter((i) => i >= 0 && i < items().length).sort((a, b) => a - b);
  emit("selection", { indices: state.selection });
  renderSelection();
}

function renderSelection() {
  const byPolygon = Boolean(state.selectionPolygon);
  const n = byPolygon ? state.selectionCount : state.selection.length;
  const info = $("explore-selection-info");
  if (n === null) {
    info.textContent = "Counting the points inside the lasso…";
    info.dataset.count = "";
    for (const id of ["explore-export-csv", "explore-export-json", "explore-export-zip"]) $(id).disabled = true;
    return;
  }
  if (!n) {
    info.textContent = "Nothing selected.";
  } else {
    // Tile-only maps hold few labels: name those the page has.
    const names = state.selection.slice(0, 3).map((i) => (items()[i] ? items()[i].label : null)).filter((l) => l);
    const more = n > names.length ? ", …" : ".";
    info.textContent = `${n} point${n === 1 ? "" : "s"} selected${names.length ? `: ${names.join(", ")}${more}` : "."}`;
  }
  info.dataset.count = String(n);
  for (const id of ["explore-export-csv", "explore-export-json", "explore-export-zip"]) $(id).disabled = !n;
  $("explore-selection-clear").disabled = !n && !byPolygon;
}

/** The selection as the export request names it: ids, or (binary-loaded maps, no ids) indices + version. */
function selectionRequest() {
  const list = items();
  if (state.selectionPolygon) return { polygon: state.selectionPolygon, version: state.pointsVersion };
  if (state.selection.every((i) => list[i] && list[i].id)) return { item_ids: state.selection.map((i) => list[i].id) };
  return { indices: state.selection, version: state.pointsVersion };
}

async function exportSelection(format) {
  showError($("explore-selection-error"), "");
  const buttons = ["explore-export-csv", "explore-export-json", "explore-export-zip"].map($);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const response = await api(`${base}/selection`, { method: "POST", json: { ...selectionRequest(), format }, raw: true });
    download(await response.blob(), `latentmap-${mapId}-selection.${format}`);
  } catch (err) {
    showError($("explore-selection-error"), `Could not export the selection. ${err.message}`);
  } finally {
    renderSelection();
  }
}

$("explore-lasso-btn").addEventListener("click", () => toggleMode("lasso"));
$("explore-selection-clear").addEventListener("click", () => setSelection([]));
$("explore-select-matching").addEventListener("click", () => {
  const match = matchesFilter();
  if (match) setSelection(match.map((ok, i) => (ok ? i : -1)).filter((i) => i >= 0));
});
$("explore-export-csv").addEventListener("click", () => exportSelection("csv"));
$("explore-export-json").addEventListener("click", () => exportSelection("json"));
$("explore-export-zip").addEventListener("click", () => exportSelection("zip"));

// ---------------------------------------------------------------- lifecycle ----

function onPointsChanged() {
  const key = layoutKey();
  if (ex.lastCount === null || key === ex.lastCount) return;
  // Items were added, deleted or re-projected: indices and per-point values are stale.
  ex.lastCount = key;
  ex.clusters = null;
  if (state.selection.length || state.selectionPolygon) setSelection([]);
  if (ex.showClusterLabels) setClusterLabels(true);
  if (ex.colorMode.startsWith("column:")) setColorMode(ex.colorMode);
  else if (ex.colorMode === "cluster") setColorMode("cluster");
  else if (ex.colorMode === "similarity" && ex.search) runSearch(ex.search.q);
  else if (ex.filter.trim()) refilter();
}

on("points", onPointsChanged);
on("mode", () => {
  renderPathControls();
  renderLassoButton();
});
provide("showPath", showPath);
provide("recolor", applyColors);
provide("clearPath", clearPath);
provide("drawnPath", () => ex.vertices.map((v) => [...v]));

/** Columns as "Colour by" choices; a share link's column colouring and hidden categories applied. */
async function restoreColumnColors(query) {
  try {
    await loadColumns();
  } catch (err) {
    showError($("explore-color-error"), `Could not load the map's columns. ${err.message}`);
    return;
  }
  const wanted = query.get("color");
  if (!wanted || !wanted.startsWith("column:") || !ex.columns.some((c) => `column:${c.name}` === wanted)) return;
  ex.hidden = (query.get("hide") || "").split("|").filter(Boolean);
  await setColorMode(wanted);
}

register({
  name: "explore",
  mirror: ex,
  start(query) {
    ex.lastCount = layoutKey();
    $("explore-bundle-link").href = `${base}/bundle`;
    positionOverlay();
    restorePath(query);
    restoreColumnColors(query);
  },
  urlParams() {
    const out = {};
    if (ex.colorMode.startsWith("column:")) {
      out.color = ex.colorMode;
      if (ex.hidden.length) out.hide = ex.hidden.join("|");
    }
    if (!ex.path || ex.vertices.length < 2) return out;
    return { ...out, path: ex.vertices.map(([x, y]) => `${x},${y}`).join(";"), steps: String(ex.path.frames.length) };
  },
});
