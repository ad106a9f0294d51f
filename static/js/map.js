// The map page: draws a map's points with regl-scatterplot, decodes any clicked spot, and (for the owner) adds,
// deletes and re-projects items. All user-provided text is written with textContent, never as HTML.

import createScatterplot from "/static/vendor/regl-scatterplot-1.16.0.esm.js";
import { api } from "./api.js";
import { copyText, el, initLargeTextToggle, isLargeText, onLargeTextChange, showError, toast } from "./common.js";

const KINDS = ["text", "image", "generated"];
const KIND_COLORS = ["#f2b84b", "#4cc3d9", "#d77be0"];
const KIND_NAMES = { text: "Prompt", image: "Image", generated: "Generated" };
const HISTORY_LENGTH = 8;
const UPLOAD_CHUNK = 8;
const PROMPT_CHUNK = 50;
const BINARY_POINTS_FROM = 20000; // maps this large load /points.bin (9 bytes a point) instead of JSON
// Maps this large draw points as squares without alpha blending (regl-scatterplot's performanceMode): measured
// in bench/render.py. `?render=fast|full` overrides it.
const FAST_RENDER_FROM = 200000;
const PENDING_POLL_MS = 2500; // while prompts wait for their generated picture
const PENDING_TEXT = "picture being generated…";
const MAX_SEED = 2147483647;
const CLICK_SLOP_PX = 5;
const PREVIEW_AFTER_MS = 700; // when full decodes take longer than this, a quick preview is shown first

const $ = (id) => document.getElementById(id);
const root = $("map-root");
const frame = $("map-frame");
const canvas = $("map-canvas");

const state = {
  mapId: root.dataset.mapId,
  editKey: null,
  meta: null,
  items: [],
  // Fixed data -> scatter coordinates while the page is open (new points never move the others):
  // sx = (x - cx) * s, sy = (y - cy) * s. Recomputed only after a re-projection.
  norm: { cx: 0, cy: 0, s: 1 },
  seed: 0,
  current: null, // {x, y, seed, url, blob}
  history: [],
  hovered: null,
  selected: null,
  decodeState: "idle",
  ready: false,
  kbdCursor: null, // [px, py] in CSS pixels, for keyboard use
  previewAvailable: false, // the space offers quick previews (GET /api/health)
  lastDecodeMs: 0, // how long the last full decode took
};
window.latentmap = { state }; // the page's public surface: browser tests and the explore/classroom modules

/** Tell the page's other modules (explore.js, classroom.js) what happened: `latentmap:<name>` on document. */
function emit(name, detail = {}) {
  document.dispatchEvent(new CustomEvent(`latentmap:${name}`, { detail }));
}

let scatterplot = null;
let decodeAbort = null;
const decodeCache = new Map(); // cacheKey() -> {blob, url, cache}

// ---------------------------------------------------------------- edit key (owner) ----

function keyStorageName() {
  return `latentmap:key:${state.mapId}`;
}

function readEditKey() {
  const hash = window.location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash);
  const fromHash = params.get("key");
  if (fromHash) {
    try { localStorage.setItem(keyStorageName(), fromHash); } catch (_) { /* private mode: keep it in memory */ }
    // Strip the key from the address bar (and so from bookmarks, screenshots and copied URLs).
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return fromHash;
  }
  try { return localStorage.getItem(keyStorageName()); } catch (_) { return null; }
}

function canEdit() {
  return Boolean(state.meta && state.meta.can_edit && state.editKey);
}

function applyEditMode() {
  const owner = canEdit();
  for (const node of document.querySelectorAll(".owner-only")) {
    node.hidden = !owner || (node.id === "delete-btn" && !(state.selected && state.selected.id));
  }
  $("readonly-note").hidden = owner;
  root.classList.toggle("is-owner", owner);
}

// ---------------------------------------------------------------- coordinates ----

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

function toScatter(x, y) {
  const { cx, cy, s } = state.norm;
  return [(x - cx) * s, (y - cy) * s];
}

function fromScatter(sx, sy) {
  const { cx, cy, s } = state.norm;
  return [sx / s + cx, sy / s + cy];
}

function canvasSize() {
  const rect = canvas.getBoundingClientRect();
  return [rect.width || 1, rect.height || 1];
}

// The scatterplot draws point p at clip = projection * cameraView * model * p, with
// projection = scale(1 / viewAspect, 1), model = scale(dataAspect, 1). Only the 2D affine part matters.
function affine() {
  const [w, h] = canvasSize();
  const aspect = w / h;
  const view = scatterplot.get("cameraView");
  const dar = scatterplot.get("aspectRatio") || 1;
  return {
    a: (view[0] * dar) / aspect, c: view[4] / aspect, e: view[12] / aspect,
    b: view[1] * dar, d: view[5], f: view[13],
    w, h,
  };
}

