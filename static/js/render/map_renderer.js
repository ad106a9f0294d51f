// The ONE map renderer (deck.gl, global `deck` from /static/vendor/deck.gl-9.4.0.min.js): one orthographic
// camera in map coordinates (y up) for the decoded-terrain tiles, the points, the pictures, marks and labels.
//
// Points and pictures come from the server's quadtree tiles (GET /api/maps/{id}/tiles/{z}/{x}/{y}.bin and
// .webp, app/maps/tiles.py): the page never holds or draws more than the tiles on screen, whatever the map's size.
// A picture is drawn once its cell on screen is large enough to read (MIN_PICTURE_PX); further out, dots.
//
// The page (its core and pointer modules) talks to this module only through the object createMapRenderer returns:
//   setMap({mapId, version})            which map version to draw (new version: tiles are asked for again)
//   setPointColors(rgba | null)         Uint8Array of 4 bytes per point in points order (null: colour by kind)
//   setMarks([{x, y, color, radius}])   selection / hover / path marks drawn over the points
//   setLabels([{x, y, text}])           cluster labels
//   setTerrain({info, seed, variant, opacity, visible})  the decoded-terrain layer (#18's contract)
//   setLayerVisible(name, on)           "terrain" | "points" | "pictures" | "marks" | "labels"
//   getView() / setView({x, y, zoom})   the share link's view: centre, zoom = 1 / visible map height
//   fitBounds([xmin, ymin, xmax, ymax])
//   screenToMap(px, py) / mapToScreen(x, y)   CSS pixels from the canvas' top-left <-> map coordinates
//   pickAt(px, py, slop)                {index, x, y, kind, picture} of the drawn point/picture there, or null
//   setPanEnabled(on)                   off while the pointer module draws a lasso or a path
//   onView(fn), onLoad(fn)              view changed / every tile on screen arrived and was drawn
//   whenSettled()                       promise: all tiles for the current view drawn
//   stats()                             tiles, points and pictures drawn, bytes fetched (bench and tests)

import { TileSet, tileBounds } from "./tileset.js";

const KIND_COLORS = [[242, 184, 75], [76, 195, 217], [215, 123, 224]]; // text, image, generated
const POINT_TILE_PX = 384; // a point tile spans about this many screen pixels (pictures 34-68 px)
const MIN_PICTURE_PX = 28; // pictures smaller than this on screen would not read: dots instead
const MAX_PICTURE_PX = 160;
const BACKGROUND = [20, 23, 28, 255];

function parsePointTile(buffer) {
  const head = new Uint8Array(buffer, 0, 4);
  if (String.fromCharCode(...head) !== "LMT1") throw new Error("not a point tile");
  const [n, m] = new Uint32Array(buffer, 4, 2);
  let off = 12;
  const take = (Type, count) => {
    const a = new Type(buffer, off, count);
    off += a.byteLength;
    return a;
  };
  const index = take(Uint32Array, n);
  const xs = take(Float32Array, n);
  const ys = take(Float32Array, n);
  const thumbIndex = take(Uint32Array, m);
  const txs = take(Float32Array, m);
  const tys = take(Float32Array, m);
  const kinds = take(Uint8Array, n);
  const positions = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) { positions[2 * i] = xs[i]; positions[2 * i + 1] = ys[i]; }
  const thumbs = [];
  for (let k = 0; k < m; k++) thumbs.push({ slot: k, index: thumbIndex[k], position: [txs[k], tys[k]], room: Infinity });
  // Room: distance to the nearest other picture of the tile (map units). A picture with room to spare is drawn
  // larger than its cell when zoomed in, up to MAX_PICTURE_PX, without covering its neighbours.
  for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) {
    const d = Math.max(Math.abs(txs[a] - txs[b]), Math.abs(tys[a] - tys[b]));
    if (d < thumbs[a].room) thumbs[a].room = d;
    if (d < thumbs[b].room) thumbs[b].room = d;
  }
  return { n, index, positions, kinds, thumbs };
}

