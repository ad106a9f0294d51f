"""The map in headless Chromium (software GL): time to the first drawn frame, frame times while panning and
zooming, browser memory and bytes fetched, for maps of points and maps of images, against a real server whose
maps are written straight into its store (synthetic clustered positions; image maps get real thumbnails: crops of
sklearn's sample photographs, 256 distinct ones hard-linked under every item's name).

Every figure is also given as a ratio to the 1,000-point map in the same run (the baseline row). Pages:
- `map`: the map page as a user opens it (`/m/{id}`);
- `renderer`: the WebGL2 renderer alone (static/js/render/harness.html), to separate the renderer from the page.
(The previous regl-scatterplot renderer is gone from the page, so its CSP needs no eval; its last figures stay in
bench/README.md §6b.)

    python bench/render.py                                   # 1k / 100k / 1M points, 1k / 20k / 100k images
    python bench/render.py --points 100000 --images 20000    # quicker
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

import numpy as np
from serve_util import running_server
from space_util import machine

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-precise-memory-info",
]

# Wheel-zoom in and out around a cursor that wanders over the map: every event pans and zooms; frame times from
# requestAnimationFrame.
FRAME_PROBE = """async ([ms, selector]) => {
  const target = document.querySelector(selector);
  const rect = target.getBoundingClientRect();
  const times = [];
  let last = performance.now();
  let running = true;
  const tick = (t) => { times.push(t - last); last = t; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const end = performance.now() + ms;
  let i = 0;
  while (performance.now() < end) {
    const a = i / 15;
    const cx = rect.left + rect.width * (0.5 + 0.3 * Math.cos(a)), cy = rect.top + rect.height * (0.5 + 0.3 * Math.sin(a));
    target.dispatchEvent(new WheelEvent('wheel', {deltaY: (i++ % 20 < 10) ? -60 : 60, clientX: cx, clientY: cy,
      bubbles: true, cancelable: true}));
    await new Promise((r) => setTimeout(r, 16));
  }
  running = false;
  return times.slice(1);
}"""

MEMORY = """() => {
  const info = window.latentmap ? window.latentmap.renderer() : window.renderer.info();
  const resources = performance.getEntriesByType('resource');
  const bytes = resources.reduce((s, e) => s + (e.encodedBodySize || 0), 0);
  return {heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
          gpu: info && info.gpuBytes !== undefined ? info.gpuBytes : null, bytes,
          tileBytes: info && info.bytes !== undefined ? info.bytes : null};
}"""

# Zoom 16x in one wheel step at a spot off-centre, then time until every tile of the new view is drawn.
ZOOM_AND_WAIT = """async (selector) => {
  const info = () => (window.latentmap ? window.latentmap.renderer() : window.renderer.info());
  const target = document.querySelector(selector);
  const rect = target.getBoundingClientRect();
  const t0 = performance.now();
  target.dispatchEvent(new WheelEvent('wheel', {deltaY: -2400, clientX: rect.left + rect.width * 0.37,
    clientY: rect.top + rect.height * 0.61, bubbles: true, cancelable: true}));
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  while (!info().settled) await new Promise((r) => setTimeout(r, 10));
  return {s: (performance.now() - t0) / 1000, pictures: info().pictures};
}"""

PAGES = {
    "map": ("/m/{id}", "#map-frame canvas", "body[data-ready='1']"),
    "renderer": ("/static/js/render/harness.html?map={id}", "canvas#map", "body[data-ready='1']"),
}


def clustered_positions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-8, 8, (60, 2))
    weights = rng.dirichlet(np.ones(60) * 0.7)
    which = rng.choice(60, size=n, p=weights)
    spread = rng.uniform(0.1, 0.6, 60)[which, None]
    return (centers[which] + rng.normal(0, 1, (n, 2)) * spread).astype(np.float32)


def photo_thumbnails(k: int = 256, size: int = 96) -> list[bytes]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    rng = np.random.default_rng(1)
    out = []
    for i in range(k):
        im = images[i % 2]
        y, x = rng.integers(0, im.shape[0] - size), rng.integers(0, im.shape[1] - size)
        buf = io.BytesIO()
        Image.fromarray(im[y : y + size, x : x + size]).save(buf, "PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def build_map(data_dir: str, n: int, images: bool) -> str:
    from app.maps.store import NewItem, Store

    store = Store(data_dir)
    record, _ = store.create_map(f"{'images' if images else 'points'} {n}", "tiny-random")
    xy = clustered_positions(n)
    vec = np.zeros(8, np.float32)
    pictures = photo_thumbnails() if images else []
    sources = []
    for k, data in enumerate(pictures):  # 256 distinct pictures, linked under every image item's name
        path = os.path.join(data_dir, f"picture-{k}.png")
        with open(path, "wb") as f:
            f.write(data)
        sources.append(path)
    marker = b"\x89PNG"  # a placeholder so the row says "has a thumbnail"; the real file is linked in below
    from app.maps import store as store_module

    real_write = store_module.write_atomic
    store_module.write_atomic = lambda path, data: None  # bench only: the files are hard links made below
    for start in range(0, n, 50_000):
        m = min(n, start + 50_000) - start
        items = [
            NewItem(
                kind="image" if images else "text",
                label=f"thing {start + i}",
                vector=vec,
                decode_vector=vec,
                thumbnail_png=marker if images else None,
            )
            for i in range(m)
        ]
        made = store.add_items(
            record.id,
            items,
            xy[start : start + m],
            projection={"method": "umap", "revision": 1, "fitted_count": n} if start == 0 else None,
        )
        for j, item in enumerate(made):
            if images:
                os.link(sources[(start + j) % len(sources)], store.thumb_dir / f"{item.id}.png")
    store_module.write_atomic = real_write
    store.close()
    return record.id


def measure(browser, base: str, map_id: str, page_kind: str, seconds: float, bounds) -> dict:
    path, canvas_selector, ready = PAGES[page_kind]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        start = time.perf_counter()
        page.goto(base + path.format(id=map_id))
        page.wait_for_selector(ready, timeout=300_000)
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        first_frame = time.perf_counter() - start
        times = sorted(page.evaluate(FRAME_PROBE, [int(seconds * 1000), canvas_selector]))
        row = {
            "first_frame_s": first_frame,
            "frames": len(times),
            "frame_p50_ms": statistics.median(times) if times else float("nan"),
            "frame_p95_ms": times[int(0.95 * (len(times) - 1))] if times else float("nan"),
            "max_ms": times[-1] if times else float("nan"),
            "pictures_s": None,
        }
        has_tiles = page.evaluate(
            "(() => { const i = window.latentmap ? window.latentmap.renderer()"
            " : window.renderer.info(); return i && i.settled !== undefined; })()"
        )
        if has_tiles:
            row["pictures_s"] = page.evaluate(ZOOM_AND_WAIT, canvas_selector)
        row.update(page.evaluate(MEMORY))
        return row
    finally:
        page.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--points", default="100000,1000000")
    p.add_argument("--images", default="1000,20000,100000")
    p.add_argument("--pages", default="map,renderer")
    p.add_argument("--seconds", type=float, default=3.0, help="how long to pan/zoom while timing frames")
    p.add_argument("--gpu", action="store_true", help="let Chromium use a GPU (default: software rendering)")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    specs = (
        [(1000, False)]
        + [(int(s), False) for s in args.points.split(",") if s]
        + [(int(s), True) for s in args.images.split(",") if s]
    )
    pages = [k for k in args.pages.split(",") if k]
    data_dir = tempfile.mkdtemp(prefix="latentmap-render-")
    maps = {}
    for n, images in specs:
        t = time.perf_counter()
        maps[(n, images)] = build_map(data_dir, n, images)
        print(f"built a {n:,}-{'image' if images else 'point'} map in {time.perf_counter() - t:.1f} s", flush=True)
    rows = []
    with running_server("tiny-random", data_dir=data_dir) as (base, _), sync_playwright() as pw:
        import httpx

        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS + ([] if args.gpu else ["--disable-gpu"])
        )
        try:
            for spec in specs:
                map_id = maps[spec]
                bounds = httpx.get(f"{base}/api/maps/{map_id}", timeout=60).json()["bounds"]
                t = time.perf_counter()
                httpx.get(f"{base}/api/maps/{map_id}/tiles", timeout=600).raise_for_status()  # builds the tile index
                index_s = time.perf_counter() - t
                for kind in pages:
                    row = measure(browser, base, map_id, kind, args.seconds, bounds)
                    row["index_s"] = index_s
                    rows.append((spec, kind, row))
                    print(spec, kind, {k: v for k, v in row.items()}, flush=True)
        finally:
            browser.close()
    print(f"\nrender: headless Chromium {'(GPU)' if args.gpu else '(software GL)'}, 1280x800; {machine()}")
    print(
        "| map | page | first frame s (÷ 1k) | frame p50 ms (÷ 1k) | frame p95 ms (÷ 1k) | worst frame ms | frames "
        "| pictures after a zoom s | JS heap MB | GPU est. MB | bytes fetched MB (tiles) | tile index s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    base_rows = {kind: r for (spec, kind, r) in rows if spec == (1000, False)}
    for (n, images), kind, r in rows:
        b = base_rows.get(kind if kind in base_rows else "map") or r
        pics = r["pictures_s"]
        pics_text = f"{pics['s']:.2f} ({pics['pictures']} shown)" if pics else "–"
        gpu = f"{r['gpu'] / 1e6:.1f}" if r.get("gpu") is not None else "–"
        tiles = f" ({r['tileBytes'] / 1e6:.2f})" if r.get("tileBytes") is not None else ""
        print(
            f"| {n:,} {'images' if images else 'points'} | {kind} | {r['first_frame_s']:.2f} "
            f"({r['first_frame_s'] / b['first_frame_s']:.2f}) | {r['frame_p50_ms']:.1f} "
            f"({r['frame_p50_ms'] / b['frame_p50_ms']:.2f}) | {r['frame_p95_ms']:.1f} "
            f"({r['frame_p95_ms'] / b['frame_p95_ms']:.2f}) | {r['max_ms']:.0f} | {r['frames']} | {pics_text} "
            f"| {r['heap'] / 1e6:.1f} | {gpu} | {r['bytes'] / 1e6:.2f}{tiles} | {r['index_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