/** Canvas pixel position (CSS px from the canvas' top-left) -> data coordinates. */
function screenToData(px, py) {
  const { a, b, c, d, e, f, w, h } = affine();
  const clipX = -1 + (2 * px) / w;
  const clipY = 1 - (2 * py) / h;
  const det = a * d - b * c;
  const rx = clipX - e;
  const ry = clipY - f;
  const sx = (d * rx - c * ry) / det;
  const sy = (a * ry - b * rx) / det;
  return fromScatter(sx, sy);
}

/** Data coordinates -> canvas pixel position. */
function dataToScreen(x, y, m = affine()) {
  const { a, b, c, d, e, f, w, h } = m;
  const [sx, sy] = toScatter(x, y);
  const clipX = a * sx + c * sy + e;
  const clipY = b * sx + d * sy + f;
  return [((clipX + 1) / 2) * w, ((1 - clipY) / 2) * h];
}

/** Height of the visible area in data units. */
function visibleDataHeight() {
  const view = scatterplot.get("cameraView");
  return 2 / (Math.abs(view[5]) * state.norm.s);
}

function decimalsForView() {
  const [, h] = canvasSize();
  const perPixel = visibleDataHeight() / h;
  // The server keys its decode cache on 6 decimals, so never send more than that.
  return Math.min(6, Math.max(2, Math.ceil(-Math.log10(perPixel)) + 1));
}

function roundTo(value, decimals) {
  return Number(value.toFixed(decimals));
}

function currentView() {
  const [w, h] = canvasSize();
  const [x, y] = screenToData(w / 2, h / 2);
  const zoom = 1 / visibleDataHeight();
  const digits = decimalsForView();
  return { x: roundTo(x, digits), y: roundTo(y, digits), zoom: Number(zoom.toPrecision(5)) };
}

function setView({ x, y, zoom }) {
  if (![x, y, zoom].every(Number.isFinite) || zoom <= 0) return Promise.resolve();
  const target = toScatter(x, y);
  const dar = scatterplot.get("aspectRatio") || 1;
  // Visible data height = 1 / zoom; visible scatter height = 2 * camera distance = height * s.
  const distance = state.norm.s / (2 * zoom);
  return scatterplot.zoomToLocation([target[0] * dar, target[1]], distance);
}

// ---------------------------------------------------------------- URL state ----

function parseNumbers(text, n) {
  if (!text) return null;
  const parts = text.split(",").map((v) => Number(v));
  return parts.length === n && parts.every(Number.isFinite) ? parts : null;
}

function stateUrl() {
  const params = new URLSearchParams();
  if (scatterplot) {
    const v = currentView();
    params.set("view", `${v.x},${v.y},${v.zoom}`);
  }
  if (state.current) {
    params.set("at", `${state.current.x},${state.current.y}`);
  }
  params.set("seed", String(state.seed));
  // Other modules' share-link params (explore.js: path, steps), kept across every URL update.
  for (const [name, value] of Object.entries(state.urlParams || {})) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  // URLSearchParams would escape the commas; they are safe in a query and easier to read unescaped.
  return `${window.location.pathname}?${params.toString().replace(/%2C/g, ",")}`;
}

let urlTimer = null;
function updateUrl() {
  clearTimeout(urlTimer);
  urlTimer = setTimeout(() => {
    history.replaceState(null, "", stateUrl());
    $("share-url").value = shareLink();
  }, 120);
}

function updateUrlNow() {
  clearTimeout(urlTimer);
  history.replaceState(null, "", stateUrl());
  $("share-url").value = shareLink();
}

function shareLink() {
  return window.location.origin + stateUrl();
}

function editLink() {
  return `${shareLink()}#key=${encodeURIComponent(state.editKey)}`;
}

// ---------------------------------------------------------------- drawing ----

function kindIndex(kind) {
  const i = KINDS.indexOf(kind);
  return i >= 0 ? i : 2;
}

function redraw() {
  const values = state.colorValues; // optional 4th column (valueB) per point, set by explore.js's "Colour by"
  const points = state.items.map((p, i) => {
    const [sx, sy] = toScatter(p.x, p.y);
    return [sx, sy, kindIndex(p.kind), (values && values[i]) || 0];
  });
  const count = state.items.length;
  $("point-count").textContent = `${count} point${count === 1 ? "" : "s"}`;
  $("point-count").dataset.count = String(count);
  $("map-empty").hidden = count > 0;
  hideTooltip();
  scatterplot.set({ pointSize: pointSize(), opacity: pointOpacity() });
  return scatterplot.draw(points).then(() => emit("points", { count }));
}

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

