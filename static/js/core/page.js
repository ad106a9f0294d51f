// The map page's core: the one owner of page state, the named events modules talk through, the actions modules
// offer each other, the map renderer's seat, and the share link / presentation state assembled from every panel.
//
// ---------------------------------------------------------------------------------------------------------------
// EVENTS (on(name, fn) / emit(name, detail); an unknown name throws, so a typo fails loudly)
//   ready         {query}              meta loaded, points drawn, the share link's view applied; panels start here
//   points        {count}              items loaded, added, deleted or re-projected (indices may have changed)
//   view          {x, y, zoom}         the camera moved (zoom = 1 / visible data height)
//   cursor        {px, py}             the keyboard cursor moved (map.js shows the tooltip of the item under it)
//   decode-state  {state}              "idle" | "loading" | "done" | "error" (mirrored on #map-root[data-decode-state])
//   decoded       {x, y, seed, url, item}  a decode is on show; item: the item the click selected, or null
//   selected      {item}               the selected item changed (item or null)
//   selection     {indices}            the multi-point selection (lasso, filter matches) changed
//   colors        {by}                 state.colors changed: map.js recolours the points
//   seed          {seed}               the seed changed
//   mode          {mode, previous}     the pointer mode changed (core/pointer.js)
//   user-input    {kind, key?}         someone explores by hand: "press" | "pan" | "wheel" | "key" (followers pause)
//   path          {points, steps}      a path was decoded ([] when cleared)
//   share-state   {}                   something a share link or a presentation carries changed (URL follows)
//   remote-state  {state}              a follower received the presenter's state (panels apply their part)
//   contrast      {on}                 high-contrast mode toggled (base.html dispatches latentmap:contrast)
//   large-text    {on}                 large-text mode toggled
//
// STATE (read by everyone; each field written only by the module named)
//   mapId, editKey, meta, canEdit        map.js (meta: GET /api/maps/{id}; canEdit: the key works)
//   items [{id, label, kind, x, y, thumbnail, pending}]   map.js (binary-loaded items: id/label null until fetched;
//                                        tile-only maps: a sparse array as long as the map, an entry {..., index}
//                                        made by itemAt(index) when someone hovers or clicks that point)
//   pointsFormat "json"|"binary"|"tiles", pointsVersion, renderMode "fast"|"full", hovered (index under the
//                                        pointer, or -1)   map.js
//   selectionPolygon, selectionCount    panels/explore.js: a lasso on a tile-only map is the polygon (the server
//                                        counts and exports what is inside; selection stays []), else null
//   colors {by: "kind"} | {by: "value", values: number[], palette: [r,g,b,a][], dimmed?: Uint8Array (1 = this
//          point's picture is dimmed too: filtered out or a hidden category)}
//          | {by: "kind", dim: Uint8Array (1 = dimmed), dimColors: [r,g,b,a][] by kind} (tile-only maps: no kinds
//          in the page)                  panels/explore.js via setColors
//   seed, current {x, y, seed, url?, blob?, cache?}, history, decodeState, previewAvailable, lastDecodeMs
//                                        panels/decode.js
//   selected (an item or null)           panels/selected.js (select action)
//   selection (indices)                  panels/explore.js
//   mode, kbdCursor [px, py]             core/pointer.js
//   ready                                this module
//
// ACTIONS (provide(name, fn) by the owner; actions.name(...) by anyone; calling one nobody provided throws)
//   decodeAt(x, y, {seed, fromHistory}), setSeed(seed, {decode}), select(item), setColors(colors), fitView(),
//   itemDetails(item), itemAt(index) (the item, made from the tiles on tile-only maps), removeItem(item), redraw()
//
// RENDERER (map.js creates it and calls setRenderer; static/js/render/map_renderer.js, our own WebGL2 renderer)
//   A renderer draws the points and owns the camera; nothing else may touch the drawing library. Data coordinates
//   everywhere; screen positions are CSS pixels from the canvas' top-left corner.
//     setPoints(items, {fit, bounds, tiled, tileInfo}) -> Promise   draw items [{x, y, kind}]; fit: frame the
//                                            camera anew; tiled: items is sparse, draw and pick from the tiles
//     setColors(colors) -> Promise           state.colors (see above)
//     setStyle({pointSize, opacity, background})
//     highlight(indices | {indices, polygon, points})   outline these points (selection), the points inside
//                                            polygon, rings at these [x, y] spots
//     pointAt(index) -> {x, y, kind, id?} | null   where a drawn point is (tile-only maps: from the tiles)
//     view() -> {x, y, zoom}                 unrounded centre and zoom (1 / visible data height)
//     setView({x, y, zoom}) -> Promise       resolves when the camera is there
//     fitView() -> Promise                   the whole map in view
//     dataToScreen(x, y) -> [px, py];  screenToData(px, py) -> [x, y]
//     pick(px, py, slopPx) -> index | -1     the drawn point under a screen position
//     onView(fn()), onHover(fn(index, [px, py]) | fn(-1))
//     info() -> {library, mode}            for the mirror (tests)
//
// PANELS register({name, start(query), urlParams(), presentState(), mirror}) with this module: start runs at
// `ready`; urlParams() / presentState() add their part to share links and presentations; `mirror` (an object)
// appears, read-only, as window.latentmap[name].
//
// window.latentmap is a read-only mirror for browser tests and the console: state, the panels' mirrors, mode,
// currentView(), dataToScreen(), screenToData(). Writing to it throws.
// ---------------------------------------------------------------------------------------------------------------

