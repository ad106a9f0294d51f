// The map renderer: one camera for everything drawn on the map (decoded-terrain tiles, points, the items' pictures,
// selection rings), in plain WebGL2. It implements the renderer interface of core/page.js (setPoints, setColors,
// setStyle, highlight, view, setView, fitView, dataToScreen, screenToData, pick, onView, onHover, info) and adds
// setTerrain for the terrain layer (#18).
//
// Why not deck.gl (vendored, static/vendor/deck.gl-9.4.0.min.js): in the software GL that headless Chromium and
// many VMs have, deck.gl's ScatterplotLayer costs 10-20x a plain point draw per point (bench/render_engines.py:
// 16,000 points, 668 ms vs 49 ms a frame, same run); the map's frame budget goes to points, so it draws them itself.
//
// What is drawn: pictures and, on big maps, points come from the server's quadtree tiles (GET
// /api/maps/{id}/tiles/{z}/{x}/{y}.bin and .webp, app/maps/tiles.py): only the tiles on screen are fetched and
// drawn, so a 1M-item map costs a frame what a few thousand points do. Maps up to WHOLE_POINTS_MAX points are drawn
// whole from the items the page holds (every point visible, colours and rings by index); larger ones are "tiled":
// the page holds no points at all (items is a sparse array of that length), picks, tooltips and rings come from the
// tiles' points. A picture is drawn once its tile cell is at least MIN_PICTURE_PX on screen (further out: dots),
// and as large as the room to its nearest neighbour allows, up to MAX_PICTURE_PX; drawn larger than its atlas cell,
// a few pictures on screen are replaced by the item's own thumbnail (sharper).
//
// Frame budget: a texture upload (atlas, thumbnail, terrain image) costs software GL tens of ms, so a frame uploads
// at most UPLOADS_PER_FRAME of them and asks for another frame for the rest; images are decoded off the main thread
// (createImageBitmap, already premultiplied, so the upload converts nothing).

import { KIND_COLORS, MAP_BACKGROUND, WHOLE_POINTS_MAX } from "../core/constants.js";
import { insidePolygon } from "../core/geometry.js";
import { TileSet, tileBounds } from "./tileset.js";

const LIBRARY = "latentmap WebGL2 renderer";
export { WHOLE_POINTS_MAX };
const UPLOADS_PER_FRAME = 1; // texture uploads a frame may make (the rest wait for the next frames)
const SHARP_MAX_ON_SCREEN = 48; // own thumbnails replace atlas pictures only when this few are enlarged on screen
const SHARP_CACHE = 128; // own thumbnails kept (textures)
const SHARP_REQUESTS = 4; // own thumbnails loading at once
const DIMMED_PICTURE_ALPHA = 0.15; // pictures of points dimmed by a filter or a hidden category
const SHARP_FROM = 1.15; // a picture drawn this much larger than its atlas cell (device px) gets its own thumbnail
const BITMAP_OPTIONS = { premultiplyAlpha: "premultiply", colorSpaceConversion: "none" };
const POINT_TILE_PX = 512; // a point tile spans about this many screen pixels
const MIN_PICTURE_PX = 28; // pictures smaller than this would not read: dots instead
const MAX_PICTURE_PX = 160;
const RING_COLOR = [1, 1, 1, 1];
const WARM_WEBP = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="; // 1x1 transparent, lossless
const ROOM_FACTOR = 0.9; // a picture takes this share of the room to its nearest neighbour
// While the user wheels or drags (and SETTLE_MS after), pictures are drawn at their tile's base size, without the
// enlargement into their room and without own thumbnails: software GL fills every picture's pixels each frame.
const SETTLE_MS = 120;
const MOVING_ROOM_FACTOR = 0;
const MOVING_SHARP = false;
// ... and a tile whose pictures are drawn draws every MOVING_POINT_STRIDE-th of its points (one of them, of up to
// 4,096, costs software GL about as much as a 100 px picture: its setup, not its pixels).
const MOVING_POINT_STRIDE = 2;

function hexColor(hex, alpha = 1) {
  const v = parseInt(hex.replace("#", ""), 16);
  return [(v >> 16) / 255, ((v >> 8) & 255) / 255, (v & 255) / 255, alpha];
}

const POINT_VS = `#version 300 es
in vec2 a_pos; in vec4 a_color;
uniform vec2 u_offset; uniform vec2 u_scale; uniform float u_size;
out vec4 v_color;
void main() {
  gl_Position = vec4((a_pos + u_offset) * u_scale, 0.0, 1.0);
  gl_PointSize = u_size;
  v_color = a_color;
}`;
const POINT_FS = `#version 300 es
precision mediump float;
in vec4 v_color; uniform float u_ring; uniform float u_opacity; uniform vec4 u_ring_color; out vec4 o;
void main() {
  float r = length(gl_PointCoord - 0.5) * 2.0;
  if (r > 1.0) discard;
  if (u_ring > 0.5) { if (r < 0.62) discard; o = u_ring_color; return; }
  float a = v_color.a * u_opacity * (1.0 - smoothstep(0.82, 1.0, r));
  o = vec4(v_color.rgb * a, a);
}`;
// Textured squares centred on a point: pictures (size from the room around them, in pixels, clamped) and terrain
// tiles (size = the tile's side in map units).
const QUAD_VS = `#version 300 es
in vec2 a_center; in vec2 a_corner; in vec2 a_uv; in float a_room; in float a_alpha;
uniform vec2 u_offset; uniform vec2 u_scale; uniform vec2 u_pixel; uniform float u_px_per_unit;
uniform float u_room_factor; uniform float u_min_px; uniform float u_max_px;
out vec2 v_uv; out float v_alpha;
void main() {
  float size = clamp(a_room * u_px_per_unit * u_room_factor, u_min_px, u_max_px);
  gl_Position = vec4((a_center + u_offset) * u_scale + a_corner * size * u_pixel, 0.0, 1.0);
  v_uv = a_uv;
  v_alpha = a_alpha;
}`;
const QUAD_FS = `#version 300 es
precision mediump float;
in vec2 v_uv; in float v_alpha; uniform sampler2D u_tex; uniform float u_opacity; out vec4 o;
void main() { o = texture(u_tex, v_uv) * u_opacity * v_alpha; }`;