function createPlot() {
  state.renderMode = fastRender() ? "fast" : "full";
  scatterplot = createScatterplot({
    canvas,
    performanceMode: state.renderMode === "fast",
    width: "auto",
    height: "auto",
    backgroundColor: "#14171c",
    pointColor: KIND_COLORS,
    pointColorHover: "#ffffff",
    pointColorActive: "#ffffff",
    colorBy: "valueA",
    pointSize: pointSize(),
    pointSizeSelected: 4,
    pointOutlineWidth: 2,
    opacity: pointOpacity(),
    lassoInitiator: false,
    lassoOnLongPress: false,
    actionKeyMap: {},
    deselectOnDblClick: false,
    deselectOnEscape: true,
    showReticle: false,
  });
  scatterplot.subscribe("pointover", onPointOver);
  scatterplot.subscribe("pointout", hideTooltip);
  scatterplot.subscribe("view", onViewChange);
  onLargeTextChange(() => scatterplot.set({ pointSize: pointSize() }));
  new ResizeObserver(() => positionMarkers()).observe(canvas);
}

function onViewChange() {
  positionMarkers();
  hideTooltip();
  if (state.ready) {
    updateUrl();
    emit("view", currentView());
  }
}

function positionMarkers() {
  if (!scatterplot) return;
  const cross = $("crosshair");
  if (state.current) {
    const [px, py] = dataToScreen(state.current.x, state.current.y);
    const [w, h] = canvasSize();
    const inside = px >= -20 && py >= -20 && px <= w + 20 && py <= h + 20;
    cross.hidden = !inside;
    cross.style.transform = `translate(${px}px, ${py}px)`;
  } else {
    cross.hidden = true;
  }
  const cursor = $("kbd-cursor");
  if (state.kbdCursor && frame.matches(":focus-visible")) {
    cursor.hidden = false;
    cursor.style.transform = `translate(${state.kbdCursor[0]}px, ${state.kbdCursor[1]}px)`;
  } else {
    cursor.hidden = true;
  }
}

// ---------------------------------------------------------------- tooltip ----

function onPointOver(index) {
  const item = state.items[index];
  if (!item) return;
  state.hovered = index;
  let pos;
  try { pos = scatterplot.getScreenPosition(index); } catch (_) { pos = null; }
  showTooltipFor(item, pos || dataToScreen(item.x, item.y));
}

