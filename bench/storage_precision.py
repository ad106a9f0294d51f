"""What storing a map's vectors as float16 instead of float32 costs (app/maps/store.py, `array_dtype`).

    python bench/storage_precision.py [--space digits] [--clicks 40]

The same items (the Digits demo map: 1,797 images + 30 prompts) go into two maps, one stored float32, one
float16, with the same positions. Reported: neighbour recall@10 (GET /neighbors at each item and at random
points, float16 against float32), and the decoded pixels at random clicks (max and mean absolute difference,
share of pictures that differ at all, out of 255). Latents (spaces that have them) are always float32.
"""

from __future__ import annotations

import argparse
import io
import tempfile

import numpy as np
from PIL import Image
from space_util import load_space, make_service


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="digits")
    p.add_argument("--clicks", type=int, default=40)
    args = p.parse_args()
    from app.maps.demo import demo_prompts, digit_pil_images
    from app.maps.explore import Explorer
    from app.maps.store import Store

    space = load_space(args.space)
    services = {}
    images, labels = digit_pil_images()
    for dtype in ("float32", "float16"):
        svc = make_service(space, tempfile.mkdtemp(prefix=f"latentmap-precision-{dtype}-"))
        svc.store = Store(svc.settings.data_dir, array_dtype=dtype)
        services[dtype] = svc
    items = services["float32"].image_items(images, [f"digit {int(d)} #{i}" for i, d in enumerate(labels)])
    items += services["float32"].prompt_items(demo_prompts())
    ids = {}
    for dtype, svc in services.items():
        record, _ = svc.create_map("precision")
        svc.add_items(record.id, items)
        ids[dtype] = record.id
    xy = services["float32"].store.get_arrays(ids["float32"]).xy
    # the same positions in both maps, so clicks blend the same items
    services["float16"].store.set_positions(
        ids["float16"], services["float16"].store.get_arrays(ids["float16"]).ids, xy, {"method": "umap", "revision": 1}
    )
    services["float32"].store.set_positions(
        ids["float32"], services["float32"].store.get_arrays(ids["float32"]).ids, xy, {"method": "umap", "revision": 1}
    )
    explorers = {d: Explorer(s) for d, s in services.items()}
    rng = np.random.default_rng(0)
    lo, hi = xy.min(0), xy.max(0)
    points = rng.uniform(lo, hi, size=(args.clicks, 2))
    recall_items, recall_points = [], []
    n = len(xy)
    for i in rng.choice(n, size=min(n, 300), replace=False):
        got = {}
        for d, ex in explorers.items():
            arrays = services[d].store.get_arrays(ids[d])
            got[d] = {x.index for x in ex.neighbors(ids[d], 10, item_id=arrays.ids[i])}
        recall_items.append(len(got["float16"] & got["float32"]) / 10)
    diffs = []
    for k, (x, y) in enumerate(points):
        got, pix = {}, {}
        for d, ex in explorers.items():
            got[d] = {nb.index for nb in ex.neighbors(ids[d], 10, x=float(x), y=float(y))}
            png = services[d].decode_at(ids[d], float(x), float(y), seed=k).png
            pix[d] = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
        recall_points.append(len(got["float16"] & got["float32"]) / 10)
        diffs.append(np.abs(pix["float16"] - pix["float32"]))
    d = np.stack(diffs)
    print(f"storage precision: space {args.space}, {n} items, {args.clicks} clicks")
    print(
        f"neighbour recall@10 float16 vs float32: items {np.mean(recall_items):.4f}, points {np.mean(recall_points):.4f}"
    )
    print(
        f"decoded pixels float16 vs float32 (0-255): max |diff| {int(d.max())}, mean |diff| {d.mean():.4f}, "
        f"pictures that differ {np.mean([x.max() > 0 for x in diffs]):.2f}"
    )
    for svc in services.values():
        svc.close()


if __name__ == "__main__":
    main()
