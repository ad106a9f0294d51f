"""Where a `latentmap build --table --vector` spends its time and memory: the build run in this process with
its main steps wrapped, printing per step the wall time, the calls and the peak RSS while inside it (sampled every
20 ms). The table is the first N rows of bench/scale.py's 1M table (made by it first: `--work-dir`).

    python bench/build_phases.py 1000000 --work-dir /tmp/scale [--profile out.prof]
"""

import functools
import os
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
N = int(sys.argv[1])
PROFILE = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else None
os.environ["HF_HUB_OFFLINE"] = "1"
work = Path(sys.argv[sys.argv.index("--work-dir") + 1])
table = work / f"vectors-{N}.parquet"
if not table.exists():
    import pyarrow.parquet as pq

    t = pq.read_table(work / "vectors-1000000.parquet")
    pq.write_table(t.slice(0, N), table)

T0 = time.perf_counter()
from scale import build_argv  # noqa: E402

from app import cli  # noqa: E402
from app.ingest import local, sources  # noqa: E402
from app.maps import explore, index, projection, service, store  # noqa: E402

TIMES: dict[str, list] = {}
PEAK: dict[str, float] = {}
STACK: list[str] = []


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sampler():
    while True:
        r = rss_mb()
        for label in list(STACK):
            if r > PEAK.get(label, 0):
                PEAK[label] = r
        time.sleep(0.02)


threading.Thread(target=sampler, daemon=True).start()


def wrap(owner, name, label=None):
    fn = getattr(owner, name)
    label = label or f"{getattr(owner, '__name__', owner)}.{name}"

    @functools.wraps(fn)
    def inner(*a, **k):
        t = time.perf_counter()
        STACK.append(label)
        PEAK[label] = max(PEAK.get(label, 0), rss_mb())
        try:
            return fn(*a, **k)
        finally:
            STACK.remove(label)
            e = TIMES.setdefault(label, [0.0, 0])
            e[0] += time.perf_counter() - t
            e[1] += 1

    setattr(owner, name, inner)


for owner, name in [
    (sources, "table_source"),
    (sources, "_read_table"),
    (local, "_add_here"),
    (local, "store_batch"),
    (service.MapService, "refit"),
    (service.MapService, "item_map_vectors"),
    (service.MapService, "_insert"),
    (service.MapService, "_map_vectors"),
    (projection, "fit"),
    (projection, "_umap_raw"),
    (projection, "_place_blocked"),
    (projection, "place"),
    (store.Store, "add_items"),
    (store.Store, "set_positions"),
    (store.Store, "get_arrays"),
    (store.Store, "head_arrays"),
    (explore.Explorer, "prepare_index"),
    (index.VectorIndex, "__init__"),
    (index.VectorIndex, "save"),
]:
    wrap(owner, name)

import umap.spectral as us  # noqa: E402
import umap.umap_ as uu  # noqa: E402

wrap(us, "spectral_layout")
uu.spectral_layout = us.spectral_layout
wrap(uu, "simplicial_set_embedding")
wrap(uu, "fuzzy_simplicial_set")
wrap(uu, "optimize_layout_euclidean")

data = work / f"phases-{N}-{int(time.time())}"
argv = build_argv(data, table, f"prof {N}")
T1 = time.perf_counter()
if PROFILE:
    import cProfile

    cProfile.run("rc = cli.main(argv)", PROFILE)
else:
    rc = cli.main(argv)
T2 = time.perf_counter()
print(f"imports {T1 - T0:.1f} s, build {T2 - T1:.1f} s, rc {rc}, load {os.getloadavg()}", file=sys.stderr)
print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", file=sys.stderr)
for k, (s, c) in sorted(TIMES.items(), key=lambda kv: -kv[1][0]):
    print(f"  {s:8.2f} s  {c:6d}x  peak {PEAK.get(k, 0):6.0f} MB  {k}", file=sys.stderr)
