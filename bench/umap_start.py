"""UMAP's start-up in a fresh process: the first fit of a `latentmap build` or a server start.

umap-learn compiles its numba functions afresh in every process; app/maps/projection.py `_umap` turns numba's
on-disk cache on for them (umap's __pycache__, or NUMBA_CACHE_DIR, as for any user). Each row is a new Python
process fitting the same 500 vectors (import umap and the fit, timed together):

- baseline: the cache left off (umap-learn as it is): every process compiles;
- ours: the cache on; the first such process on a machine compiles and writes it, later ones load it.
Also checks that every run gives the same layout, bit for bit.

    python bench/umap_start.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import hashlib, json, time
from pathlib import Path
import numpy as np
from app.maps import projection
from app.settings import Settings
if BASELINE:
    import umap
    projection._umap = lambda: umap
rng = np.random.default_rng(0)
centres = rng.normal(size=(8, 64))
v = (centres[rng.integers(0, 8, 500)] + 0.4 * rng.normal(size=(500, 64))).astype(np.float32)
settings = Settings(data_dir=Path("unused"))
t = time.perf_counter()
first = projection.fit(v, 20, 1, settings=settings)
first_s = time.perf_counter() - t
t = time.perf_counter()
projection.fit(v, 20, 1, settings=settings)
print(json.dumps({"first": first_s, "again": time.perf_counter() - t,
                  "xy": hashlib.sha256(first.xy.tobytes()).hexdigest()}))
"""


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}

    def run(baseline: bool) -> dict:
        code = f"BASELINE = {baseline}\n{CHILD}"
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        return json.loads(out.stdout.strip().splitlines()[-1])

    runs = [("baseline: cache off", run(True))] + [(f"ours, process {k}", run(False)) for k in (1, 2, 3)]
    print("| process | import umap + first fit | same fit again, same process | layout |\n|---|---|---|---|")
    for label, r in runs:
        print(f"| {label} | {r['first']:.2f} s | {r['again']:.2f} s | {r['xy'][:12]} |")
    warm = min(r["first"] for _, r in runs[2:])
    print(f"first fit in a new process, ours (cache loaded) / baseline: {warm / runs[0][1]['first']:.2f}")
    print(f"layouts identical: {len({r['xy'] for _, r in runs}) == 1}")


if __name__ == "__main__":
    main()
