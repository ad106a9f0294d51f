"""k nearest neighbours in the original space: exact numpy search ÷ the approximate index (app/maps/index.py),
p50 per query and recall@10 against exact, on clustered synthetic unit vectors.

    python bench/neighbors.py --sizes 100000            # ~1 min
    python bench/neighbors.py --sizes 100000,1000000    # 1M × 512 float32 = 2 GB of vectors; a few minutes
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import synthetic
from space_util import machine, pct


def main(args):
    from app.maps.index import VectorIndex
    from app.settings import Settings

    settings = Settings()
    print_rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        x, _ = synthetic.clustered(n + args.queries, args.dim, clusters=args.clusters, seed=3)
        queries, x = x[n:].copy(), x[:n]
        t = time.perf_counter()
        exact = VectorIndex(x, min_items=n + 1)
        t_exact_build = time.perf_counter() - t
        t = time.perf_counter()
        approx = VectorIndex(x, min_items=1, nprobe=args.nprobe or settings.neighbor_index_nprobe)
        t_build = time.perf_counter() - t
        exact_t, approx_t, recall = [], [], []
        for q in queries:
            t = time.perf_counter()
            truth, _ = exact.nearest(q, 10)
            exact_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            got, _ = approx.nearest(q, 10)
            approx_t.append(time.perf_counter() - t)
            recall.append(len(set(truth.tolist()) & set(got.tolist())) / 10)
        print_rows.append((n, "exact (numpy matvec + argpartition)", t_exact_build, exact_t, 1.0))
        print_rows.append((n, approx.kind, t_build, approx_t, float(np.mean(recall))))
        del x, exact, approx
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"neighbours: clustered synthetic, dim={args.dim}, {args.queries} held-out queries, k=10, "
        f"faiss threads={_faiss_threads()} ({machine()}); bench peak RSS {peak:.0f} MB"
    )
    print("| N | search | build s | p50 ms/query | p95 ms/query | recall@10 |\n|---|---|---|---|---|---|")
    for n, name, build, ts, rec in print_rows:
        print(f"| {n:,} | {name} | {build:.1f} | {1000 * pct(ts, 0.5):.2f} | {1000 * pct(ts, 0.95):.2f} | {rec:.3f} |")


def _faiss_threads():
    try:
        import faiss

        return faiss.omp_get_max_threads()
    except ImportError:
        return "n/a (faiss not installed)"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="100000")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=100)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--nprobe", type=int, default=0, help="0 = Settings.neighbor_index_nprobe")
    main(p.parse_args())