function showTooltipFor(item, pos) {
  const tip = $("tooltip");
  if (item.label === null) {
    // Binary-loaded point: fetch its label, then show the tooltip if it is still the one wanted.
    state.tooltipFor = item;
    itemDetails(item).then(() => {
      if (state.tooltipFor === item) showTooltipFor(item, pos);
    }).catch(() => {});
    return;
  }
  state.tooltipFor = item;
  tip.replaceChildren();
  tip.dataset.itemId = item.id;
  if (hasThumbnail(item)) {
    const img = el("img", { class: "tooltip-thumb", alt: "", src: `/api/items/${encodeURIComponent(item.id)}/thumbnail` });
    img.addEventListener("error", () => img.remove());
    tip.append(img);
  }
  tip.append(
    el("span", { class: "tooltip-kind", text: KIND_NAMES[item.kind] || item.kind }),
    el("span", { class: "tooltip-label", text: item.label }),
  );
  if (item.pending) tip.append(el("span", { class: "tooltip-pending", text: PENDING_TEXT }));
  const [w] = canvasSize();
  tip.hidden = false;
  const left = Math.min(Math.max(pos[0] + 12, 4), w - tip.offsetWidth - 4);
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.max(pos[1] - tip.offsetHeight - 10, 4)}px`;
}

function hideTooltip() {
  state.hovered = null;
  state.tooltipFor = null;
  const tip = $("tooltip");
  tip.hidden = true;
  delete tip.dataset.itemId;
}

// ---------------------------------------------------------------- selection ----

function select(item) {
  state.selected = item || null;
  if (scatterplot) {
    // Keep the plot's highlight in step (clicks select in the library already; keyboard and deletes do not).
    const index = item ? state.items.indexOf(item) : -1;
    try {
      if (index >= 0) scatterplot.select([index], { preventEvent: true });
      else scatterplot.deselect({ preventEvent: true });
    } catch (_) { /* nothing drawn yet */ }
  }
  const section = $("selected-section");
  if (!item) {
    section.hidden = true;
    applyEditMode();
    return;
  }
  section.hidden = false;
  if (item.label === null || item.id === null) {
    $("selected-label").textContent = "Loading…";
    $("vary-controls").hidden = true;
    $("selected-thumb").hidden = true;
    applyEditMode();
    itemDetails(item).then(() => {
      if (state.selected === item) select(item);
    }).catch((err) => {
      if (state.selected === item) $("selected-label").textContent = `Could not load this item. ${err.message}`;
    });
    return;
  }
  $("selected-label").textContent = `${KIND_NAMES[item.kind] || item.kind}: ${item.label}`
    + (item.pending ? ` (${PENDING_TEXT})` : "");
  const canVary = hasThumbnail(item) && !item.pending;
  if ($("vary-controls").dataset.itemId !== item.id) $("variations").replaceChildren();
  $("vary-controls").dataset.itemId = item.id;
  $("vary-controls").hidden = !canVary;
  const thumb = $("selected-thumb");
  if (hasThumbnail(item)) {
    thumb.src = `/api/items/${encodeURIComponent(item.id)}/thumbnail`;
    thumb.alt = item.label;
    thumb.hidden = false;
  } else {
    thumb.hidden = true;
    thumb.removeAttribute("src");
  }
  applyEditMode();
}

// ---------------------------------------------------------------- decoding ----

function setDecodeState(value) {
  state.decodeState = value;
  root.dataset.decodeState = value;
  $("decode-view").setAttribute("aria-busy", String(value === "loading"));
  $("decode-spinner").hidden = value !== "loading";
}

function cacheKey(x, y, seed) {
  // The projection revision is part of the key, as on the server: after a refit the same (x, y) is elsewhere.
  const revision = state.meta && state.meta.projection ? state.meta.projection.revision : 0;
  return `${revision}|${x},${y},${seed}`;
}

async function decodeAt(x, y, { seed = state.seed, fromHistory = false } = {}) {
  state.current = { x, y, seed };
  positionMarkers();
  updateUrlNow();
  showError($("decode-error"), "");
  $("decode-placeholder").hidden = true;
  $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed}`;
  if (decodeAbort) decodeAbort.abort();
  if (!state.items.length) {
    // Decoding blends the nearest items: with none there is nothing to decode (the server says the same).
    setDecodeState("error");
    showError($("decode-error"), canEdit()
      ? "Nothing to decode yet: add prompts or images first."
      : "Nothing to decode yet: this map has no items.");
    return;
  }
  const key = cacheKey(x, y, seed);
  let entry = decodeCache.get(key);
  if (!entry) {
    const controller = new AbortController();
    decodeAbort = controller;
    setDecodeState("loading");
    $("decode-img").classList.add("is-stale");
    try {
      const decodeUrl = `/api/maps/${encodeURIComponent(state.mapId)}/decode`;
      if (state.previewAvailable && state.lastDecodeMs > PREVIEW_AFTER_MS) {
        // Decodes are slow here: show the space's quick, rough picture first, then the full one.
        const preview = await api(decodeUrl, {
          method: "POST", json: { x, y, seed, preview: true }, raw: true, signal: controller.signal,
        });
        const previewUrl = URL.createObjectURL(await preview.blob());
        if (state.current && cacheKey(state.current.x, state.current.y, state.current.seed) === key) {
          showImage(previewUrl, x, y, seed);
          $("decode-img").classList.add("is-preview");
          $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed} · preview, full image coming`;
        }
      }
      const started = performance.now();
      const response = await api(decodeUrl, {
        method: "POST", json: { x, y, seed }, raw: true, signal: controller.signal,
      });
      if (response.headers.get("X-Decode-Cache") !== "hit") state.lastDecodeMs = performance.now() - started;
      const blob = await response.blob();
      entry = { blob, url: URL.createObjectURL(blob), cache: response.headers.get("X-Decode-Cache") };
      decodeCache.set(key, entry);
    } catch (err) {
      if (err.name === "AbortError") return;
      if (decodeAbort === controller) {
        setDecodeState("error");
        $("decode-img").classList.remove("is-stale");
        showError($("decode-error"), `Could not decode this spot. ${err.message}`);
      }
      return;
    } finally {
      if (decodeAbort === controller) decodeAbort = null;
    }
  }
  if (!state.current || cacheKey(state.current.x, state.current.y, state.current.seed) !== key) return;
  state.current = { x, y, seed, url: entry.url, blob: entry.blob, cache: entry.cache };
  showImage(entry.url, x, y, seed);
  $("decode-coords").textContent = `x ${x}, y ${y} · seed ${seed}${entry.cache === "hit" ? " · cached" : ""}`;
  if (!fromHistory) pushHistory(state.current);
  setDecodeState("done");
  emit("decoded", { x, y, seed, url: entry.url });
}

function showImage(url, x, y, seed) {
  const img = $("decode-img");
  img.classList.remove("is-stale", "is-preview");
  img.src = url;
  img.alt = `Decoded image at x ${x}, y ${y}, seed ${seed}`;
  img.hidden = false;
  const download = $("download-btn");
  download.href = url;
  download.download = `latentmap-${state.mapId}-${x}_${y}-seed${seed}.png`;
  download.hidden = false;
  download.removeAttribute("aria-disabled");
}

function pushHistory(entry) {
  const key = cacheKey(entry.x, entry.y, entry.seed);
  const first = state.history[0];
  if (first && cacheKey(first.x, first.y, first.seed) === key) return; // already first: keep the buttons as they are
  state.history = [entry, ...state.history.filter((h) => cacheKey(h.x, h.y, h.seed) !== key)].slice(0, HISTORY_LENGTH);
  renderHistory();
}

function renderHistory() {
  const list = $("history");
  $("history-heading").hidden = state.history.length === 0;
  list.replaceChildren();
  for (const entry of state.history) {
    const label = `Return to x ${entry.x}, y ${entry.y}, seed ${entry.seed}`;
    const button = el("button", { type: "button", class: "history-btn", title: label, "aria-label": label },
      el("img", { src: entry.url, alt: "" }));
    if (state.current && cacheKey(state.current.x, state.current.y, state.current.seed) === cacheKey(entry.x, entry.y, entry.seed)) {
      button.classList.add("is-current");
    }
    button.addEventListener("click", () => returnTo(entry));
    list.append(el("li", {}, button));
  }
}

function returnTo(entry) {
  setSeed(entry.seed, { decode: false });
  const [px, py] = dataToScreen(entry.x, entry.y);
  const [w, h] = canvasSize();
  const goto = px < 0 || py < 0 || px > w || py > h ? setView({ x: entry.x, y: entry.y, zoom: currentView().zoom }) : Promise.resolve();
  goto.then(() => {
    decodeAt(entry.x, entry.y, { seed: entry.seed, fromHistory: true }).then(renderHistory);
  });
}

function setSeed(value, { decode = true } = {}) {
  let seed = Math.trunc(Number(value));
  if (!Number.isFinite(seed) || seed < 0) seed = 0;
  seed = Math.min(seed, MAX_SEED);
  const unchanged = seed === state.seed;
  state.seed = seed;
  $("seed-input").value = String(seed);
  if (unchanged && state.current && state.current.seed === seed) return; // e.g. a second "change" on blur
  if (decode && state.current) decodeAt(state.current.x, state.current.y, { seed });
  else if (state.ready) updateUrlNow();
}

function decodeAtScreen(px, py) {
  const [x, y] = screenToData(px, py);
  const digits = decimalsForView();
  return decodeAt(roundTo(x, digits), roundTo(y, digits));
}

// ---------------------------------------------------------------- pointer + keyboard ----

/** The drawn item under a canvas pixel position (nearest within the point radius), or null. */
function itemAtScreen(px, py, slop = 3) {
  const radius = pointSize() / 2 + slop;
  let best = null;
  let bestDistance = radius;
  const m = affine();
  for (const item of state.items) {
    const [x, y] = dataToScreen(item.x, item.y, m);
    const distance = Math.hypot(x - px, y - py);
    if (distance <= bestDistance) {
      best = item;
      bestDistance = distance;
    }
  }
  return best;
}

let downAt = null;
canvas.addEventListener("pointerdown", (event) => {
  if (event.button === 0) downAt = [event.clientX, event.clientY];
});
canvas.addEventListener("click", (event) => {
  if (!scatterplot || !downAt) return;
  const moved = Math.hypot(event.clientX - downAt[0], event.clientY - downAt[1]);
  downAt = null;
  if (moved > CLICK_SLOP_PX) return; // that was a pan
  const rect = canvas.getBoundingClientRect();
  const px = event.clientX - rect.left;
  const py = event.clientY - rect.top;
  const hit = itemAtScreen(px, py);
  select(hit);
  state.kbdCursor = [px, py];
  decodeAtScreen(px, py);
});

frame.addEventListener("focus", () => {
  if (!state.kbdCursor) {
    const [w, h] = canvasSize();
    state.kbdCursor = [w / 2, h / 2];
  }
  positionMarkers();
});
frame.addEventListener("blur", () => positionMarkers());

frame.addEventListener("keydown", (event) => {
  if (!scatterplot || event.target !== frame) return;
  const [w, h] = canvasSize();
  const step = event.shiftKey ? 60 : 15;
  const cur = state.kbdCursor || [w / 2, h / 2];
  let handled = true;
  switch (event.key) {
    case "ArrowLeft": cur[0] = Math.max(0, cur[0] - step); break;
    case "ArrowRight": cur[0] = Math.min(w, cur[0] + step); break;
    case "ArrowUp": cur[1] = Math.max(0, cur[1] - step); break;
    case "ArrowDown": cur[1] = Math.min(h, cur[1] + step); break;
    case "Enter":
    case " ": {
      const hit = itemAtScreen(cur[0], cur[1], 12);
      select(hit);
      decodeAtScreen(cur[0], cur[1]);
      break;
    }
    case "+":
    case "=":
    case "-": {
      const v = currentView();
      setView({ ...v, zoom: v.zoom * (event.key === "-" ? 1 / 1.4 : 1.4) });
      break;
    }
    case "0": fitView(); break;
    default: handled = false;
  }
  if (handled) {
    event.preventDefault();
    state.kbdCursor = cur;
    positionMarkers();
    // Keyboard users get the tooltip of the item under the cursor too.
    const near = itemAtScreen(cur[0], cur[1], 12);
    if (near) showTooltipFor(near, dataToScreen(near.x, near.y));
    else hideTooltip();
  }
});

function fitView() {
  return scatterplot.zoomToOrigin();
}

// ---------------------------------------------------------------- adding items ----

function setBusy(text) {
  const box = $("add-progress");
  box.hidden = !text;
  $("add-progress-text").textContent = text || "";
  for (const id of ["prompt-submit", "upload-submit", "refit-btn"]) $(id).disabled = Boolean(text);
  root.dataset.adding = text ? "1" : "0";
}

/** Re-read the metadata after a change: projection method, refit hint; reload points if someone refitted. */
async function refreshMeta() {
  try {
    const before = state.meta && state.meta.projection ? state.meta.projection.revision : null;
    const meta = await api(`/api/maps/${encodeURIComponent(state.mapId)}`, { editKey: state.editKey });
    state.meta = meta;
    renderMeta();
    const after = meta.projection ? meta.projection.revision : null;
    if (before !== null && after !== null && after !== before && state.items.length && before !== 0) {
      // Positions changed on the server (a refit from another window): redraw everything.
      await loadPoints({ renormalize: true });
    }
  } catch (_) { /* the change itself worked; a stale subtitle is harmless */ }
}

function addItems(newItems) {
  if (!state.items.length && newItems.length) {
    // Nothing on the map yet, so nothing can move: fit the fixed coordinate frame to the first items.
    state.norm = computeNorm(null, newItems);
  }
  state.items.push(...newItems);
  watchPending();
  return redraw();
}

const MAX_VARIATIONS = 6;

/** Image-to-image from the selected item: each click a new seed, shown newest first beside its download. */
async function varySelected() {
  const item = state.selected;
  if (!item || !item.id) return;
  const strength = Number($("vary-strength").value);
  const seed = (state.seed + (state.variationCount = (state.variationCount || 0) + 1)) % (MAX_SEED + 1);
  const button = $("vary-btn");
  showError($("vary-error"), "");
  button.disabled = true;
  try {
    const response = await api(`/api/maps/${encodeURIComponent(state.mapId)}/items/${encodeURIComponent(item.id)}/vary`, {
      method: "POST", json: { seed, strength }, raw: true,
    });
    if (state.selected !== item) return;
    const url = URL.createObjectURL(await response.blob());
    const text = `Variation of “${item.label}”, change ${strength.toFixed(2)}, seed ${seed}`;
    const link = el("a", { href: url, download: `latentmap-variation-${item.id}-seed${seed}.png`, title: `${text}: download` },
      el("img", { src: url, alt: text }));
    const list = $("variations");
    list.prepend(el("li", { class: "variation", "data-seed": String(seed) }, link));
    while (list.children.length > MAX_VARIATIONS) list.lastElementChild.remove();
  } catch (err) {
    showError($("vary-error"), `Could not vary this image. ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

/** Images (and prompts of spaces that generate a picture for each) have a thumbnail; JSON says which. */
function hasThumbnail(item) {
  return item.thumbnail === undefined ? item.kind !== "text" : Boolean(item.thumbnail);
}

/** Prompts whose generated picture is still being made: ask again until every one has arrived. */
function watchPending() {
  if (state.pendingTimer || state.pointsFormat === "binary" || !state.items.some((p) => p.pending)) return;
  state.pendingTimer = setTimeout(async () => {
    state.pendingTimer = null;
    try {
      const data = await api(`/api/maps/${encodeURIComponent(state.mapId)}/points`);
      const byId = new Map((data.points || []).map((p) => [p.id, p]));
      for (const item of state.items) {
        const now = byId.get(item.id);
        if (item.pending && now) Object.assign(item, { pending: now.pending, thumbnail: now.thumbnail });
      }
      if (state.selected && !state.selected.pending) select(state.selected);
    } catch (_) { /* try again on the next round */ }
    watchPending();
  }, PENDING_POLL_MS);
}

async function addPrompts(text) {
  const prompts = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  if (!prompts.length) {
    showError($("edit-error"), "Write at least one prompt (one per line).");
    return;
  }
  showError($("edit-error"), "");
  let done = 0;
  try {
    for (let i = 0; i < prompts.length; i += PROMPT_CHUNK) {
      const chunk = prompts.slice(i, i + PROMPT_CHUNK);
      setBusy(prompts.length > PROMPT_CHUNK
        ? `Placing prompts ${done + 1}–${done + chunk.length} of ${prompts.length}…`
        : `Placing ${prompts.length} prompt${prompts.length === 1 ? "" : "s"}…`);
      const result = await api(`/api/maps/${encodeURIComponent(state.mapId)}/prompts`, {
        method: "POST", json: { prompts: chunk }, editKey: state.editKey,
      });
      await addItems(result.items || []);
      done += chunk.length;
    }
    $("prompt-input").value = "";
    toast(`Added ${done} prompt${done === 1 ? "" : "s"}.`);
  } catch (err) {
    // Keep the lines that did not make it, so nothing typed is lost.
    $("prompt-input").value = prompts.slice(done).join("\n");
    showError($("edit-error"), `Could not add ${done ? `${prompts.length - done} of the prompts` : "the prompts"}. ${err.message}`);
  } finally {
    setBusy("");
    if (done) refreshMeta();
  }
}

async function uploadFiles(fileList) {
  const files = [...fileList].filter((f) => f && (f.type.startsWith("image/") || /\.(png|jpe?g|gif|webp|bmp)$/i.test(f.name)));
  const skipped = fileList.length - files.length;
  if (!files.length) {
    showError($("edit-error"), skipped ? "Those files are not images." : "Choose one or more images first.");
    return;
  }
  showError($("edit-error"), "");
  let done = 0;
  const errors = [];
  for (let i = 0; i < files.length; i += UPLOAD_CHUNK) {
    const chunk = files.slice(i, i + UPLOAD_CHUNK);
    setBusy(`Adding images ${done + 1}–${done + chunk.length} of ${files.length}…`);
    const form = new FormData();
    for (const file of chunk) form.append("files", file, file.name);
    try {
      const result = await api(`/api/maps/${encodeURIComponent(state.mapId)}/images`, {
        method: "POST", body: form, editKey: state.editKey,
      });
      await addItems(result.items || []);
      done += chunk.length;
    } catch (err) {
      errors.push(err.message);
      if (err.status === 403) break;
    }
  }
  setBusy("");
  if (done) refreshMeta();
  $("file-input").value = "";
  if (errors.length) {
    showError($("edit-error"), `Could not add ${files.length - done} of ${files.length} image${files.length === 1 ? "" : "s"}. ${errors.join(" ")}`);
  }
  if (done) toast(`Added ${done} image${done === 1 ? "" : "s"}.`);
  if (skipped) toast(`Skipped ${skipped} file${skipped === 1 ? "" : "s"} that ${skipped === 1 ? "is" : "are"} not an image.`, "error");
}

$("prompt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  addPrompts($("prompt-input").value);
});
$("prompt-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    addPrompts($("prompt-input").value);
  }
});
$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  uploadFiles($("file-input").files);
});