import { MAX_COORD_DECIMALS } from "./constants.js";

export const EVENTS = Object.freeze([
  "ready", "points", "view", "cursor", "decode-state", "decoded", "selected", "selection", "colors", "seed", "mode",
  "user-input", "path", "share-state", "remote-state", "contrast", "large-text",
]);

export const state = {
  mapId: null,
  editKey: null,
  meta: null,
  canEdit: false,
  items: [],
  pointsFormat: "json",
  pointsVersion: null,
  renderMode: "full",
  hovered: -1,
  colors: { by: "kind" },
  seed: 0,
  current: null,
  history: [],
  decodeState: "idle",
  previewAvailable: false,
  lastDecodeMs: 0,
  selected: null,
  selection: [],
  selectionPolygon: null,
  selectionCount: 0,
  mode: "decode",
  kbdCursor: null,
  ready: false,
};

// ---------------------------------------------------------------- events ----

const listeners = new Map(EVENTS.map((name) => [name, []]));

function listenersOf(name) {
  const list = listeners.get(name);
  if (!list) throw new Error(`latentmap: unknown event "${name}"`);
  return list;
}

export function on(name, fn) {
  listenersOf(name).push(fn);
  return () => {
    const list = listenersOf(name);
    const i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };
}

export function emit(name, detail = {}) {
  for (const fn of [...listenersOf(name)]) {
    try {
      fn(detail);
    } catch (err) {
      console.error(`latentmap: a "${name}" listener failed`, err); // one broken panel must not stop the others
    }
  }
}

// base.html's high-contrast toggle is a classic script: it announces itself as a DOM event.
document.addEventListener("latentmap:contrast", (event) => emit("contrast", event.detail || {}));

// ---------------------------------------------------------------- actions ----

const provided = {};
export const actions = new Proxy(provided, {
  get(target, name) {
    if (!(name in target)) throw new Error(`latentmap: no module provides the action "${String(name)}"`);
    return target[name];
  },
});

export function provide(name, fn) {
  if (name in provided) throw new Error(`latentmap: the action "${name}" is provided twice`);
  provided[name] = fn;
}

// ---------------------------------------------------------------- renderer ----

let current = null;

export function setRenderer(renderer) {
  current = renderer;
}

/** The map renderer, or null before map.js has created it (or when WebGL failed). */
export function renderer() {
  return current;
}

export function canvasSize() {
  const rect = document.getElementById("map-canvas").getBoundingClientRect();
  return [rect.width || 1, rect.height || 1];
}

export function dataToScreen(x, y) {
  return current.dataToScreen(x, y);
}

export function screenToData(px, py) {
  return current.screenToData(px, py);
}

/** Decimals worth keeping for a data coordinate at the current zoom (a tenth of a pixel, at most 6). */
export function decimals() {
  const [, h] = canvasSize();
  const perPixel = 1 / (current.view().zoom * h);
  return Math.min(MAX_COORD_DECIMALS, Math.max(2, Math.ceil(-Math.log10(perPixel)) + 1));
}

export function roundTo(value, digits = decimals()) {
  return Number(value.toFixed(digits));
}

