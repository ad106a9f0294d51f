"""Which library draws the map's points: deck.gl's ScatterplotLayer (vendored, static/vendor/deck.gl-9.4.0.min.js)
against plain WebGL2 points (what static/js/render/map_renderer.js does), same points, same page size, headless
Chromium with software GL. Frame time = a camera move plus two animation frames, with a pixel read-back so the
GPU work is inside the measurement. Prints one table of medians (ms) and the ratio deck.gl ÷ WebGL2.

    python bench/render_engines.py --sizes 1000,16000,100000
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import statistics
import tempfile
import threading
from pathlib import Path

from space_util import machine

VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor" / "deck.gl-9.4.0.min.js"

COMMON = """
const n = Number(new URLSearchParams(location.search).get('n'));
const pos = new Float32Array(2 * n);
let s = 1; const rand = () => (s = (s * 16807) % 2147483647) / 2147483647;
for (let i = 0; i < 2 * n; i++) pos[i] = rand() * 2 - 1;
const col = new Uint8Array(4 * n).fill(200);
window.timeFrames = async (draw, sync) => {
  const t = [];
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    await new Promise((r) => requestAnimationFrame(() => { draw(i); requestAnimationFrame(() => { sync(); r(); }); }));
    t.push(performance.now() - t0);
  }
  return t.slice(2);
};
"""

DECK_PAGE = (
    """<!doctype html><html><head><link rel="icon" href="data:,"></head><body style="margin:0">
<div id="c" style="width:1280px;height:800px;position:relative"></div>
<script src="deck.gl-9.4.0.min.js"></script><script>"""
    + COMMON
    + """
const layer = () => new deck.ScatterplotLayer({id: 's', data: {length: n, attributes: {
  getPosition: {value: pos, size: 2}, getFillColor: {value: col, size: 4, normalized: true}}},
  getRadius: 3, radiusUnits: 'pixels'});
const dk = new deck.Deck({parent: document.getElementById('c'), width: 1280, height: 800,
  views: new deck.OrthographicView({flipY: false}), viewState: {target: [0, 0, 0], zoom: 8.6}, layers: [layer()]});
window.run = () => timeFrames((i) => dk.setProps({viewState: {target: [i * 0.001, 0, 0], zoom: 8.6}}),
  () => { const gl = dk.device && dk.device.gl; if (gl) gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)); });
</script></body></html>"""
)

GL_PAGE = (
    """<!doctype html><html><head><link rel="icon" href="data:,"></head><body style="margin:0">
<canvas id="c" width="1280" height="800"></canvas><script>"""
    + COMMON
    + """
const gl = document.getElementById('c').getContext('webgl2', {antialias: false});
const sh = (t, src) => { const x = gl.createShader(t); gl.shaderSource(x, src); gl.compileShader(x); return x; };
const p = gl.createProgram();
gl.attachShader(p, sh(gl.VERTEX_SHADER, `#version 300 es
in vec2 pos; in vec4 color; uniform vec2 offset; out vec4 c;
void main() { gl_Position = vec4((pos + offset) * vec2(0.62, 1.0), 0.0, 1.0); gl_PointSize = 6.0; c = color; }`));
gl.attachShader(p, sh(gl.FRAGMENT_SHADER, `#version 300 es
precision mediump float; in vec4 c; out vec4 o;
void main() { float r = length(gl_PointCoord - 0.5) * 2.0; if (r > 1.0) discard;
  float a = c.a * (1.0 - smoothstep(0.82, 1.0, r)); o = vec4(c.rgb * a, a); }`));
gl.linkProgram(p); gl.useProgram(p);
const buf = (data, loc, size, type, norm) => { gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW); gl.enableVertexAttribArray(loc);
  gl.vertexAttribPointer(loc, size, type, norm, 0, 0); };
buf(pos, gl.getAttribLocation(p, 'pos'), 2, gl.FLOAT, false);
buf(col, gl.getAttribLocation(p, 'color'), 4, gl.UNSIGNED_BYTE, true);
gl.enable(gl.BLEND); gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
const offset = gl.getUniformLocation(p, 'offset');
window.run = () => timeFrames((i) => { gl.clearColor(0.08, 0.09, 0.11, 1); gl.clear(gl.COLOR_BUFFER_BIT);
  gl.uniform2f(offset, i * 0.001, 0); gl.drawArrays(gl.POINTS, 0, n); },
  () => gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4)));
</script></body></html>"""
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="1000,16000,100000")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="latentmap-engines-"))
    shutil.copy(VENDOR, root / VENDOR.name)
    (root / "deck.html").write_text(DECK_PAGE)
    (root / "gl.html").write_text(GL_PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            for n in [int(s) for s in args.sizes.split(",")]:
                row = {"n": n}
                for name in ("gl", "deck"):
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    page.goto(f"http://127.0.0.1:{server.server_port}/{name}.html?n={n}")
                    page.wait_for_timeout(1000)
                    row[name] = statistics.median(page.evaluate("window.run()"))
                    page.close()
                rows.append(row)
                print(row, flush=True)
        finally:
            browser.close()
            server.shutdown()
    print(f"\nrender engines: headless Chromium (software GL), 1280x800; {machine()}")
    print("| points | WebGL2 points ms | deck.gl ScatterplotLayer ms | deck.gl ÷ WebGL2 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['gl']:.0f} | {r['deck']:.0f} | {r['deck'] / r['gl']:.1f} |")


if __name__ == "__main__":
    main()
