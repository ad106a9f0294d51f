"""Thumbnail PNGs: our encoder (`imaging.sub_filtered_png`: Sub filter, run-length deflate) ÷ Pillow's PNG
encoder at its fastest useful setting (level 1, run-length deflate: its Paeth filter on every row), same
thumbnails, same process. Both write the same pixels; the table gives time and bytes per thumbnail.

Data: scikit-learn's sample photographs, the machine's own icon themes (/usr/share/icons: clip art with
alpha), and the smooth random pictures bench/encode.py ingests.

    python bench/thumbnails.py --size 128 --rounds 5
"""

from __future__ import annotations

import argparse
import glob
import io
import statistics
import time
import zlib

import numpy as np
from PIL import Image
from space_util import photo_like_png

from app import imaging


def pillow_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buf.getvalue()


def thumbnails(pictures, size: int) -> list[Image.Image]:
    out = []
    for im in pictures:
        scale = min(1.0, size / max(im.size))
        target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        out.append(im.resize(target, Image.Resampling.LANCZOS, reducing_gap=1.0) if target != im.size else im)
    return out


def collections(limit: int) -> dict[str, list[Image.Image]]:
    from sklearn.datasets import load_sample_images

    icons = []
    for path in sorted(glob.glob("/usr/share/icons/**/*.png", recursive=True)):
        if len(icons) >= limit:
            break
        try:
            picture = imaging.open_image(open(path, "rb").read(), 10**8, keep_alpha=True)
        except (OSError, imaging.ImageRejected):
            continue
        if max(picture.size) >= 48:
            icons.append(picture)
    photos = [Image.fromarray(a) for a in load_sample_images().images]
    smooth = [Image.open(io.BytesIO(photo_like_png(i, 256))).convert("RGB") for i in range(limit)]
    return {"photos (sklearn)": photos * (limit // len(photos)), "icons (/usr/share/icons)": icons, "smooth": smooth}


def main(args):
    print(f"thumbnails: size={args.size} rounds={args.rounds}")
    print("| pictures | n | Pillow ms | ours ms | ours ÷ Pillow time | Pillow KiB | ours KiB | bytes ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, pictures in collections(args.limit).items():
        if not pictures:
            continue
        thumbs = thumbnails(pictures, args.size)
        times: dict = {"pillow": [], "ours": []}
        sizes = {}
        for _ in range(args.rounds):
            for label, encode in (("pillow", pillow_png), ("ours", imaging.sub_filtered_png)):
                started = time.perf_counter()
                out = [encode(t) for t in thumbs]
                times[label].append(time.perf_counter() - started)
                sizes[label] = np.mean([len(b) for b in out]) / 1024
        ms = {k: 1000 * statistics.median(v) / len(thumbs) for k, v in times.items()}
        print(
            f"| {name} | {len(thumbs)} | {ms['pillow']:.3f} | {ms['ours']:.3f} | {ms['ours'] / ms['pillow']:.2f} | "
            f"{sizes['pillow']:.1f} | {sizes['ours']:.1f} | {sizes['ours'] / sizes['pillow']:.2f} |"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--limit", type=int, default=300, help="pictures per collection")
    main(p.parse_args())
