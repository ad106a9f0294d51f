// The map page's start and its drawing: reads the edit key, loads the map and its points, creates the renderer
// (render/map_renderer.js) and keeps it in step with the core's state (points, colours, highlight, style), shows
// the hover tooltip, then starts the panels. All user-provided text is written with textContent, never as HTML.

import { api } from "./api.js";
import { el, initLargeTextToggle, isLargeText, onLargeTextChange, toast } from "./common.js";
import { BINARY_POINTS_FROM, FAST_RENDER_FROM, KINDS, KIND_NAMES, MAP_BACKGROUND, MAP_BACKGROUND_HIGH_CONTRAST,
  MAX_SEED, PENDING_TEXT, WHOLE_POINTS_MAX } from "./core/constants.js";
import { actions, emit, on, provide, renderer, setRenderer, shareStateChanged, start, state } from "./core/page.js";
import { hasThumbnail, thumbnailUrl } from "./core/items.js";
import { createRenderer } from "./render/map_renderer.js";

const PENDING_POLL_MS = 2500; // while prompts wait for their generated picture

const $ = (id) => document.getElementById(id);
const root = $("map-root");
const canvas = $("map-canvas");

// ---------------------------------------------------------------- edit key (owner) ----

function keyStorageName() {
  return `latentmap:key:${state.mapId}`;
}

function readEditKey() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const fromHash = params.get("key");
  if (fromHash) {
    try { localStorage.setItem(keyStorageName(), fromHash); } catch (_) { /* private mode: keep it in memory */ }
    // Strip the key from the address bar (and so from bookmarks, screenshots and copied URLs).
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return fromHash;
  }
  try { return localStorage.getItem(keyStorageName()); } catch (_) { return null; }
}

/** Owner controls exist only for a working edit key: visitors never see them (CSS hides .owner-only too). */
function applyEditMode() {
  state.canEdit = Boolean(state.meta && state.meta.can_edit && state.editKey);
  for (const node of document.querySelectorAll(".owner-only")) {
    node.hidden = !state.canEdit || (node.id === "delete-btn" && !(state.selected && state.selected.id));
  }
  $("readonly-note").hidden = state.canEdit;
  root.classList.toggle("is-owner", state.canEdit);
}

// ---------------------------------------------------------------- drawing ----

/** Point size in CSS pixels: smaller as a map fills up, larger for projectors (large-text mode). */
function pointSize() {
  const n = state.items.length;
  const base = n < 1000 ? 10 : n < 10000 ? 6 : 4;
  return isLargeText() ? Math.round(base * 1.6) : base;
}

function pointOpacity() {
  const n = state.items.length;
  return n < 5000 ? 0.95 : n < 50000 ? 0.75 : 0.55;
}

function fastRender() {
  const forced = new URLSearchParams(window.location.search).get("render");
  if (forced === "fast" || forced === "full") return forced === "fast";
  return (state.meta.count || 0) >= FAST_RENDER_FROM;
}

function background() {
  return document.documentElement.classList.contains("high-contrast") ? MAP_BACKGROUND_HIGH_CONTRAST : MAP_BACKGROUND;
}

/** Draw state.items with the current colours (fit: frame the camera anew on `bounds`, else on the items). */
async function redraw({ fit = false, bounds = null } = {}) {
  const count = state.items.length;
  $("point-count").textContent = `${count} point${count === 1 ? "" : "s"}`;
  $("point-count").dataset.count = String(count);
  $("map-empty").hidden = count > 0;
  hideTooltip();
  renderer().setStyle({ pointSize: pointSize(), opacity: pointOpacity() });
  const tiled = state.pointsFormat === "tiles";
  await renderer().setPoints(state.items, { fit, bounds, tiled, tileInfo: tiled ? tileInfo : null });
  emit("points", { count });
}

function highlight() {
  if (!renderer()) return;
  if (state.selectionPolygon) {
    renderer().highlight({ polygon: state.selectionPolygon });
    return;
  }
  if (state.selection.length) {
    renderer().highlight(state.selection);
    return;
  }
  if (state.pointsFormat === "tiles") {
    // No index search over a sparse array of a million: the ring goes where the item is.
    renderer().highlight({ points: state.selected ? [[state.selected.x, state.selected.y]] : [] });
    return;
  }
  const index = state.selected ? state.items.indexOf(state.selected) : -1;
  renderer().highlight(index >= 0 ? [index] : []);
}

