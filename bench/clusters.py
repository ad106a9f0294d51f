"""Clusters of a large map: seconds for `cluster_positions` (what GET /api/maps/{id}/clusters runs) on synthetic
2D positions, and the size of the answer's per-point `assignments`. A scale check, not a test.

    python bench/clusters.py --points 1000000
    python bench/clusters.py --points 50000 --full   # also HDBSCAN on every point: its time, and the agreement
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from app.maps.explore import cluster_positions
from app.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--blobs", type=int, default=12)
    parser.add_argument("--full", action="store_true", help="also fit every point (minutes beyond ~100k)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.uniform(-20, 20, size=(args.blobs, 2))
    truth = rng.integers(0, args.blobs, size=args.points)
    xy = (centres[truth] + rng.normal(scale=1.0, size=(args.points, 2))).astype(np.float32)
    sample = Settings().cluster_fit_sample
    start = time.perf_counter()
    labels = cluster_positions(xy, sample)
    seconds = time.perf_counter() - start
    body = len(json.dumps(labels.tolist(), separators=(",", ":")))
    print(
        f"{args.points:,} points, {args.blobs} blobs, fit sample {sample:,}: {seconds:.1f} s, "
        f"{len(set(labels.tolist()) - {-1})} clusters, noise {np.mean(labels == -1):.1%}, "
        f"assignments JSON {body / 2**20:.1f} MiB, load {os.getloadavg()[0]:.2f}"
    )
    if args.full:
        from sklearn.metrics import adjusted_rand_score

        start = time.perf_counter()
        full = cluster_positions(xy, args.points)
        print(
            f"every point: {time.perf_counter() - start:.1f} s, {len(set(full.tolist()) - {-1})} clusters, "
            f"adjusted Rand sampled vs every point {adjusted_rand_score(full, labels):.3f}, "
            f"load {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
