"""The README's terrain screenshots: the Digits demo map (1,797 handwritten digits + 30 prompts, built on first start
of `latentmap serve --space digits`) with "Show the space" on, in headless Chromium at two zooms: the page's own fit
and a close-up of where the most digits meet.

    python docs/terrain_screenshots.py [DATA_DIR]   # writes docs/terrain-zoom-1.png and docs/terrain-zoom-2.png

DATA_DIR (optional) keeps the demo map and its decoded tiles for the next run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serve_util import running_server  # noqa: E402  (bench/ is put on the path just above)

SETTLE_S = 900  # every tile of the view decoded (hundreds of cells on a small CPU)


def main() -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    with (
        running_server("digits", data_dir=sys.argv[1] if len(sys.argv) > 1 else None) as (base, _),
        sync_playwright() as pw,
    ):
        info = next(m for m in httpx.get(f"{base}/api/maps").json() if m["title"] == "Digits")
        h = info["bounds"][3] - info["bounds"][1]
        points = httpx.get(f"{base}/api/maps/{info['id']}/points").json()["points"]

        # Close-up: where the most digits meet (the item whose 40 nearest items on the map hold the most digits).
        drawn = [p for p in points if p["label"].startswith("digit ")]
        xy = np.array([[p["x"], p["y"]] for p in drawn])
        digit = np.array([int(p["label"].split()[1]) for p in drawn])
        nearest = np.argsort(np.linalg.norm(xy[:, None] - xy[None], axis=2), axis=1)[:, :40]
        mx, my = xy[np.argmax([len(set(digit[row])) for row in nearest])]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for k, view in enumerate([None, (mx, my, 3 / h)], 1):  # the page's own fit, then a third of the map's height
            query = "?terrain=1&terrain_opacity=1" + (
                f"&view={view[0]:.4f},{view[1]:.4f},{view[2]:.4f}" if view else ""
            )
            start = time.perf_counter()
            page.goto(f"{base}/m/{info['id']}{query}")
            page.wait_for_selector("body[data-ready='1']", timeout=300_000)
            # Polled with evaluate: the page's CSP refuses the `new Function` that Playwright's wait_for_function uses.
            drawn = "(() => { const r = window.latentmap.renderer(); return r && r.terrain && r.terrain.visible && r.settled; })()"
            while not page.evaluate(drawn):
                if time.perf_counter() - start > SETTLE_S:
                    raise TimeoutError(f"the terrain did not settle in {SETTLE_S} s")
                time.sleep(1)
            time.sleep(0.5)
            path = ROOT / "docs" / f"terrain-zoom-{k}.png"
            page.screenshot(path=str(path))
            print(
                path.relative_to(ROOT),
                f"{time.perf_counter() - start:.0f} s",
                page.evaluate("window.latentmap.renderer()"),
            )
        browser.close()


if __name__ == "__main__":
    main()