function parsePointTile(buffer) {
  if (String.fromCharCode(...new Uint8Array(buffer, 0, 4)) !== "LMT1") throw new Error("not a point tile");
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
  // After the kinds: uint32 byte length, then the pictures' item ids, UTF-8, one a line (slot order).
  let thumbIds = [];
  if (buffer.byteLength >= off + 4) {
    const length = new DataView(buffer, off, 4).getUint32(0, true);
    const text = new TextDecoder().decode(new Uint8Array(buffer, off + 4, length));
    thumbIds = text ? text.split("\n") : [];
  }
  // Room: distance (max-norm) to the tile's nearest other picture, in map units.
  const room = new Float32Array(m).fill(Infinity);
  for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) {
    const d = Math.max(Math.abs(txs[a] - txs[b]), Math.abs(tys[a] - tys[b]));
    if (d < room[a]) room[a] = d;
    if (d < room[b]) room[b] = d;
  }
  return { n, m, index, xs, ys, kinds, thumbIndex, txs, tys, room, thumbIds };
}

async function fetchChecked(url, signal, stats, headers = undefined) {
  const response = await fetch(url, { signal, headers });
  if (response.status === 429) {
    const err = new Error("busy");
    err.retryAfterMs = 1000 * (Number(response.headers.get("Retry-After")) || 1);
    throw err;
  }
  if (!response.ok) {
    const err = new Error(`${url}: HTTP ${response.status}`);
    err.status = response.status;
    throw err;
  }
  const body = await response.arrayBuffer();
  stats.bytes += body.byteLength;
  return body;
}

/**
 * @param {{canvas: HTMLCanvasElement, mapId: string, fast?: boolean, pointSize?: number, opacity?: number}} options
 *   fast: kept for the interface (the page's choice for very large maps); tiles keep every map fast here.
 */
