"""The map page with many points: time to the first drawn frame in headless Chromium and frame times while
panning and zooming (from requestAnimationFrame), against a real server whose map is written straight into
its store (synthetic positions; only positions are read by the page).

Baseline in the same run: the same page with a 1,000-point map. Large maps are measured in both render modes
(`?render=full`: round, alpha-blended points; `?render=fast`: regl-scatterplot's performanceMode, squares
without blending, the page's default from 200,000 points). Prints one table, exits 0.

    python bench/render.py --sizes 100000
    python bench/render.py --sizes 100000,1000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from payload import build_map
from serve_util import running_server
from space_util import machine

CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

FRAME_PROBE = """async (ms) => {
  const frame = document.getElementById('map-frame');
  const rect = frame.getBoundingClientRect();
  const times = [];
  let last = performance.now();
  let running = true;
  const tick = (t) => { times.push(t - last); last = t; if (running) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  const cx = rect.left + rect.width / 2, cy = rect.top + rect.height / 2;
  const end = performance.now() + ms;
  let i = 0;
  while (performance.now() < end) {  // wheel-zoom in and out around the centre: the plot redraws each event
    frame.querySelector('canvas').dispatchEvent(new WheelEvent('wheel', {deltaY: (i++ % 20 < 10) ? -40 : 40,
      clientX: cx, clientY: cy, bubbles: true, cancelable: true}));
    await new Promise((r) => setTimeout(r, 16));
  }
  running = false;
  return times.slice(1);
}"""


def measure(browser, base: str, map_id: str, seconds: float, render: str | None = None) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        start = time.perf_counter()
        page.goto(f"{base}/m/{map_id}" + (f"?render={render}" if render else ""))
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        first_frame = time.perf_counter() - start
        times = sorted(page.evaluate(FRAME_PROBE, int(seconds * 1000)))
        fmt = page.evaluate("window.latentmap.state.pointsFormat || 'json'")
        mode = page.evaluate("window.latentmap.state.renderMode")
        return {"first_frame_s": first_frame, "format": fmt, "render": mode,
                "frame_p50_ms": statistics.median(times) if times else float("nan"),
                "frame_p95_ms": times[int(0.95 * (len(times) - 1))] if times else float("nan"),
                "frames": len(times)}
    finally:
        page.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="100000")
    p.add_argument("--baseline", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=3.0, help="how long to pan/zoom while timing frames")
    p.add_argument("--gpu", action="store_true", help="let Chromium use a GPU (default: software rendering)")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    sizes = [args.baseline] + [int(s) for s in args.sizes.split(",")]
    data_dir = tempfile.mkdtemp(prefix="latentmap-render-")
    maps = {}
    for n in sizes:
        t = time.perf_counter()
        maps[n] = build_map(data_dir, n)
        print(f"built a {n:,}-point map in {time.perf_counter() - t:.1f} s", flush=True)
    rows = []
    with running_server("tiny-random", data_dir=data_dir) as (base, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=CHROMIUM_ARGS + ([] if args.gpu else ["--disable-gpu"]))
        try:
            for n in sizes:
                # The page's own choice, and for the large maps both render modes side by side.
                for render in ((None,) if n == args.baseline else ("full", "fast")):
                    rows.append((n, measure(browser, base, maps[n], args.seconds, render)))
        finally:
            browser.close()
    print(f"render: headless Chromium {'(GPU)' if args.gpu else '(software GL)'}, 1280x800; {machine()}")
    print("| points | payload | render | first frame (s) | ÷ 1k-point page | frame p50 / p95 while zooming (ms) "
          "| frames |")
    print("|---|---|---|---|---|---|---|")
    base_first = rows[0][1]["first_frame_s"]
    for n, r in rows:
        print(f"| {n:,} | {r['format']} | {r['render']} | {r['first_frame_s']:.2f} | {r['first_frame_s'] / base_first:.2f} | "
              f"{r['frame_p50_ms']:.1f} / {r['frame_p95_ms']:.1f} | {r['frames']} |")


if __name__ == "__main__":
    main()
