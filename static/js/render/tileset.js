// A quadtree of tiles over one square of the map, for an orthographic camera: which tiles the view needs at the
// zoom that fits the screen, fetched centre-out, kept in a bounded cache; while a tile loads, its nearest loaded
// ancestor (or its loaded children) stand in, so nothing blinks out while zooming.
//
// Tile (z, x, y) of a square [x0, x0 + s] × [y0, y0 + s] is column x, row y counted from the TOP (web-map order),
// the convention of both the point tiles (app/maps/tiles.py) and the terrain tiles (issue #18).

export function tileBounds(square, z, x, y) {
  const size = square.size / 2 ** z;
  const left = square.origin[0] + x * size;
  const top = square.origin[1] + square.size - y * size;
  return [left, top - size, left + size, top]; // [xmin, ymin, xmax, ymax] in map coordinates
}

/** The tile zoom at which one tile is about `tilePx` screen pixels wide (pixels per map unit = 2^viewZoom). */
export function tileZoomFor(square, viewZoom, tilePx, maxZoom) {
  const z = Math.round(Math.log2((square.size * 2 ** viewZoom) / tilePx));
  return Math.max(0, Math.min(maxZoom, Number.isFinite(z) ? z : 0));
}

/** Tiles at zoom z covering the map rectangle [xmin, ymin, xmax, ymax], nearest to its centre first. */
export function tilesCovering(square, z, rect) {
  const n = 2 ** z;
  const size = square.size / n;
  const [x0, y0] = square.origin;
  const top = y0 + square.size;
  const clamp = (v) => Math.max(0, Math.min(n - 1, v));
  const c0 = clamp(Math.floor((rect[0] - x0) / size));
  const c1 = clamp(Math.floor((rect[2] - x0) / size));
  const r0 = clamp(Math.floor((top - rect[3]) / size));
  const r1 = clamp(Math.floor((top - rect[1]) / size));
  if (rect[2] < x0 || rect[0] > x0 + square.size || rect[3] < y0 || rect[1] > top) return [];
  const cx = ((rect[0] + rect[2]) / 2 - x0) / size;
  const cy = (top - (rect[1] + rect[3]) / 2) / size;
  const out = [];
  for (let y = r0; y <= r1; y++) for (let x = c0; x <= c1; x++) out.push({ z, x, y, d: (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 });
  return out.sort((a, b) => a.d - b.d);
}

export class TileSet {
  /**
   * @param {object} o
   * @param {(t: {z, x, y}, signal: AbortSignal, partial: (data) => void) => Promise<any>} o.load  fetch + decode one
   *   tile (null: empty tile); `partial(data)` hands over a quick version (a preview) drawn until the tile arrives
   * @param {() => void} o.onChange  a tile arrived (redraw)
   * @param {number} o.maxTiles  tiles kept in memory
   * @param {number} o.maxRequests  tiles loading at once
   * @param {boolean} o.abortLeft  abort a tile's request once the view no longer needs it (tiles that are costly to
   *   make, like terrain: the server stops working on it; cheap point tiles are left to arrive and be cached)
   */
  constructor({ load, onChange, unload = () => {}, maxTiles = 192, maxRequests = 6, abortLeft = false }) {
    this.abortLeft = abortLeft;
    this.load = load;
    this.unload = unload; // frees what a tile holds (GPU buffers, textures) when it leaves the cache
    this.onChange = onChange;
    this.maxTiles = maxTiles;
    this.maxRequests = maxRequests;
    this.cache = new Map(); // "z/x/y" -> {z, x, y, data, state: 'loading'|'done'|'failed', controller}
    this.queue = [];
    this.active = 0;
    this.wanted = [];
    this.square = null;
    this.maxZoom = 0;
    this.generation = 0; // bumped by reset(): answers for an old square/version are dropped
  }

  reset(square, maxZoom) {
    for (const t of this.cache.values()) {
      if (t.controller) t.controller.abort();
      if (t.data) this.unload(t.data);
    }
    this.cache.clear();
    this.queue = [];
    this.wanted = [];
    this.square = square;
    this.maxZoom = maxZoom;
    this.generation += 1;
    this.paused = false;
  }

  key(z, x, y) {
    return `${z}/${x}/${y}`;
  }

  /** Ask for the tiles of the view; returns the tiles to draw now (loaded ones, stand-ins for the rest). */
  update(viewZoom, rect, tilePx) {
    if (!this.square) return [];
    const z = tileZoomFor(this.square, viewZoom, tilePx, this.maxZoom);
    const needed = tilesCovering(this.square, z, rect);
    this.wanted = needed;
    const wantedKeys = new Set(needed.map((t) => this.key(t.z, t.x, t.y)));
    // Tiles queued for a view the user has left are dropped (the server is not asked for them).
    this.queue = this.queue.filter((t) => wantedKeys.has(this.key(t.z, t.x, t.y)));
    for (const t of needed) {
      const k = this.key(t.z, t.x, t.y);
      if (!this.cache.has(k)) {
        const entry = { z: t.z, x: t.x, y: t.y, data: null, state: "queued", used: performance.now() };
        this.cache.set(k, entry);
        this.queue.push(entry);
      } else {
        this.cache.get(k).used = performance.now();
      }
    }
    for (const entry of this.cache.values()) {
      const left = !wantedKeys.has(this.key(entry.z, entry.x, entry.y));
      if (left && this.abortLeft && entry.state === "loading" && entry.controller) entry.controller.abort();
      if (entry.state === "queued" && left) {
        if (entry.data) this.unload(entry.data); // a preview of a tile left before it arrived
        this.cache.delete(this.key(entry.z, entry.x, entry.y));
      }
    }
    this.pump();
    return this.drawable(needed);
  }

  drawable(needed) {
    const out = new Map();
    const shown = (e) => e && (e.state === "done" || e.data); // arrived, or its preview has
    for (const t of needed) {
      const here = this.cache.get(this.key(t.z, t.x, t.y));
      if (shown(here)) {
        out.set(this.key(t.z, t.x, t.y), here);
        continue;
      }
      // Stand-in: the nearest loaded ancestor, else whichever children are loaded.
      let found = null;
      for (let up = 1; up <= t.z && !found; up++) {
        const a = this.cache.get(this.key(t.z - up, t.x >> up, t.y >> up));
        if (shown(a)) found = a;
      }
      if (found) {
        found.used = performance.now();
        out.set(this.key(found.z, found.x, found.y), found);
        continue;
      }
      for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) {
        const c = this.cache.get(this.key(t.z + 1, 2 * t.x + dx, 2 * t.y + dy));
        if (shown(c)) out.set(this.key(c.z, c.x, c.y), c);
      }
    }
    // Coarse first so finer tiles draw on top.
    return [...out.values()].sort((a, b) => a.z - b.z);
  }

  /** True when every tile the current view needs has arrived (or failed). */
  settled() {
    return this.wanted.every((t) => {
      const e = this.cache.get(this.key(t.z, t.x, t.y));
      return e && (e.state === "done" || e.state === "failed");
    });
  }

  pump() {
    if (this.paused) return; // the owner knows the tiles are about to change (a new map version): ask nothing yet
    while (this.active < this.maxRequests && this.queue.length) {
      const entry = this.queue.shift();
      const generation = this.generation;
      entry.state = "loading";
      entry.controller = new AbortController();
      this.active += 1;
      const replace = (data) => {
        if (entry.data && entry.data !== data) this.unload(entry.data);
        entry.data = data;
      };
      const partial = (data) => {
        if (generation !== this.generation || entry.state !== "loading") return;
        replace(data);
        this.onChange();
      };
      this.load(entry, entry.controller.signal, partial).then(
        (data) => {
          if (generation !== this.generation) return;
          replace(data);
          entry.state = "done";
        },
        (err) => {
          if (generation !== this.generation) return;
          if (err && err.retryAfterMs) { // busy server (429): ask again later, if still wanted
            entry.state = "queued";
            setTimeout(() => { if (generation === this.generation) { this.queue.push(entry); this.pump(); } },
              err.retryAfterMs);
            return;
          }
          if (err && err.name === "AbortError") { // left by the view: forgotten, asked again if wanted again
            if (entry.data) this.unload(entry.data);
            entry.data = null;
            if (this.cache.get(this.key(entry.z, entry.x, entry.y)) === entry) this.cache.delete(this.key(entry.z, entry.x, entry.y));
            return;
          }
          entry.state = "failed";
        },
      ).finally(() => {
        entry.controller = null;
        if (generation !== this.generation) return;
        this.active -= 1;
        this.evict();
        this.onChange();
        this.pump();
      });
    }
  }

  evict() {
    if (this.cache.size <= this.maxTiles) return;
    const wanted = new Set(this.wanted.map((t) => this.key(t.z, t.x, t.y)));
    const old = [...this.cache.entries()].filter(([k, e]) => !wanted.has(k) && e.state !== "loading")
      .sort((a, b) => a[1].used - b[1].used);
    for (const [k, e] of old.slice(0, this.cache.size - this.maxTiles)) {
      if (e.data) this.unload(e.data);
      this.cache.delete(k);
    }
  }
}
