// The renderer alone on a page (no panels), for bench/render.py: /static/js/render/harness.html?map=ID. A file, not
// an inline script: the pages' Content-Security-Policy runs scripts from this origin only.
import { createRenderer, WHOLE_POINTS_MAX } from "/static/js/render/map_renderer.js";
const params = new URLSearchParams(location.search);
const mapId = params.get("map");
const renderer = createRenderer({ canvas: document.getElementById("map"), mapId, pointSize: 6 });
window.renderer = renderer;
const meta = await (await fetch(`/api/maps/${mapId}`)).json();
if (meta.count > WHOLE_POINTS_MAX) { // as the map page: tile-only, no points downloaded
  const tileInfo = await (await fetch(`/api/maps/${mapId}/tiles`)).json();
  await renderer.setPoints(new Array(tileInfo.count), { fit: true, bounds: meta.bounds, tiled: true, tileInfo });
} else {
  const bin = await (await fetch(`/api/maps/${mapId}/points.bin`)).arrayBuffer();
  const n = new Uint32Array(bin, 4, 1)[0];
  const xs = new Float32Array(bin, 8, n), ys = new Float32Array(bin, 8 + 4 * n, n), kinds = new Uint8Array(bin, 8 + 8 * n, n);
  const names = ["text", "image", "generated"];
  const items = Array.from({ length: n }, (_, i) => ({ x: xs[i], y: ys[i], kind: names[kinds[i]] }));
  await renderer.setPoints(items, { fit: true, bounds: meta.bounds });
}
const wait = () => new Promise((r) => { const t = () => (renderer.info().settled ? r() : setTimeout(t, 20)); t(); });
await wait();
window.settled = wait;
document.body.dataset.ready = "1";