export function createRenderer({ canvas, mapId, fast = false, pointSize = 6, opacity = 0.95 }) {
  const gl = canvas.getContext("webgl2", { antialias: false, premultipliedAlpha: true, alpha: false });
  if (!gl) throw new Error("WebGL2 is not available");
  // sharp: pictures drawn from the items' own thumbnails this frame, of sharpWanted enlarged ones on screen.
  // pictureArea: CSS px² of the pictures drawn in the last frame; drawMs: the main thread's time in that draw.
  const stats = { bytes: 0, tiles: 0, points: 0, pictures: 0, frames: 0, picturePx: 0, sharp: 0, sharpWanted: 0,
    uploads: 0, uploadMsMax: 0, pictureArea: 0, drawMs: 0, moving: false };
  const viewListeners = [];
  const hoverListeners = [];
  let items = [];
  let tiled = false; // the page holds no points (a sparse items array): points, picks and rings from the tiles
  let colors = { by: "kind" };
  /** The opacity of point `index`'s picture: dimmed with its point (colors.dimmed, or tile-only maps' dim). */
  const pictureAlpha = (index) => {
    const dimmed = colors.dimmed || colors.dim;
    return dimmed && dimmed[index] ? DIMMED_PICTURE_ALPHA : 1;
  };
  let highlighted = []; // indices (whole maps: rings from items; tiled maps: a mask over the tiles' points)
  let highlightPolygon = null; // tiled maps: rings on the tiles' points inside it (a server-side lasso)
  let highlightPoints = []; // [[x, y], ...] rings at these spots (tiled maps: the selected item)
  let highlightMask = null;
  let highlightGeneration = 0;
  let uploadsLeft = UPLOADS_PER_FRAME;
  let uploadsWaiting = false;
  let size = pointSize;
  let alpha = opacity;
  let background = hexColor(MAP_BACKGROUND);
  let bounds = null;
  let camera = { x: 0, y: 0, scale: 100 }; // scale: CSS pixels per map unit
  let tileInfo = null;
  let tileRequest = null;
  let terrain = null; // {info, seed, variant, opacity, visible}
  let frameQueued = false;
  let frameWaiters = [];
  let drawnSettled = false;
  const terrainClient = Math.random().toString(36).slice(2, 12); // this page, for the server's per-client tile budget

  // ------------------------------------------------------------ GL plumbing ----
  function program(vs, fs) {
    const compile = (type, src) => {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    };
    const p = gl.createProgram();
    gl.attachShader(p, compile(gl.VERTEX_SHADER, vs));
    gl.attachShader(p, compile(gl.FRAGMENT_SHADER, fs));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    const uniforms = {};
    const count = gl.getProgramParameter(p, gl.ACTIVE_UNIFORMS);
    for (let i = 0; i < count; i++) {
      const name = gl.getActiveUniform(p, i).name;
      uniforms[name] = gl.getUniformLocation(p, name);
    }
    return { p, u: uniforms, attr: (name) => gl.getAttribLocation(p, name) };
  }
  const pointProgram = program(POINT_VS, POINT_FS);
  const quadProgram = program(QUAD_VS, QUAD_FS);
  let warmed = false;
  let warmBitmap = null;
  createImageBitmap(new Blob([Uint8Array.from(atob(WARM_WEBP), (c) => c.charCodeAt(0))], { type: "image/webp" }),
    BITMAP_OPTIONS).then((bitmap) => { warmBitmap = bitmap; queueFrame(); }, () => { warmed = true; });

  /** A VAO of points: positions relative to `origin` (float64 on the CPU, so deep zooms stay exact). */
  function pointBuffers(xs, ys, rgba, origin) {
    const n = xs.length;
    const pos = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) { pos[2 * i] = xs[i] - origin[0]; pos[2 * i + 1] = ys[i] - origin[1]; }
    const vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    const posBuf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, posBuf);
    gl.bufferData(gl.ARRAY_BUFFER, pos, gl.STATIC_DRAW);
    let loc = pointProgram.attr("a_pos");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    const colorBuf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, colorBuf);
    gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.STATIC_DRAW);
    loc = pointProgram.attr("a_color");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 4, gl.UNSIGNED_BYTE, true, 0, 0);
    gl.bindVertexArray(null);
    return { vao, n, origin, buffers: [posBuf, colorBuf], colorBuf };
  }

  /** Every MOVING_POINT_STRIDE-th point of a points drawable (the same buffers, a wider stride), made once. */
  function thinPoints(d) {
    if (!d.thinVao) {
      const k = MOVING_POINT_STRIDE;
      d.thinVao = gl.createVertexArray();
      gl.bindVertexArray(d.thinVao);
      gl.bindBuffer(gl.ARRAY_BUFFER, d.buffers[0]);
      let loc = pointProgram.attr("a_pos");
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 8 * k, 0);
      gl.bindBuffer(gl.ARRAY_BUFFER, d.buffers[1]);
      loc = pointProgram.attr("a_color");
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 4, gl.UNSIGNED_BYTE, true, 4 * k, 0);
      gl.bindVertexArray(null);
    }
    return { vao: d.thinVao, n: Math.ceil(d.n / MOVING_POINT_STRIDE), origin: d.origin };
  }

  /** A VAO of textured squares: centre, corner, uv, room per vertex (6 vertices a square). */
  /** alphas: one a quad (pictures of dimmed points: DIMMED_PICTURE_ALPHA), or null for all opaque. */
  function quadBuffers(centers, uvRects, rooms, origin, alphas = null) {
    const m = rooms.length;
    const data = new Float32Array(m * 6 * 8);
    const corners = [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]];
    for (let k = 0; k < m; k++) {
      const [u0, v0, u1, v1] = uvRects[k];
      for (let c = 0; c < 6; c++) {
        const o = (k * 6 + c) * 8;
        const [cx, cy] = corners[c];
        data[o] = centers[2 * k] - origin[0];
        data[o + 1] = centers[2 * k + 1] - origin[1];
        data[o + 2] = cx;
        data[o + 3] = cy;
        data[o + 4] = cx < 0 ? u0 : u1;
        data[o + 5] = cy < 0 ? v1 : v0; // image rows run downwards, map y upwards
        data[o + 6] = rooms[k];
        data[o + 7] = alphas ? alphas[k] : 1;
      }
    }
    const vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    const attr = (name, n, offset) => {
      const loc = quadProgram.attr(name);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, n, gl.FLOAT, false, 32, offset);
    };
    attr("a_center", 2, 0);
    attr("a_corner", 2, 8);
    attr("a_uv", 2, 16);
    attr("a_room", 1, 24);
    attr("a_alpha", 1, 28);
    gl.bindVertexArray(null);
    return { vao, count: m * 6, origin, buffers: [buf] };
  }

  /** A texture of a (premultiplied) ImageBitmap; null when this frame's upload budget is spent (try next frame). */
  function texture(image) {
    if (uploadsLeft <= 0) {
      uploadsWaiting = true;
      return null;
    }
    uploadsLeft -= 1;
    const started = performance.now();
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, true);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE); // as decoded: no conversion pass on upload
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, image);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    stats.uploadMsMax = Math.max(stats.uploadMsMax, performance.now() - started); // main-thread time of one upload
    stats.uploads += 1;
    return tex;
  }

  function free(drawable) {
    if (!drawable) return;
    if (drawable.vao) gl.deleteVertexArray(drawable.vao);
    if (drawable.thinVao) gl.deleteVertexArray(drawable.thinVao);
    for (const b of drawable.buffers || []) gl.deleteBuffer(b);
    if (drawable.tex) gl.deleteTexture(drawable.tex);
  }

  // ------------------------------------------------------------ colours ----
  const kindRgba = () => KIND_COLORS.map((hex) => hexColor(hex).map((c) => Math.round(c * 255)));

  /** RGBA bytes for points given by their points-order indices and kind codes. */
  function colorsFor(indices, kinds) {
    const n = indices.length;
    const out = new Uint8Array(4 * n);
    const byKind = kindRgba();
    const values = colors.by === "value" ? colors.values : null;
    const palette = colors.by === "value" ? colors.palette : null;
    // {by: "kind", dim, dimColors}: kind colours, points whose dim[index] is true drawn in dimColors (tiled maps
    // hold no kinds to make palette indices of).
    const dim = colors.by === "kind" && colors.dim ? colors.dim : null;
    const dimRgba = dim && colors.dimColors ? colors.dimColors.map((p) => p.map((v) => Math.round(v * 255))) : null;
    for (let i = 0; i < n; i++) {
      let c;
      if (values && palette && palette.length) {
        // state.colors: values are palette indices, palette entries [r, g, b, a] in 0..1.
        const p = palette[Math.max(0, Math.min(palette.length - 1, Number(values[indices[i]]) | 0))];
        c = [p[0] * 255, p[1] * 255, p[2] * 255, (p[3] ?? 1) * 255];
      } else if (dimRgba && dim[indices[i]]) {
        c = dimRgba[kinds[i]] || dimRgba[2];
      } else {
        c = byKind[kinds[i]] || byKind[2];
      }
      out[4 * i] = c[0]; out[4 * i + 1] = c[1]; out[4 * i + 2] = c[2]; out[4 * i + 3] = c[3] ?? 255;
    }
    return out;
  }

  // ------------------------------------------------------------ data ----
  let whole = null; // drawable of all items (small maps)
  let rings = null; // drawable of highlighted points
  const kindCode = (kind) => (kind === "text" ? 0 : kind === "image" ? 1 : 2);

  function rebuildWhole() {
    free(whole);
    whole = null;
    if (items.length === 0 || tiled) return;
    const n = items.length;
    const xs = new Float64Array(n);
    const ys = new Float64Array(n);
    const idx = new Uint32Array(n);
    const kinds = new Uint8Array(n);
    items.forEach((p, i) => { xs[i] = p.x; ys[i] = p.y; idx[i] = i; kinds[i] = kindCode(p.kind); });
    whole = pointBuffers(xs, ys, colorsFor(idx, kinds), origin());
    whole.xs = xs;
    whole.ys = ys;
  }

  function rebuildRings() {
    free(rings);
    rings = null;
    highlightGeneration += 1;
    highlightMask = null;
    if (tiled && highlighted.length) {
      highlightMask = new Uint8Array(items.length);
      for (const i of highlighted) if (i >= 0 && i < items.length) highlightMask[i] = 1;
    }
    const chosen = tiled ? [] : highlighted.filter((i) => items[i]);
    const xs = [...chosen.map((i) => items[i].x), ...highlightPoints.map((p) => p[0])];
    const ys = [...chosen.map((i) => items[i].y), ...highlightPoints.map((p) => p[1])];
    if (!xs.length) return;
    rings = pointBuffers(xs, ys, new Uint8Array(4 * xs.length).fill(255), origin());
  }

  /** Tiled maps: rings on this tile's highlighted points (by index mask or inside the lasso polygon). */
  function tileRings(d) {
    if (d.ringGeneration === highlightGeneration) return d.rings;
    free(d.rings);
    d.rings = null;
    d.ringGeneration = highlightGeneration;
    if (!highlightMask && !highlightPolygon) return null;
    const xs = [];
    const ys = [];
    for (let i = 0; i < d.n; i++) {
      const on = highlightMask ? highlightMask[d.index[i]] : insidePolygon(d.xs[i], d.ys[i], highlightPolygon);
      if (on) { xs.push(d.xs[i]); ys.push(d.ys[i]); }
    }
    if (xs.length) d.rings = pointBuffers(xs, ys, new Uint8Array(4 * xs.length).fill(255), origin());
    return d.rings;
  }

  function origin() {
    return bounds ? [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2] : [0, 0];
  }

  const tiles = new TileSet({
    load: async (t, signal) => {
      const info = tileInfo;
      const base = `/api/maps/${encodeURIComponent(mapId)}/tiles/${t.z}/${t.x}/${t.y}`;
      let data;
      try {
        data = parsePointTile(await fetchChecked(`${base}.bin?v=${info.version}`, signal, stats));
      } catch (err) {
        if (err.status === 409) refreshTiles().catch(() => {}); // someone else changed the map
        throw err;
      }
      if (data.m) {
        const body = await fetchChecked(`${base}.webp?v=${info.version}`, signal, stats);
        data.atlas = await createImageBitmap(new Blob([body], { type: "image/webp" }), BITMAP_OPTIONS);
      }
      return data;
    },
    unload: (data) => {
      free(data.points);
      free(data.pictures);
      if (data.atlasTex) gl.deleteTexture(data.atlasTex);
      free(data.rings);
      if (data.atlas && data.atlas.close) data.atlas.close();
    },
    onChange: () => queueFrame(),
  });
  const terrainTiles = new TileSet({
    load: async (t, signal, partial) => {
      // revision: the terrain's, so the answer may be cached for good and never outlives a refit.
      const params = new URLSearchParams({ seed: String(terrain.seed || 0), revision: String(terrain.info.revision ?? 0) });
      if (terrain.variant) params.set("variant", terrain.variant);
      const tile = async (query) => {
        const url = `/api/maps/${encodeURIComponent(mapId)}/terrain/${t.z}/${t.x}/${t.y}.png?${query}`;
        const body = await fetchChecked(url, signal, stats, { "X-Terrain-Client": terrainClient });
        return { image: await createImageBitmap(new Blob([body], { type: "image/png" }), BITMAP_OPTIONS) };
      };
      // Where the space has quick previews, the preview first (drawn at once), the full tile replacing it.
      if (terrain.info.previews) partial(await tile(`${params}&preview=1`));
      return tile(params);
    },
    unload: (data) => { free(data.quad); if (data.image && data.image.close) data.image.close(); },
    onChange: () => queueFrame(),
    maxRequests: 4,
    abortLeft: true, // a tile the view has left stops costing the server its decodes
  });

  function tilePoints(d) {
    if (!d.points) d.points = pointBuffers(d.xs, d.ys, colorsFor(d.index, d.kinds), origin());
    return d.points;
  }

  /** The tile's pictures (null until its atlas is uploaded: at most UPLOADS_PER_FRAME a frame). */
  function tilePictures(d) {
    if (!d.pictures && d.atlas) {
      const tex = d.atlasTex || texture(d.atlas);
      if (!tex) return null;
      d.atlasTex = null;
      const side = tileInfo.thumbs_side;
      const cell = tileInfo.thumb_px;
      const W = d.atlas.width;
      const H = d.atlas.height;
      const centers = new Float64Array(2 * d.m);
      const uv = [];
      for (let k = 0; k < d.m; k++) {
        centers[2 * k] = d.txs[k];
        centers[2 * k + 1] = d.tys[k];
        const x = (k % side) * cell;
        const y = Math.floor(k / side) * cell;
        uv.push([x / W, y / H, (x + cell) / W, (y + cell) / H]);
      }
      d.pictures = quadBuffers(centers, uv, d.room, origin(), Float32Array.from(d.thumbIndex, pictureAlpha));
      d.pictures.tex = tex;
    }
    return d.pictures;
  }

  async function refreshTiles() {
    const request = fetch(`/api/maps/${encodeURIComponent(mapId)}/tiles`).then((r) => {
      if (!r.ok) throw new Error(`tiles: HTTP ${r.status}`);
      return r.json();
    });
    tileRequest = request;
    const info = await request;
    if (tileRequest !== request) return; // a newer refresh won
    useTileInfo(info);
  }

  function useTileInfo(info) {
    tileInfo = info;
    tiles.reset({ origin: info.origin, size: info.size }, info.max_zoom);
    clearSharp();
    queueFrame();
  }

  // ------------------------------------------------------------ camera ----
  function cssSize() {
    const rect = canvas.getBoundingClientRect();
    return [rect.width || 1, rect.height || 1];
  }

  function viewRect() {
    const [w, h] = cssSize();
    return [camera.x - w / 2 / camera.scale, camera.y - h / 2 / camera.scale,
      camera.x + w / 2 / camera.scale, camera.y + h / 2 / camera.scale];
  }

  const viewZoom = () => Math.log2(camera.scale); // tiles: pixels per map unit = 2^viewZoom

  function dataToScreen(x, y) {
    const [w, h] = cssSize();
    return [w / 2 + (x - camera.x) * camera.scale, h / 2 - (y - camera.y) * camera.scale];
  }

  function screenToData(px, py) {
    const [w, h] = cssSize();
    return [camera.x + (px - w / 2) / camera.scale, camera.y - (py - h / 2) / camera.scale];
  }

  function moved() {
    queueFrame();
    for (const fn of viewListeners) fn();
  }

  let settleTimer = null; // set while the user moves the camera (wheel, drag) and SETTLE_MS after
  function userMoved() {
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => { settleTimer = null; queueFrame(); }, SETTLE_MS);
    moved();
  }

  function setCamera(next) {
    if (![next.x, next.y, next.scale].every(Number.isFinite) || next.scale <= 0) return nextFrame();
    camera = { x: next.x, y: next.y, scale: Math.min(1e9, Math.max(1e-9, next.scale)) };
    moved();
    return nextFrame();
  }

  function fit() {
    const [w, h] = cssSize();
    if (!bounds) return setCamera({ x: 0, y: 0, scale: Math.min(w, h) / 2.2 });
    const spanX = Math.max(bounds[2] - bounds[0], 1e-9);
    const spanY = Math.max(bounds[3] - bounds[1], 1e-9);
    const scale = bounds[2] - bounds[0] > 0 || bounds[3] - bounds[1] > 0 ? Math.min(w / spanX, h / spanY) * 0.9 : 100;
    return setCamera({ x: (bounds[0] + bounds[2]) / 2, y: (bounds[1] + bounds[3]) / 2, scale });
  }

  // ------------------------------------------------------------ drawing ----
  function queueFrame() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(() => {
      frameQueued = false;
      draw();
      const waiters = frameWaiters;
      frameWaiters = [];
      for (const fn of waiters) fn();
    });
  }

  function nextFrame() {
    return new Promise((resolve) => { frameWaiters.push(resolve); queueFrame(); });
  }

  function resize() {
    const dpr = window.devicePixelRatio || 1;
    const [w, h] = cssSize();
    const W = Math.max(1, Math.round(w * dpr));
    const H = Math.max(1, Math.round(h * dpr));
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    return dpr;
  }

  function uniformsFor(prog, drawableOrigin) {
    const [w, h] = cssSize();
    gl.uniform2f(prog.u.u_offset, drawableOrigin[0] - camera.x, drawableOrigin[1] - camera.y);
    gl.uniform2f(prog.u.u_scale, (2 * camera.scale) / w, (2 * camera.scale) / h);
  }

  function drawPoints(d, dpr, { ring = false, sizePx = size } = {}) {
    const prog = pointProgram;
    gl.useProgram(prog.p);
    uniformsFor(prog, d.origin);
    gl.uniform1f(prog.u.u_size, sizePx * dpr);
    gl.uniform1f(prog.u.u_ring, ring ? 1 : 0);
    gl.uniform1f(prog.u.u_opacity, alpha);
    gl.uniform4fv(prog.u.u_ring_color, RING_COLOR);
    gl.bindVertexArray(d.vao);
    gl.drawArrays(gl.POINTS, 0, d.n);
  }

  function drawQuads(q, { factor, minPx, maxPx, opacity: quadOpacity = 1 }) {
    const prog = quadProgram;
    const [w, h] = cssSize();
    gl.useProgram(prog.p);
    uniformsFor(prog, q.origin);
    gl.uniform2f(prog.u.u_pixel, 2 / w, 2 / h);
    gl.uniform1f(prog.u.u_px_per_unit, camera.scale);
    gl.uniform1f(prog.u.u_room_factor, factor);
    gl.uniform1f(prog.u.u_min_px, minPx);
    gl.uniform1f(prog.u.u_max_px, maxPx);
    gl.uniform1f(prog.u.u_opacity, quadOpacity);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, q.tex);
    gl.uniform1i(prog.u.u_tex, 0);
    gl.bindVertexArray(q.vao);
    gl.drawArrays(gl.TRIANGLES, 0, q.count);
  }

  /** The first picture a page draws costs software GL ~70-140 ms more than the next ones (its first upload of a
   *  decoded image and its first textured draw: set up once), which used to land mid-zoom. Pay it in the first
   *  frames instead: upload a 1x1 transparent WebP decoded as the atlases are, and draw it (no pixel changes). */
  function warmUp() {
    if (!warmBitmap) return queueFrame(); // still decoding
    warmed = true;
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, true);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    const tex = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, tex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, warmBitmap);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
    warmBitmap.close();
    const quad = quadBuffers(new Float64Array([camera.x, camera.y]), [[0, 0, 1, 1]], new Float32Array([0]), origin());
    drawQuads({ ...quad, tex }, { factor: 0, minPx: 4, maxPx: 4 }); // premultiplied (0,0,0,0): leaves the pixels
    free({ ...quad, tex });
    return undefined;
  }

  let drawnPictureTiles = [];
  let drawnPointTiles = [];

  // ------------------------------------------------------------ own thumbnails (sharp close-ups) ----
  const sharp = new Map(); // item id -> {state: 'loading'|'done'|'failed', bitmap, tex, quads: Map, used}
  let sharpActive = 0;
  let sharpQueue = [];

  function clearSharp() {
    for (const entry of sharp.values()) freeSharp(entry);
    sharp.clear();
    sharpQueue = [];
  }

  function freeSharp(entry) {
    if (entry.controller) entry.controller.abort();
    if (entry.tex) gl.deleteTexture(entry.tex);
    for (const q of (entry.quads || new Map()).values()) free({ vao: q.vao, buffers: q.buffers });
    if (entry.bitmap && entry.bitmap.close) entry.bitmap.close();
  }

  /** The item's own thumbnail as the atlas holds it (on=dark-map: dark ink on a light plate), fitted into a square
   * (centred, aspect kept) like an atlas cell. */
  async function loadSharp(id, entry) {
    const url = `/api/items/${encodeURIComponent(id)}/thumbnail?on=dark-map`;
    const body = await fetchChecked(url, entry.controller.signal, stats);
    const image = await createImageBitmap(new Blob([body]), BITMAP_OPTIONS);
    const side = Math.max(image.width, image.height);
    if (side <= (tileInfo ? tileInfo.thumb_px : 64)) { // no sharper than the atlas cell (small pictures, as digits)
      image.close();
      return null;
    }
    if (image.width === image.height) return image;
    const square = new OffscreenCanvas(side, side);
    square.getContext("2d").drawImage(image, (side - image.width) / 2, (side - image.height) / 2);
    image.close();
    return createImageBitmap(square, BITMAP_OPTIONS);
  }

  function pumpSharp() {
    while (sharpActive < SHARP_REQUESTS && sharpQueue.length) {
      const id = sharpQueue.shift();
      const entry = sharp.get(id);
      if (!entry || entry.state !== "queued") continue;
      entry.state = "loading";
      entry.controller = new AbortController();
      sharpActive += 1;
      loadSharp(id, entry).then((bitmap) => {
        if (sharp.get(id) !== entry) { if (bitmap) bitmap.close(); return; }
        entry.bitmap = bitmap;
        entry.state = bitmap ? "done" : "coarse"; // coarse: the atlas cell is as sharp, it stays
      }, () => {
        entry.state = "failed";
      }).finally(() => {
        entry.controller = null;
        sharpActive -= 1;
        queueFrame();
        pumpSharp();
      });
    }
  }

  function evictSharp(keep) {
    if (sharp.size <= SHARP_CACHE) return;
    const old = [...sharp.entries()].filter(([id, e]) => !keep.has(id) && e.state !== "loading")
      .sort((a, b) => a[1].used - b[1].used);
    for (const [id, e] of old.slice(0, sharp.size - SHARP_CACHE)) { freeSharp(e); sharp.delete(id); }
  }

  /** Pictures on screen drawn larger than their atlas cell: when few, draw the items' own thumbnails over them. */
  function drawSharp(dpr, rect) {
    const cell = tileInfo ? tileInfo.thumb_px : 64;
    const wanted = [];
    for (const entry of drawnPictureTiles) {
      const d = entry.d;
      for (let k = 0; k < d.m; k++) {
        const id = d.thumbIds[k];
        if (!id) continue;
        const px = pictureSize(entry, k);
        if (px * dpr < cell * SHARP_FROM) continue;
        const half = px / 2 / camera.scale;
        if (d.txs[k] + half < rect[0] || d.txs[k] - half > rect[2] || d.tys[k] + half < rect[1] || d.tys[k] - half > rect[3]) continue;
        wanted.push({ entry, k, id });
        if (wanted.length > SHARP_MAX_ON_SCREEN) { stats.sharpWanted = 0; return 0; }
      }
    }
    stats.sharpWanted = wanted.length;
    const now = performance.now();
    const keep = new Set(wanted.map((w) => w.id));
    let drawnSharp = 0;
    for (const { entry, k, id } of wanted) {
      let s = sharp.get(id);
      if (!s) {
        s = { state: "queued", used: now, quads: new Map() };
        sharp.set(id, s);
        sharpQueue.push(id);
      }
      s.used = now;
      if (s.state !== "done") continue;
      if (!s.tex) {
        s.tex = texture(s.bitmap);
        if (!s.tex) continue;
        s.side = s.bitmap.width;
        s.bitmap.close();
        s.bitmap = null;
      }
      const d = entry.d;
      const key = `${d.txs[k]},${d.tys[k]},${d.room[k]},${pictureAlpha(d.thumbIndex[k])}`;
      let q = s.quads.get(key);
      if (!q) {
        q = quadBuffers(new Float64Array([d.txs[k], d.tys[k]]), [[0, 0, 1, 1]], new Float32Array([d.room[k]]), origin(),
          [pictureAlpha(d.thumbIndex[k])]);
        s.quads.set(key, q);
      }
      drawQuads({ ...q, tex: s.tex }, { factor: entry.roomFactor, minPx: entry.basePx, maxPx: MAX_PICTURE_PX });
      drawnSharp += 1;
    }
    if (tiles.settled()) pumpSharp(); // after the tiles: they matter more
    evictSharp(keep);
    return drawnSharp;
  }

  function draw() {
    const started = performance.now();
    const moving = settleTimer !== null;
    const roomFactor = moving ? MOVING_ROOM_FACTOR : ROOM_FACTOR;
    const dpr = resize();
    uploadsLeft = UPLOADS_PER_FRAME;
    uploadsWaiting = false;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(...background);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
    if (!warmed) warmUp();
    const rect = viewRect();
    let settled = true;

    if (terrain && terrain.visible && terrain.info) {
      const t = terrain.info;
      for (const tile of terrainTiles.update(viewZoom(), rect, (t.cells || 8) * (t.cell_px || 32))) {
        const d = tile.data;
        if (!d) continue;
        if (!d.quad) {
          const tex = texture(d.image);
          if (!tex) continue;
          const b = tileBounds(terrainTiles.square, tile.z, tile.x, tile.y);
          d.quad = quadBuffers(new Float64Array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]), [[0, 0, 1, 1]],
            new Float32Array([b[2] - b[0]]), origin());
          d.quad.tex = tex;
        }
        drawQuads(d.quad, { factor: 1, minPx: 0, maxPx: 1e9, opacity: terrain.opacity ?? 0.85 });
      }
      settled = settled && terrainTiles.settled();
    }

    const drawn = tileInfo ? tiles.update(viewZoom(), rect, POINT_TILE_PX) : [];
    settled = settled && Boolean(tileInfo) && tiles.settled();
    let points = 0;
    drawnPointTiles = [];
    if (whole) {
      drawPoints(whole, dpr);
      points = whole.n;
    } else if (tiled) {
      for (const tile of drawn) {
        if (!tile.data || !tile.data.n) continue;
        const thin = moving && MOVING_POINT_STRIDE > 1 && tile.data.atlas && cellPxOf(tile) >= MIN_PICTURE_PX;
        drawPoints(thin ? thinPoints(tilePoints(tile.data)) : tilePoints(tile.data), dpr);
        drawnPointTiles.push(tile.data);
        points += tile.data.n;
      }
    }
    let pictures = 0;
    let picturePx = 0;
    let pictureArea = 0;
    drawnPictureTiles = [];
    for (const tile of drawn) {
      const d = tile.data;
      if (!d || !d.atlas) continue;
      const cellPx = cellPxOf(tile);
      if (cellPx < MIN_PICTURE_PX) continue;
      const quads = tilePictures(d);
      if (!quads) continue; // its atlas goes up in a later frame
      const basePx = Math.min(MAX_PICTURE_PX, cellPx * 0.8); // neighbouring cells' pictures overlap less
      drawQuads(quads, { factor: roomFactor, minPx: basePx, maxPx: MAX_PICTURE_PX });
      const entry = { d, basePx, roomFactor };
      drawnPictureTiles.push(entry);
      for (let k = 0; k < d.m; k++) pictureArea += pictureSize(entry, k) ** 2;
      pictures += d.m;
      picturePx = basePx;
    }
    if (!drawnPictureTiles.length || (moving && !MOVING_SHARP)) stats.sharpWanted = 0;
    const sharpDrawn = drawnPictureTiles.length && (!moving || MOVING_SHARP) ? drawSharp(dpr, rect) : 0;
    if (tiled && (highlightMask || highlightPolygon)) {
      for (const d of drawnPointTiles) {
        const r = tileRings(d);
        if (r) drawPoints(r, dpr, { ring: true, sizePx: size + 8 });
      }
    }
    if (rings) drawPoints(rings, dpr, { ring: true, sizePx: size + 8 });
    gl.bindVertexArray(null);
    if (uploadsWaiting) {
      settled = false; // pictures still to go up: not everything of this view is drawn yet
      queueFrame();
    }
    stats.frames += 1;
    stats.tiles = drawn.length;
    stats.points = points;
    stats.pictures = pictures;
    stats.picturePx = picturePx;
    stats.sharp = sharpDrawn;
    stats.pictureArea = Math.round(pictureArea);
    stats.moving = moving;
    stats.drawMs = performance.now() - started;
    drawnSettled = settled && !moving; // settled: the full pictures of this view are drawn
  }

  /** A picture cell of this point tile on screen, CSS px. */
  const cellPxOf = (tile) => (tiles.square.size / 2 ** tile.z / tileInfo.thumbs_side) * camera.scale;

  /** Screen size (CSS px) of picture k of a drawn tile, as the shader computes it. */
  function pictureSize(entry, k) {
    return Math.max(entry.basePx, Math.min(MAX_PICTURE_PX, entry.d.room[k] * camera.scale * entry.roomFactor));
  }

  // ------------------------------------------------------------ picking ----
  function pickPicture(px, py) {
    for (let t = drawnPictureTiles.length - 1; t >= 0; t--) {
      const entry = drawnPictureTiles[t];
      const d = entry.d;
      for (let k = d.m - 1; k >= 0; k--) {
        const [sx, sy] = dataToScreen(d.txs[k], d.tys[k]);
        const half = pictureSize(entry, k) / 2;
        if (Math.abs(px - sx) <= half && Math.abs(py - sy) <= half) return { index: d.thumbIndex[k], size: 2 * half };
      }
    }
    return null;
  }

  const known = (index) => index >= 0 && index < items.length && (tiled || Boolean(items[index]));

  function pick(px, py, slop = 3) {
    const picture = pickPicture(px, py);
    if (picture && known(picture.index)) return picture.index;
    let best = -1;
    let bestDistance = size / 2 + slop;
    const consider = (index, x, y) => {
      const [sx, sy] = dataToScreen(x, y);
      const distance = Math.hypot(sx - px, sy - py);
      if (distance <= bestDistance) { best = index; bestDistance = distance; }
    };
    if (whole) for (let i = 0; i < whole.n; i++) consider(i, whole.xs[i], whole.ys[i]);
    else for (const d of drawnPointTiles) for (let i = 0; i < d.n; i++) consider(d.index[i], d.xs[i], d.ys[i]);
    return known(best) ? best : -1;
  }

  /** Where point `index` is drawn and its kind: {x, y, kind} (tiled maps: from the tiles in memory), or null. */
  function pointAt(index) {
    if (!tiled) return items[index] ? { x: items[index].x, y: items[index].y, kind: items[index].kind } : null;
    const kindNames = ["text", "image", "generated"];
    const search = (d) => {
      for (let i = 0; i < d.n; i++) if (d.index[i] === index) return { x: d.xs[i], y: d.ys[i], kind: kindNames[d.kinds[i]] || "generated" };
      for (let k = 0; k < d.m; k++) if (d.thumbIndex[k] === index) return { x: d.txs[k], y: d.tys[k], kind: "image", id: d.thumbIds[k] || null };
      return null;
    };
    for (const entry of drawnPictureTiles) { const found = search(entry.d); if (found) return found; }
    for (const d of drawnPointTiles) { const found = search(d); if (found) return found; }
    for (const t of tiles.cache.values()) if (t.data) { const found = search(t.data); if (found) return found; }
    return null;
  }

  // ------------------------------------------------------------ input: pan, zoom, hover ----
  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    drag = { x: event.clientX, y: event.clientY, id: event.pointerId };
  });
  window.addEventListener("pointermove", (event) => {
    if (drag && event.pointerId === drag.id && event.buttons & 1) {
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      drag.x = event.clientX;
      drag.y = event.clientY;
      if (dx || dy) {
        camera = { ...camera, x: camera.x - dx / camera.scale, y: camera.y + dy / camera.scale };
        userMoved();
      }
    } else if (event.target === canvas) {
      hoverAt(event);
    }
  });
  window.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("pointerleave", () => { if (hovered >= 0) { hovered = -1; for (const fn of hoverListeners) fn(-1); } });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const py = event.clientY - rect.top;
    const delta = event.deltaY * (event.deltaMode === 1 ? 40 : event.deltaMode === 2 ? 800 : 1);
    const factor = 2 ** (-delta / 600); // a wheel notch (100) zooms ~12%
    const [x, y] = screenToData(px, py);
    const scale = Math.min(1e9, Math.max(1e-9, camera.scale * factor));
    const [w, h] = cssSize();
    // Keep the spot under the cursor where it is.
    camera = { x: x - (px - w / 2) / scale, y: y + (py - h / 2) / scale, scale };
    userMoved();
  }, { passive: false });

  let hovered = -1;
  let hoverQueued = null;
  function hoverAt(event) {
    const rect = canvas.getBoundingClientRect();
    const at = [event.clientX - rect.left, event.clientY - rect.top];
    if (hoverQueued) { hoverQueued = at; return; }
    hoverQueued = at;
    requestAnimationFrame(() => {
      const [px, py] = hoverQueued;
      hoverQueued = null;
      const index = pick(px, py, 3);
      if (index === hovered) return;
      hovered = index;
      const point = index >= 0 ? pointAt(index) : null;
      for (const fn of hoverListeners) {
        if (index < 0 || !point) fn(-1);
        else fn(index, dataToScreen(point.x, point.y), point);
      }
    });
  }

  new ResizeObserver(() => moved()).observe(canvas);

  /** What the tiles in memory hold on the GPU: 12 B a point (position, colour), RGBA atlases, terrain images. */
  function gpuBytes() {
    let total = whole ? 12 * whole.n : 0;
    for (const t of tiles.cache.values()) {
      if (t.state !== "done" || !t.data) continue;
      if (t.data.points) total += 12 * t.data.n;
      if (t.data.pictures && t.data.atlas) total += 4 * t.data.atlas.width * t.data.atlas.height;
    }
    for (const e of sharp.values()) if (e.tex) total += 4 * e.side * e.side;
    for (const t of terrainTiles.cache.values()) if (t.data && t.data.quad) total += 4 * t.data.image.width * t.data.image.height;
    return total;
  }

  // ------------------------------------------------------------ interface ----
  return {
    /**
     * tiled: the page holds no points (next is a sparse array as long as the map; default: more than
     * WHOLE_POINTS_MAX items); tileInfo: GET .../tiles when the caller has it already.
     */
    async setPoints(next, { fit: refit = false, bounds: given = null, tiled: tileOnly = null, tileInfo: info = null } = {}) {
      items = next;
      tiled = tileOnly === null ? items.length > WHOLE_POINTS_MAX : Boolean(tileOnly);
      tiles.paused = true; // the map version moved on: tiles of the old one would answer 409
      if (refit || !bounds) bounds = given || (tiled ? null : boundsOf(items));
      rebuildWhole();
      rebuildRings();
      const refreshed = info ? Promise.resolve(useTileInfo(info))
        : refreshTiles().catch((err) => console.warn("latentmap: point tiles", err));
      if (refit) await fit();
      await refreshed;
      return nextFrame();
    },
    setColors(next) {
      colors = next && (next.by === "value" || next.dim) ? next : { by: "kind" };
      rebuildWhole();
      for (const t of tiles.cache.values()) if (t.data && t.data.points) { free(t.data.points); t.data.points = null; }
      // Pictures of dimmed points are dimmed too: their quads are rebuilt (the atlas texture is kept).
      for (const t of tiles.cache.values()) {
        const pictures = t.data && t.data.pictures;
        if (pictures) { free({ vao: pictures.vao, buffers: pictures.buffers }); t.data.pictures = null; t.data.atlasTex = pictures.tex; }
      }
      return nextFrame();
    },
    setStyle({ pointSize: nextSize, opacity: nextOpacity, background: nextBackground } = {}) {
      if (nextSize !== undefined) size = nextSize;
      if (nextOpacity !== undefined) alpha = nextOpacity;
      if (nextBackground !== undefined) background = hexColor(nextBackground);
      queueFrame();
    },
    /** indices, or {indices, polygon, points}: rings on these points, on the points inside polygon (tiled maps:
     *  the tiles' points), at these [x, y] spots. */
    highlight(spec) {
      const { indices = [], polygon = null, points = [] } = Array.isArray(spec) ? { indices: spec } : spec || {};
      highlighted = [...indices];
      highlightPolygon = polygon && polygon.length >= 3 ? polygon.map(([x, y]) => [x, y]) : null;
      highlightPoints = points.map(([x, y]) => [x, y]);
      rebuildRings();
      queueFrame();
    },
    view() {
      const [, h] = cssSize();
      return { x: camera.x, y: camera.y, zoom: camera.scale / h };
    },
    setView({ x, y, zoom }) {
      const [, h] = cssSize();
      return setCamera({ x, y, scale: zoom * h });
    },
    fitView: () => fit(),
    dataToScreen,
    screenToData,
    pick,
    pointAt,
    /** The picture under a screen position: {index, size (CSS px)} or null (tests: what is drawn there). */
    pictureAt: (px, py) => pickPicture(px, py),
    /** The decoded-terrain layer (#18): info = GET /api/maps/{id} `terrain`; visible, opacity, seed, variant. */
    setTerrain(next) {
      const before = terrain;
      terrain = { ...(terrain || {}), ...next };
      const changed = !before || before.seed !== terrain.seed || before.variant !== terrain.variant
        || JSON.stringify(before.info) !== JSON.stringify(terrain.info);
      if (changed && terrain.info) {
        const t = terrain.info;
        // The contract names no deepest zoom (a server setting): deeper tiles answer 404 and their parent stays.
        terrainTiles.reset({ origin: t.origin, size: t.size }, Number.isFinite(t.max_zoom) ? t.max_zoom : 12);
      }
      queueFrame();
    },
    onView: (fn) => viewListeners.push(fn),
    onHover: (fn) => hoverListeners.push(fn),
    info: () => ({
      library: LIBRARY,
      mode: fast ? "fast" : "full",
      source: whole ? "items" : "tiles",
      tiled,
      colorBy: colors.by,
      palette: colors.by === "value" ? colors.palette : KIND_COLORS,
      pointSize: size,
      terrain: terrain ? { visible: Boolean(terrain.visible), opacity: terrain.opacity, seed: terrain.seed } : null,
      ...stats,
      gpuBytes: gpuBytes(),
      settled: drawnSettled,
      tileVersion: tileInfo ? tileInfo.version : null,
    }),
  };
}

function boundsOf(items) {
  let b = null;
  for (const p of items) {
    if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
    b = b ? [Math.min(b[0], p.x), Math.min(b[1], p.y), Math.max(b[2], p.x), Math.max(b[3], p.y)] : [p.x, p.y, p.x, p.y];
  }
  return b;
}