// Drag & drop onto the map.
let dragDepth = 0;
function hasFiles(event) {
  return event.dataTransfer && [...(event.dataTransfer.types || [])].includes("Files");
}
frame.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  const overlay = $("drop-overlay");
  overlay.textContent = canEdit() ? "Drop images to add them to the map" : "Only the map's owner can add images";
  overlay.classList.toggle("is-refused", !canEdit());
  overlay.hidden = false;
});
frame.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = canEdit() ? "copy" : "none";
});
frame.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) $("drop-overlay").hidden = true;
});
frame.addEventListener("drop", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  if (!canEdit()) {
    toast("Only the map's owner can add images (open the edit link).", "error");
    return;
  }
  uploadFiles(event.dataTransfer.files);
});

// ---------------------------------------------------------------- delete + refit ----

$("vary-btn").addEventListener("click", varySelected);
$("vary-strength").addEventListener("input", (event) => {
  $("vary-strength-value").textContent = Number(event.target.value).toFixed(2);
});
$("delete-btn").addEventListener("click", async () => {
  const item = state.selected;
  if (!item || !canEdit()) return;
  $("delete-btn").disabled = true;
  try {
    await api(`/api/maps/${encodeURIComponent(state.mapId)}/items/${encodeURIComponent(item.id)}`, {
      method: "DELETE", editKey: state.editKey,
    });
    select(null);
    state.items = state.items.filter((p) => p !== item);
    await redraw();
    toast("Item deleted.");
  } catch (err) {
    toast(`Could not delete the item. ${err.message}`, "error");
  } finally {
    $("delete-btn").disabled = false;
  }
});

