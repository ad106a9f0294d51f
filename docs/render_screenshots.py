"""The README's map screenshots: a folder of images (sklearn's handwritten digits, one sub-folder per digit) built
with `latentmap build --images` on the digits space, opened in headless Chromium at three zooms.

    python docs/render_screenshots.py          # writes docs/render-zoom-1.png, -2.png, -3.png
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serve_util import running_server  # noqa: E402  (bench/ is put on the path just above)


def digit_folder(root: Path, n: int = 600) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / "digits"
    for i in range(n):
        sub = folder / str(digits.target[i])
        sub.mkdir(parents=True, exist_ok=True)
        pixels = (255 - digits.images[i] * 16).clip(0, 255).astype(np.uint8)  # dark ink on white, as on paper
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(sub / f"digit-{i:04d}.png")
    return folder


def wait_until(page, expression: str, timeout_s: float = 120.0) -> None:
    """Poll with evaluate: the page's CSP refuses the eval that Playwright's wait_for_function needs."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.05)


def main() -> None:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="latentmap-shots-"))
    folder = digit_folder(work)
    data = work / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "build",
            "--data-dir",
            str(data),
            "--space",
            "digits",
            "--images",
            str(folder),
            "--title",
            "A folder of handwritten digits",
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    with running_server("digits", data_dir=str(data)) as (base, _), sync_playwright() as pw:
        import httpx

        maps = httpx.get(f"{base}/api/maps").json()
        info = next(m for m in maps if m["title"].startswith("A folder"))
        b = info["bounds"]
        cx, cy, h = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[3] - b[1]
        points = httpx.get(f"{base}/api/maps/{info['id']}/points").json()["points"]
        # Close-up: the item with the most neighbours within a twentieth of the map's height.
        xy = np.array([[p["x"], p["y"]] for p in points])
        crowd = (np.linalg.norm(xy[:, None] - xy[None], axis=2) < h / 20).sum(axis=1)
        fx, fy = xy[crowd.argmax()]
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for k, view in enumerate([None, (cx, cy, 3 / h), (fx, fy, 12 / h)], 1):  # the page's own fit, then closer
            page.goto(f"{base}/m/{info['id']}" + (f"?view={view[0]},{view[1]},{view[2]}" if view else ""))
            page.wait_for_selector("body[data-ready='1']", timeout=120_000)
            wait_until(page, "window.latentmap.renderer().settled")
            time.sleep(1.5)  # the items' own thumbnails (close-ups) load once the tiles are in
            wait_until(page, "window.latentmap.renderer().settled")
            page.screenshot(path=str(ROOT / "docs" / f"render-zoom-{k}.png"))
            print(f"docs/render-zoom-{k}.png", page.evaluate("window.latentmap.renderer()"))
        browser.close()


if __name__ == "__main__":
    main()