async function fetchChecked(url, signal, stats) {
  const response = await fetch(url, { signal });
  if (response.status === 429) {
    const err = new Error("busy");
    err.retryAfterMs = 1000 * (Number(response.headers.get("Retry-After")) || 1);
    throw err;
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const body = await response.arrayBuffer();
  stats.bytes += body.byteLength;
  return body;
}

function blobImage(buffer, type) {
  return createImageBitmap(new Blob([buffer], { type }));
}

export function createMapRenderer({ parent, canvas, pointRadius = () => 4, kindColors = KIND_COLORS } = {}) {
  const listeners = { view: [], load: [] };
  const stats = { bytes: 0, tiles: 0, points: 0, pictures: 0, frames: 0, picturePx: 0 };
  const visible = { terrain: true, points: true, pictures: true, marks: true, labels: true };
  let map = null; // {mapId, version, info}
  let colors = null; // Uint8Array(4 n) in points order
  let colorsVersion = 0;
  let marks = [];
  let labels = [];
  let terrain = null; // {info, seed, variant, opacity, visible}
  let viewState = { target: [0, 0, 0], zoom: 0 };
  let panEnabled = true;
  let redrawQueued = false;
  let settledWaiters = [];
  let drawnSettled = false; // the last render had every tile of its view

  const pointTiles = new TileSet({
    load: async (t, signal) => {
      const v = map.version;
      const base = `/api/maps/${map.mapId}/tiles/${t.z}/${t.x}/${t.y}`;
      const data = parsePointTile(await fetchChecked(`${base}.bin?v=${v}`, signal, stats));
      data.atlas = data.thumbs.length ? await blobImage(await fetchChecked(`${base}.webp?v=${v}`, signal, stats),
        "image/webp") : null;
      return data;
    },
    onChange: () => queueRedraw(),
  });
  const terrainTiles = new TileSet({
    load: async (t, signal) => {
      const params = new URLSearchParams({ seed: String(terrain.seed || 0) });
      if (terrain.variant) params.set("variant", terrain.variant);
      const url = `/api/maps/${map.mapId}/terrain/${t.z}/${t.x}/${t.y}.png?${params}`;
      return blobImage(await fetchChecked(url, signal, stats), "image/png");
    },
    onChange: () => queueRedraw(),
    maxRequests: 4,
  });

  const deckgl = new deck.Deck({
    parent,
    canvas,
    views: new deck.OrthographicView({ id: "map", flipY: false, controller: true }),
    viewState,
    controller: { dragPan: true, scrollZoom: { smooth: false }, doubleClickZoom: false, keyboard: false, inertia: false },
    onViewStateChange: ({ viewState: next }) => {
      viewState = { ...next, target: [next.target[0], next.target[1], 0] };
      deckgl.setProps({ viewState });
      queueRedraw();
      for (const fn of listeners.view) fn(getView());
      return viewState;
    },
    parameters: { clearColor: BACKGROUND.map((c) => c / 255) },
    onAfterRender: () => {
      stats.frames += 1;
      resolveSettled();
    },
    getCursor: ({ isDragging }) => (isDragging ? "grabbing" : "crosshair"),
    useDevicePixels: true,
  });

  function size() {
    const el = canvas || parent;
    const rect = el.getBoundingClientRect();
    return [rect.width || 1, rect.height || 1];
  }

  function viewRect() {
    const [w, h] = size();
    const scale = 2 ** viewState.zoom;
    const [cx, cy] = viewState.target;
    return [cx - w / 2 / scale, cy - h / 2 / scale, cx + w / 2 / scale, cy + h / 2 / scale];
  }

  function isSettled() {
    return (!map || pointTiles.settled()) && (!terrain || !terrain.visible || !visible.terrain || terrainTiles.settled());
  }

  function queueRedraw() {
    if (redrawQueued) return;
    redrawQueued = true;
    requestAnimationFrame(() => {
      redrawQueued = false;
      render();
    });
  }

  function pointColorsFor(tile) {
    if (tile.colorsVersion === colorsVersion && tile.colors) return tile.colors;
    const out = new Uint8Array(4 * tile.n);
    for (let i = 0; i < tile.n; i++) {
      if (colors) {
        const j = tile.index[i] * 4;
        out.set(colors.subarray(j, j + 4), 4 * i);
      } else {
        const c = kindColors[tile.kinds[i]] || kindColors[2];
        out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = 235;
      }
    }
    tile.colors = out;
    tile.colorsVersion = colorsVersion;
    return out;
  }

  function render() {
    const layers = [];
    const rect = viewRect();
    if (terrain && terrain.visible && visible.terrain && terrain.info && map) {
      const t = terrain.info;
      const tilePx = (t.cells || 8) * (t.cell_px || 32);
      for (const tile of terrainTiles.update(viewState.zoom, rect, tilePx)) {
        if (!tile.data) continue;
        layers.push(new deck.BitmapLayer({
          id: `terrain-${tile.z}-${tile.x}-${tile.y}`, image: tile.data, opacity: terrain.opacity ?? 0.8,
          bounds: tileBounds(terrainTiles.square, tile.z, tile.x, tile.y), textureParameters: {
            minFilter: "linear", magFilter: "nearest" },
        }));
      }
    }
    let points = 0;
    let pictures = 0;
    const drawn = map ? pointTiles.update(viewState.zoom, rect, POINT_TILE_PX) : [];
    const radius = pointRadius();
    if (visible.points) {
      for (const tile of drawn) {
        if (!tile.data || !tile.data.n) continue;
        const d = tile.data;
        points += d.n;
        layers.push(new deck.ScatterplotLayer({
          id: `points-${tile.z}-${tile.x}-${tile.y}`,
          data: { length: d.n, attributes: {
            getPosition: { value: d.positions, size: 2 },
            getFillColor: { value: pointColorsFor(d), size: 4, normalized: true },
          } },
          radiusUnits: "pixels", getRadius: radius, stroked: false, pickable: true, updateTriggers: { getFillColor: colorsVersion },
          tile: d,
        }));
      }
    }
    stats.picturePx = 0;
    if (visible.pictures) {
      const scale = 2 ** viewState.zoom;
      for (const tile of drawn) {
        if (!tile.data || !tile.data.atlas) continue;
        const cellPx = (pointTiles.square.size / 2 ** tile.z / map.info.thumbs_side) * scale;
        if (cellPx < MIN_PICTURE_PX) continue;
        const px = Math.min(MAX_PICTURE_PX, cellPx * 0.92);
        stats.picturePx = px;
        const side = map.info.thumbs_side;
        const cell = map.info.thumb_px;
        const mapping = {};
        for (const th of tile.data.thumbs) {
          mapping[th.slot] = { x: (th.slot % side) * cell, y: Math.floor(th.slot / side) * cell, width: cell, height: cell,
            anchorX: cell / 2, anchorY: cell / 2 };
        }
        pictures += tile.data.thumbs.length;
        layers.push(new deck.IconLayer({
          id: `pictures-${tile.z}-${tile.x}-${tile.y}`,
          data: tile.data.thumbs, iconAtlas: tile.data.atlas, iconMapping: mapping,
          getIcon: (th) => th.slot, getPosition: (th) => th.position, sizeUnits: "pixels",
          getSize: (th) => Math.max(px, Math.min(MAX_PICTURE_PX, th.room * scale * 0.9)),
          updateTriggers: { getSize: scale },
          pickable: true, tile: tile.data,
          textureParameters: { minFilter: "linear", magFilter: "linear" },
        }));
      }
    }
    if (visible.marks && marks.length) {
      layers.push(new deck.ScatterplotLayer({
        id: "marks", data: marks, getPosition: (m) => [m.x, m.y], getRadius: (m) => m.radius || radius + 3,
        radiusUnits: "pixels", stroked: true, filled: (m) => Boolean(m.fill), getFillColor: (m) => m.fill || [0, 0, 0, 0],
        getLineColor: (m) => m.color || [255, 255, 255, 255], lineWidthUnits: "pixels", getLineWidth: (m) => m.width || 2,
      }));
    }
    if (visible.labels && labels.length) {
      layers.push(new deck.TextLayer({
        id: "labels", data: labels, getPosition: (l) => [l.x, l.y], getText: (l) => l.text, getSize: 14,
        getColor: [240, 240, 240, 255], background: true, getBackgroundColor: [20, 23, 28, 200],
        backgroundPadding: [4, 2], fontFamily: "system-ui, sans-serif", characterSet: "auto",
      }));
    }
    drawnSettled = isSettled();
    stats.tiles = drawn.length;
    stats.points = points;
    stats.pictures = pictures;
    deckgl.setProps({ layers, controller: controllerProps() });
    // deck skips drawing when nothing changed; waiters for a view that is already complete must not hang.
    if (drawnSettled && settledWaiters.length) requestAnimationFrame(() => requestAnimationFrame(resolveSettled));
  }

  function resolveSettled() {
    if (!drawnSettled || !settledWaiters.length) return;
    const waiters = settledWaiters;
    settledWaiters = [];
    for (const fn of waiters) fn();
    for (const fn of listeners.load) fn();
  }

  function controllerProps() {
    return { dragPan: panEnabled, scrollZoom: { smooth: false }, doubleClickZoom: false, keyboard: false, inertia: false };
  }

  function getView() {
    const [, h] = size();
    return { x: viewState.target[0], y: viewState.target[1], zoom: 2 ** viewState.zoom / h };
  }

  function setView({ x, y, zoom }) {
    if (![x, y, zoom].every(Number.isFinite) || zoom <= 0) return;
    const [, h] = size();
    viewState = { ...viewState, target: [x, y, 0], zoom: Math.log2(zoom * h) };
    deckgl.setProps({ viewState });
    queueRedraw();
    for (const fn of listeners.view) fn(getView());
  }

  function fitBounds(bounds, padding = 0.06) {
    if (!bounds || bounds.length !== 4 || !bounds.every(Number.isFinite)) {
      setView({ x: 0, y: 0, zoom: 0.5 });
      return;
    }
    const [w, h] = size();
    const spanX = Math.max(bounds[2] - bounds[0], 1e-6);
    const spanY = Math.max(bounds[3] - bounds[1], 1e-6);
    const scale = Math.min(w / spanX, h / spanY) * (1 - 2 * padding);
    setView({ x: (bounds[0] + bounds[2]) / 2, y: (bounds[1] + bounds[3]) / 2, zoom: scale / h });
  }

  function screenToMap(px, py) {
    const [w, h] = size();
    const scale = 2 ** viewState.zoom;
    return [viewState.target[0] + (px - w / 2) / scale, viewState.target[1] - (py - h / 2) / scale];
  }

  function mapToScreen(x, y) {
    const [w, h] = size();
    const scale = 2 ** viewState.zoom;
    return [w / 2 + (x - viewState.target[0]) * scale, h / 2 - (y - viewState.target[1]) * scale];
  }

  function pickAt(px, py, slop = 3) {
    const info = deckgl.pickObject({ x: px, y: py, radius: slop, layerIds: undefined });
    if (!info || !info.layer || !info.layer.props.tile) return null;
    const tile = info.layer.props.tile;
    if (info.layer.id.startsWith("pictures-")) {
      const th = tile.thumbs[info.index];
      const getSize = info.layer.props.getSize;
      return th ? { index: th.index, x: th.position[0], y: th.position[1], kind: 1, picture: true,
        sizePx: typeof getSize === "function" ? getSize(th) : getSize } : null;
    }
    const i = info.index;
    if (i < 0 || i >= tile.n) return null;
    return { index: tile.index[i], x: tile.positions[2 * i], y: tile.positions[2 * i + 1], kind: tile.kinds[i],
      picture: false };
  }

  async function setMap({ mapId, version }) {
    const response = await fetch(`/api/maps/${mapId}/tiles`);
    if (!response.ok) throw new Error(`tiles of map ${mapId}: HTTP ${response.status}`);
    const info = await response.json();
    if (version !== undefined && version !== null && info.version !== version) {
      // The map moved on between the page's read and ours: draw what the server has now.
    }
    map = { mapId, version: info.version, info };
    pointTiles.reset({ origin: info.origin, size: info.size }, info.max_zoom);
    if (terrain && terrain.info) resetTerrain();
    queueRedraw();
    return info;
  }

  function setTerrain(next) {
    const prev = terrain;
    terrain = { ...(terrain || {}), ...next };
    const changed = !prev || prev.seed !== terrain.seed || prev.variant !== terrain.variant
      || JSON.stringify(prev.info) !== JSON.stringify(terrain.info);
    if (changed && terrain.info) resetTerrain();
    queueRedraw();
  }

  function resetTerrain() {
    const t = terrain.info;
    // The contract names no deepest zoom (a server setting): deeper tiles answer 404 and their parent stays.
    terrainTiles.reset({ origin: t.origin, size: t.size }, Number.isFinite(t.max_zoom) ? t.max_zoom : 12);
  }

  return {
    deck: deckgl,
    setMap,
    setPointColors(rgba) { colors = rgba; colorsVersion += 1; queueRedraw(); },
    setMarks(list) { marks = list || []; queueRedraw(); },
    setLabels(list) { labels = list || []; queueRedraw(); },
    setTerrain,
    setLayerVisible(name, on) { visible[name] = Boolean(on); queueRedraw(); },
    getView,
    setView,
    fitBounds,
    screenToMap,
    mapToScreen,
    pickAt,
    setPanEnabled(on) { panEnabled = Boolean(on); queueRedraw(); },
    onView(fn) { listeners.view.push(fn); },
    onLoad(fn) { listeners.load.push(fn); },
    whenSettled() {
      return new Promise((resolve) => { settledWaiters.push(resolve); queueRedraw(); });
    },
    stats() { return { ...stats, settled: drawnSettled, version: map && map.version }; },
    redraw: queueRedraw,
  };
}