$("refit-btn").addEventListener("click", () => {
  const dialog = $("refit-dialog");
  dialog.returnValue = "";
  dialog.showModal();
});
$("refit-dialog").addEventListener("close", async () => {
  if ($("refit-dialog").returnValue !== "confirm") return;
  setBusy("Re-projecting all points…");
  try {
    const meta = await api(`/api/maps/${encodeURIComponent(state.mapId)}/refit`, { method: "POST", editKey: state.editKey });
    state.meta = { ...state.meta, ...meta };
    await loadPoints({ renormalize: true });
    renderMeta();
    fitView();
    toast("Map re-projected.");
  } catch (err) {
    showError($("edit-error"), `Could not re-project the map. ${err.message}`);
  } finally {
    setBusy("");
  }
});

// ---------------------------------------------------------------- share ----

$("share-btn").addEventListener("click", async () => {
  updateUrlNow();
  const link = shareLink();
  $("share-url").value = link;
  const ok = await copyText(link);
  toast(ok ? "View-only link copied." : "Copy the link from the field below.");
  if (!ok) $("share-url").select();
});
$("copy-edit-btn").addEventListener("click", async () => {
  if (!canEdit()) return;
  const ok = await copyText(editLink());
  toast(ok ? "Edit link copied. Anyone with it can change this map." : "Could not copy the edit link.", ok ? "info" : "error");
});
$("share-url").addEventListener("focus", (event) => event.target.select());