/** The camera as share links write it: centre rounded for the zoom, zoom to 5 significant digits. */
export function currentView() {
  const v = current.view();
  const digits = decimals();
  return { x: roundTo(v.x, digits), y: roundTo(v.y, digits), zoom: Number(v.zoom.toPrecision(5)) };
}

export function setView(view) {
  const { x, y, zoom } = view || {};
  if (![x, y, zoom].every(Number.isFinite) || zoom <= 0) return Promise.resolve();
  return current.setView({ x, y, zoom });
}

// ---------------------------------------------------------------- panels ----

const panels = [];

export function register(panel) {
  if (!panel || !panel.name) throw new Error("latentmap: a panel needs a name");
  panels.push(panel);
  if (state.ready && panel.start) panel.start(new URLSearchParams(window.location.search));
}

/** Called by map.js once the map is drawn: panels start, then `ready` goes out. */
export function start(query) {
  state.ready = true;
  for (const panel of panels) {
    if (!panel.start) continue;
    try {
      panel.start(query);
    } catch (err) {
      console.error(`latentmap: the ${panel.name} panel failed to start`, err);
    }
  }
  emit("ready", { query });
}

// ---------------------------------------------------------------- share links + presentations ----

/** The page's address for the current state: view, decoded spot, seed, then every panel's own parameters. */
export function stateUrl() {
  const params = new URLSearchParams();
  if (current) {
    const v = currentView();
    params.set("view", `${v.x},${v.y},${v.zoom}`);
  }
  if (state.current) params.set("at", `${state.current.x},${state.current.y}`);
  params.set("seed", String(state.seed));
  for (const panel of panels) {
    if (!panel.urlParams) continue;
    for (const [name, value] of Object.entries(panel.urlParams() || {})) {
      if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
    }
  }
  // URLSearchParams would escape the commas; they are safe in a query and easier to read unescaped.
  return `${window.location.pathname}?${params.toString().replace(/%2C/g, ",")}`;
}

export function shareLink() {
  return window.location.origin + stateUrl();
}

/** What a presentation's followers receive: view, decoded spot, seed, then every panel's part. */
export function presentState() {
  const v = currentView();
  const cur = state.current;
  const out = { view: [v.x, v.y, v.zoom], at: cur ? [cur.x, cur.y] : null, seed: cur ? cur.seed : state.seed };
  for (const panel of panels) {
    if (panel.presentState) Object.assign(out, panel.presentState() || {});
  }
  return out;
}

let urlTimer = null;

function writeUrl() {
  clearTimeout(urlTimer);
  urlTimer = null;
  if (!state.ready) return;
  history.replaceState(null, "", stateUrl());
  const field = document.getElementById("share-url");
  if (field) field.value = shareLink();
}

/** Something a share link carries changed: rewrite the address (now, or after the camera settles). */
export function shareStateChanged({ now = true } = {}) {
  if (now) writeUrl();
  else if (!urlTimer) urlTimer = setTimeout(writeUrl, 120);
  emit("share-state", {});
}

on("view", () => shareStateChanged({ now: false }));

// ---------------------------------------------------------------- the read-only mirror ----

const mirrors = new WeakMap();

function readOnly(value) {
  if (value === null || typeof value !== "object" || value instanceof Blob || value instanceof Node) return value;
  let proxy = mirrors.get(value);
  if (!proxy) {
    const refuse = () => { throw new TypeError("window.latentmap is a read-only mirror of the page"); };
    proxy = new Proxy(value, {
      get: (target, key) => readOnly(Reflect.get(target, key)),
      set: refuse,
      deleteProperty: refuse,
      defineProperty: refuse,
    });
    mirrors.set(value, proxy);
  }
  return proxy;
}

const mirror = {
  get state() { return readOnly(state); },
  get mode() { return state.mode; },
  currentView: () => (current ? currentView() : null),
  dataToScreen: (x, y) => dataToScreen(x, y),
  screenToData: (px, py) => screenToData(px, py),
  renderer: () => (current ? current.info() : null),
};
for (const name of ["explore", "classroom", "variants", "tours", "quiz", "terrain"]) {
  Object.defineProperty(mirror, name, {
    enumerable: true,
    get: () => {
      const panel = panels.find((p) => p.name === name);
      return panel && panel.mirror ? readOnly(panel.mirror) : undefined;
    },
  });
}
Object.defineProperty(window, "latentmap", { value: Object.freeze(mirror), writable: false, configurable: false });
