"""Projection fit: ours (`app.maps.projection.fit`) ÷ plain `umap.UMAP(metric="cosine").fit_transform`, same
vectors, same process, numba already warm for both (the cold first call is reported on its own row).

Quality: trustworthiness (k=10, cosine ranks in the original space; same formula as sklearn's).

    python bench/projection.py --sizes 2000                       # ~2 min on 2 cores
    python bench/projection.py --sizes 2000,10000 --sample 5000   # adds a fit-a-sample-and-place row
    python bench/projection.py --data random                      # unstructured vectors
    python bench/projection.py --space digits                     # the digits space's image vectors
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import synthetic  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)


def vectors_for(args, n: int) -> np.ndarray:
    if args.space != "synthetic":
        from space_util import load_space

        space = load_space(args.space)
        from app.maps.demo import digit_pil_images

        images, _ = digit_pil_images()
        vecs = np.concatenate([space.encode_images(images[i : i + 64]).vectors for i in range(0, len(images), 64)])
        vecs = space.map_vectors(vecs, ["image"] * len(vecs))
        return vecs[:n]
    if args.data == "random":
        return synthetic.random_unit(n, args.dim, seed=1)
    return synthetic.clustered(n, args.dim, clusters=args.clusters, seed=1)[0]


def main(args):
    import umap
    from space_util import machine

    from app.maps import demo, projection
    from app.settings import Settings

    t = time.perf_counter()
    demo.warm_umap()
    cold = time.perf_counter() - t
    rows, dims = [], set()
    for n in [int(s) for s in args.sizes.split(",")]:
        x = vectors_for(args, n)
        n = len(x)
        dims.add(x.shape[1])
        base = Settings(umap_backend="umap-learn")
        variants = [
            ("plain umap-learn (baseline)", lambda: umap.UMAP(metric="cosine").fit_transform(x)),
            (
                "previous fit (umap-learn, seeded)",
                lambda: umap.UMAP(n_neighbors=15, metric="cosine", random_state=42, init="spectral").fit_transform(x),
            ),
            (
                "ours: exact kNN graph, 500 epochs",
                lambda: projection.fit(x, 20, 1, settings=base.with_(umap_epochs=500)).xy,
            ),
            (
                "ours: exact kNN graph, 200 epochs",
                lambda: projection.fit(x, 20, 1, settings=base.with_(umap_epochs=200)).xy,
            ),
        ]
        if args.sample and args.sample < n:
            variants.append(
                (
                    f"ours, fit {args.sample} + place rest",
                    lambda: projection.fit(x, 20, 1, settings=base.with_(umap_fit_sample=args.sample)).xy,
                )
            )
        # Warm every code path first (numba compiles per path: umap-learn switches to NN-descent and other
        # kernels at 4,096 items), so no row pays compilation. Cold cost is the header's warm-up figure.
        warm = x[: min(n, 4200)] if n >= 4096 else x[:200]
        umap.UMAP(metric="cosine", n_epochs=5).fit_transform(warm)
        umap.UMAP(metric="cosine", n_epochs=5, random_state=42).fit_transform(warm)
        projection.fit(warm, 20, 1, settings=base.with_(umap_epochs=5))
        results = {}
        for name, fn in variants:
            t = time.perf_counter()
            y = fn()
            dt = time.perf_counter() - t
            results[name] = (dt, synthetic.trustworthiness(x, y, 10))
        base_t, base_q = results[variants[0][0]]
        default = "500" if n < 4096 else "200"
        results = {(k + " ← default" if k.endswith(f"{default} epochs") else k): v for k, v in results.items()}
        for name, (dt, q) in results.items():
            rows.append((n, name, dt, dt / base_t, q, q - base_q))

    data = args.space if args.space != "synthetic" else args.data
    print(
        f"projection: data={data} dim={','.join(map(str, sorted(dims)))} ({machine()}); "
        f"numba warm-up (first UMAP call in a process) {cold:.1f} s"
    )
    print("| N | fit | seconds | ÷ plain | trustworthiness k=10 | Δ vs plain |\n|---|---|---|---|---|---|")
    for n, name, dt, ratio, q, dq in rows:
        print(f"| {n:,} | {name} | {dt:.1f} | {ratio:.2f} | {q:.4f} | {dq:+.4f} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", default="2000")
    p.add_argument("--data", choices=["clustered", "random"], default="clustered")
    p.add_argument("--space", default="synthetic", help="'synthetic' or a space name (digits: its image vectors)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--sample", type=int, default=0, help="also fit this many and place the rest")
    main(p.parse_args())