$("seed-input").addEventListener("change", (event) => setSeed(event.target.value));
$("new-seed-btn").addEventListener("click", () => setSeed(Math.floor(Math.random() * 1_000_000)));
$("reset-view").addEventListener("click", () => fitView());

// ---------------------------------------------------------------- loading ----

function renderMeta() {
  const meta = state.meta;
  $("map-title").textContent = meta.title || meta.id;
  document.title = `${meta.title || meta.id} — latentmap`;
  const projection = meta.projection ? `${meta.projection.method}${meta.projection.revision ? ` · revision ${meta.projection.revision}` : ""}` : "";
  $("map-meta").textContent = [meta.space, projection].filter(Boolean).join(" · ");
  const refit = $("refit-btn");
  refit.textContent = meta.refit_recommended ? "Re-project map… (recommended: the map has grown)" : "Re-project map…";
  $("map-empty-hint").textContent = canEdit() ? "Add prompts or images in the panel, or drop images here." : "Nothing to decode yet.";
}

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

/** All points of the map: JSON (ids and labels) for ordinary maps, the compact binary form for large ones. */
async function fetchItems() {
  const base = `/api/maps/${encodeURIComponent(state.mapId)}`;
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

/** Make sure an item has its id and label (binary-loaded items get them on demand). */
async function itemDetails(item) {
  if (item.id !== null && item.label !== null) return item;
  if (!item.pending) {
    const index = state.items.indexOf(item);
    item.pending = api(`/api/maps/${encodeURIComponent(state.mapId)}/points/${index}`)
      .then((p) => Object.assign(item, { id: p.id, label: p.label, kind: p.kind, thumbnail: p.thumbnail, pending: p.pending }))
      .finally(() => { delete item.pending; });
  }
  return item.pending;
}

async function loadPoints({ renormalize = false } = {}) {
  state.items = await fetchItems();
  if (renormalize) state.norm = computeNorm(state.meta.bounds, state.items);
  select(null);
  watchPending();
  await redraw();
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

async function main() {
  initLargeTextToggle();
  state.editKey = readEditKey();
  const query = new URLSearchParams(window.location.search);
  const seedParam = Number(query.get("seed"));
  state.seed = Number.isInteger(seedParam) && seedParam >= 0 ? Math.min(seedParam, MAX_SEED) : 0;
  $("seed-input").value = String(state.seed);

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
  renderMeta();
  applyEditMode();

  try {
    createPlot();
  } catch (err) {
    showFatal("Cannot draw the map", `This browser could not start WebGL (${err.message}).`);
    return;
  }
  try {
    state.items = await fetchItems();
    state.norm = computeNorm(state.meta.bounds, state.items);
    await redraw();
  } catch (err) {
    showFatal("Could not load the points", err.message);
    return;
  }

  const view = parseNumbers(query.get("view"), 3);
  if (view) await setView({ x: view[0], y: view[1], zoom: view[2] });
  state.ready = true;
  const at = parseNumbers(query.get("at"), 2);
  updateUrlNow();
  document.body.dataset.ready = "1";
  emit("ready", { query });
  if (at) await decodeAt(at[0], at[1]);
}

Object.assign(window.latentmap, {
  screenToData, dataToScreen, toScatter, fromScatter, currentView, setView, decodeAt, setSeed, stateUrl, canEdit, redraw,
  select,
});
Object.defineProperty(window.latentmap, "scatterplot", { get: () => scatterplot });

main();