function setColors(colors) {
  state.colors = colors && (colors.by === "value" || colors.dim) ? colors : { by: "kind" };
  return renderer().setColors(state.colors).then(() => emit("colors", { by: state.colors.by }));
}

// ---------------------------------------------------------------- tooltip ----

let tooltipFor = null;
const TOOLTIP_COLUMNS = 6; // metadata columns shown in a tooltip (maps built from a table), in column order

function showTooltipFor(item, pos) {
  const tip = $("tooltip");
  tooltipFor = item;
  if (item.label === null) {
    // Binary-loaded point: fetch its label, then show the tooltip if it is still the one wanted.
    itemDetails(item).then(() => {
      if (tooltipFor === item) showTooltipFor(item, pos);
    }).catch(() => {});
    return;
  }
  tip.replaceChildren();
  tip.dataset.itemId = item.id;
  if (hasThumbnail(item)) {
    const img = el("img", { class: "tooltip-thumb", alt: "", src: thumbnailUrl(item) });
    img.addEventListener("error", () => img.remove());
    tip.append(img);
  }
  tip.append(
    el("span", { class: "tooltip-kind", text: KIND_NAMES[item.kind] || item.kind }),
    el("span", { class: "tooltip-label", text: item.label }),
  );
  if (item.pending) tip.append(el("span", { class: "tooltip-pending", text: PENDING_TEXT }));
  const columns = Object.entries(item.columns || {}).slice(0, TOOLTIP_COLUMNS);
  if (columns.length) {
    tip.append(el("dl", { class: "tooltip-columns" }, ...columns.flatMap(([name, value]) => [
      el("dt", { text: name }), el("dd", { text: String(value) })])));
  }
  const w = canvas.getBoundingClientRect().width || 1;
  tip.hidden = false;
  const left = Math.min(Math.max(pos[0] + 12, 4), w - tip.offsetWidth - 4);
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.max(pos[1] - tip.offsetHeight - 10, 4)}px`;
}

function hideTooltip() {
  tooltipFor = null;
  const tip = $("tooltip");
  tip.hidden = true;
  delete tip.dataset.itemId;
}

// ---------------------------------------------------------------- points ----

/** Parse `/points.bin`: b"LMP1", uint32 n, float32 x[n], float32 y[n], uint8 kind[n], little-endian. */
function parseBinaryPoints(buffer) {
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 4));
  if (magic !== "LMP1") throw new Error("unexpected points format");
  const n = view.getUint32(4, true);
  if (buffer.byteLength < 8 + 9 * n) throw new Error("truncated points payload");
  const items = new Array(n);
  for (let i = 0; i < n; i += 1) {
    items[i] = {
      id: null, // filled lazily from /points/{index} when someone hovers or selects it
      label: null,
      kind: KINDS[view.getUint8(8 + 8 * n + i)] || "generated",
      x: view.getFloat32(8 + 4 * i, true),
      y: view.getFloat32(8 + 4 * n + 4 * i, true),
    };
  }
  return items;
}

let tileInfo = null; // GET .../tiles of the version the page shows (tile-only maps)

/** Maps too large to hold whole (or `?points=tiles`): the page downloads no points. */
function tileOnly() {
  const forced = new URLSearchParams(window.location.search).get("points");
  if (forced === "tiles") return true;
  return !["json", "bin"].includes(forced) && (state.meta.count || 0) > WHOLE_POINTS_MAX;
}

/**
 * All points of the map: JSON (ids and labels) for ordinary maps, the compact binary form for large ones; for
 * tile-only maps none at all: a sparse array as long as the map, filled on demand (itemAt) with the points the
 * user hovers or clicks, which the renderer has from its tiles.
 */
async function fetchItems() {
  const base = `/api/maps/${encodeURIComponent(state.mapId)}`;
  if (tileOnly()) {
    tileInfo = await api(`${base}/tiles`);
    state.pointsFormat = "tiles";
    state.pointsVersion = tileInfo.version;
    return new Array(tileInfo.count);
  }
  const forced = new URLSearchParams(window.location.search).get("points");
  const binary = forced === "bin" || (forced !== "json" && (state.meta.count || 0) >= BINARY_POINTS_FROM);
  state.pointsFormat = binary ? "binary" : "json";
  if (binary) {
    const response = await api(`${base}/points.bin`, { raw: true });
    const items = parseBinaryPoints(await response.arrayBuffer());
    // Binary points carry no ids or labels: later requests name them by index, as of this version.
    state.pointsVersion = Number(response.headers.get("X-Map-Version"));
    return items;
  }
  const data = await api(`${base}/points`);
  return (data.points || []).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
}

/** The item at points-order `index` (tile-only maps: made from the renderer's tile point, id and label on demand). */
function itemAt(index) {
  if (index < 0 || index >= state.items.length) return null;
  if (state.items[index]) return state.items[index];
  const point = renderer().pointAt(index);
  if (!point) return null;
  const item = { id: point.id || null, label: null, kind: point.kind, x: point.x, y: point.y, index };
  state.items[index] = item;
  return item;
}

const detailsLoading = new WeakMap();

/** Make sure an item has its id and label (binary-loaded items get them on demand). */
function itemDetails(item) {
  if (item.id !== null && item.label !== null) return Promise.resolve(item);
  if (!detailsLoading.has(item)) {
    const index = Number.isInteger(item.index) ? item.index : state.items.indexOf(item);
    detailsLoading.set(item, api(`/api/maps/${encodeURIComponent(state.mapId)}/points/${index}`)
      .then((p) => Object.assign(item, { id: p.id, label: p.label, kind: p.kind, thumbnail: p.thumbnail, pending: p.pending,
        columns: p.columns }))
      .finally(() => detailsLoading.delete(item)));
  }
  return detailsLoading.get(item);
}

/** Every point anew (fit: frame the camera on the map again, as after a re-projection). */
async function reloadPoints({ fit = true } = {}) {
  state.items = await fetchItems();
  actions.select(null);
  watchPending();
  await redraw({ fit, bounds: state.meta.bounds });
}

function addItems(newItems) {
  if (state.pointsFormat === "tiles") return reloadPoints({ fit: false }); // the new version's tiles hold them
  // Nothing on the map yet, so nothing can move: fit the fixed coordinate frame to the first items.
  const fit = !state.items.length && newItems.length > 0;
  state.items.push(...newItems);
  watchPending();
  return redraw({ fit });
}

/** An item was deleted on the server: drop it here (tile-only maps: the next version's tiles lack it). */
function removeItem(item) {
  if (state.pointsFormat === "tiles") return reloadPoints({ fit: false });
  state.items = state.items.filter((p) => p !== item);
  return redraw();
}

let pendingTimer = null;

/** Prompts whose generated picture is still being made: ask again until every one has arrived. */
function watchPending() {
  if (pendingTimer || state.pointsFormat !== "json" || !state.items.some((p) => p.pending)) return;
  pendingTimer = setTimeout(async () => {
    pendingTimer = null;
    try {
      const data = await api(`/api/maps/${encodeURIComponent(state.mapId)}/points`);
      const byId = new Map((data.points || []).map((p) => [p.id, p]));
      for (const item of state.items) {
        const now = byId.get(item.id);
        if (item.pending && now) Object.assign(item, { pending: now.pending, thumbnail: now.thumbnail });
      }
      if (state.selected && !state.selected.pending) actions.select(state.selected);
    } catch (_) { /* try again on the next round */ }
    watchPending();
  }, PENDING_POLL_MS);
}

// ---------------------------------------------------------------- metadata ----

function renderMeta() {
  const meta = state.meta;
  $("map-title").textContent = meta.title || meta.id;
  document.title = `${meta.title || meta.id} — latentmap`;
  const projection = meta.projection ? `${meta.projection.method}${meta.projection.revision ? ` · revision ${meta.projection.revision}` : ""}` : "";
  $("map-meta").textContent = [meta.space, projection].filter(Boolean).join(" · ");
  const refit = $("refit-btn");
  refit.textContent = meta.refit_recommended ? "Re-project map… (recommended: the map has grown)" : "Re-project map…";
  $("map-empty-hint").textContent = state.canEdit ? "Add prompts or images in the panel, or drop images here." : "Nothing to decode yet.";
}

/** Re-read the metadata after a change: projection method, refit hint; reload points if someone refitted. */
async function refreshMeta({ reload = "if-moved" } = {}) {
  try {
    const before = state.meta && state.meta.projection ? state.meta.projection.revision : null;
    state.meta = await api(`/api/maps/${encodeURIComponent(state.mapId)}`, { editKey: state.editKey });
    renderMeta();
    const after = state.meta.projection ? state.meta.projection.revision : null;
    const moved = before !== null && after !== null && after !== before && state.items.length && before !== 0;
    // Positions changed on the server (a refit, here or from another window): redraw everything.
    if (reload === "always" || moved) await reloadPoints();
  } catch (err) {
    if (reload === "always") throw err; // otherwise the change itself worked; a stale subtitle is harmless
  }
}

function showFatal(title, message) {
  $("map-title").textContent = title;
  const box = $("map-error");
  box.replaceChildren(el("p", { class: "map-error-title", text: title }), el("p", { text: message }),
    el("p", {}, el("a", { href: "/", text: "Back to all maps" })));
  box.hidden = false;
  root.dataset.error = "1";
  document.body.classList.add("map-failed");
  document.body.dataset.ready = "error";
}

// ---------------------------------------------------------------- start ----

provide("redraw", redraw);
provide("setColors", setColors);
provide("itemDetails", itemDetails);
provide("itemAt", itemAt);
provide("removeItem", removeItem);
provide("addItems", addItems);
provide("refreshMeta", refreshMeta);
provide("fitView", () => renderer().fitView());

on("selected", highlight);
on("selection", highlight);
on("points", highlight);
on("contrast", () => { if (renderer()) renderer().setStyle({ background: background() }); });
on("cursor", ({ px, py }) => {
  // Keyboard users get the tooltip of the item under the cursor too.
  const item = itemAt(renderer().pick(px, py, 12));
  if (item) showTooltipFor(item, renderer().dataToScreen(item.x, item.y));
  else hideTooltip();
});

export async function boot() {
  state.mapId = root.dataset.mapId;
  initLargeTextToggle();
  state.editKey = readEditKey();
  const query = new URLSearchParams(window.location.search);
  const seedParam = Number(query.get("seed"));
  state.seed = Number.isInteger(seedParam) && seedParam >= 0 ? Math.min(seedParam, MAX_SEED) : 0;

  api("/api/health").then((health) => { state.previewAvailable = Boolean(health.preview); }).catch(() => {});
  try {
    state.meta = await api(`/api/maps/${encodeURIComponent(state.mapId)}`, { editKey: state.editKey });
  } catch (err) {
    if (err.status === 404) showFatal("Map not found", "There is no map with this address. It may have been deleted, or the link is incomplete.");
    else showFatal("Could not open the map", err.message);
    return;
  }
  if (state.editKey && !state.meta.can_edit) {
    toast("The stored edit key for this map is not valid; the map opens view-only.", "error");
  }
  applyEditMode();
  renderMeta();

  try {
    state.renderMode = fastRender() ? "fast" : "full";
    setRenderer(createRenderer({ canvas, mapId: state.mapId, fast: state.renderMode === "fast", pointSize: pointSize(),
      opacity: pointOpacity() }));
  } catch (err) {
    showFatal("Cannot draw the map", `This browser could not start WebGL (${err.message}).`);
    return;
  }
  renderer().setStyle({ background: background() });
  renderer().onView(() => {
    hideTooltip();
    if (state.ready) emit("view", renderer().view());
  });
  renderer().onHover((index, pos) => {
    state.hovered = index;
    const item = index >= 0 ? itemAt(index) : null;
    if (!item) hideTooltip();
    else showTooltipFor(item, pos);
  });
  onLargeTextChange((on) => {
    renderer().setStyle({ pointSize: pointSize() });
    emit("large-text", { on });
  });
  try {
    state.items = await fetchItems();
    await redraw({ fit: true, bounds: state.meta.bounds });
  } catch (err) {
    showFatal("Could not load the points", err.message);
    return;
  }
  watchPending();

  const view = (query.get("view") || "").split(",").map(Number);
  const linked = view.length === 3 && view.every(Number.isFinite) && view[2] > 0
    ? { x: view[0], y: view[1], zoom: view[2] } : null;
  if (linked) await renderer().setView(linked);
  start(query);
  if (linked) {
    // The panels have laid themselves out (footer controls, tabs): the canvas may have changed size since. A
    // share link's zoom is the visible map height, so apply it again to the canvas as it is now.
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    await renderer().setView(linked);
  }
  shareStateChanged();
  document.body.dataset.ready = "1";
}
