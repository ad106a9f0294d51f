"""Safe image decoding, thumbnails and PNG encoding.

Images are identified by content (magic bytes), opened with an explicit format allow-list, checked for
pixel count before decoding (decompression bombs), reduced to their first frame, stripped of metadata and
re-encoded before anything is stored.
"""

from __future__ import annotations

import io
import warnings
import zlib

from PIL import Image, ImageOps

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")


class ImageRejected(ValueError):
    """The upload is not an image we accept; the message says why."""


def image_pixels(data: bytes, max_pixels: int) -> int:
    """The pixel count an upload would decode to, from its header alone (nothing is decoded); ImageRejected
    for files that are not an allowed format or are larger than `max_pixels`."""
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
                width, height = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"image has more than {max_pixels:,} pixels (the limit)") from None
    except Exception as e:  # PIL raises many types for corrupt/truncated/unknown files
        raise ImageRejected(f"not a readable PNG, JPEG, WebP or GIF image ({type(e).__name__})") from None
    if width * height > max_pixels:
        raise ImageRejected(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    return width * height


def open_image(data: bytes, max_pixels: int, keep_alpha: bool = False, draft: int | None = None) -> Image.Image:
    """RGB, or with `keep_alpha` RGBA where the image has transparency (alpha channel or a palette's
    transparent colour); without it transparent pixels are composited onto white (see `on_white`).
    `draft`: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as its longer side stays >= this many
    pixels (libjpeg's DCT scaling: far less work; the caller reduces it to that size anyway)."""
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if im.width * im.height > max_pixels:
                raise ImageRejected(f"image is {im.width}x{im.height} pixels; the limit is {max_pixels:,} pixels")
            im.seek(0)  # GIF/WebP animations: first frame
            if draft and im.format == "JPEG" and max(im.size) > 2 * draft:
                longest = max(im.size)  # draft() keeps both requested sides: ask for the aspect's own sizes
                im.draft(None, tuple(max(1, -(-side * draft // longest)) for side in im.size))
            im.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (past ~89 million pixels) fires before our check can read the size: our message.
        raise ImageRejected(f"image has more than {max_pixels:,} pixels (the limit)") from None
    except Exception as e:  # PIL raises many types for corrupt/truncated/unknown files
        raise ImageRejected(f"not a readable PNG, JPEG, WebP or GIF image ({type(e).__name__})") from None
    # No full-size copies beyond the decoded image itself: a 40 MP upload is 120 MB per copy.
    if im.getexif().get(0x0112, 1) != 1:  # EXIF orientation: turn the pixels upright
        im = ImageOps.exif_transpose(im)
    if has_alpha(im):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        return rgba if keep_alpha else on_white(rgba)
    return im if im.mode == "RGB" else im.convert("RGB")


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def on_white(im: Image.Image) -> Image.Image:
    """RGB with transparent pixels composited onto white: what CLIP's training pictures look like. Dropping
    the alpha instead shows whatever colour the transparent pixels hold (mostly black), and black line art
    on a transparent background vanishes."""
    if not has_alpha(im):
        return im if im.mode == "RGB" else im.convert("RGB")  # convert("RGB") of an RGB image copies it
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_png(im: Image.Image, compress_type: int = zlib.Z_DEFAULT_STRATEGY) -> bytes:
    buf = io.BytesIO()
    # No metadata is copied: a fresh PNG from pixels only. Light compression: 3x faster than the default level,
    # which dominated ingest time (bench/encode.py).
    im.save(buf, format="PNG", compress_level=1, compress_type=compress_type)
    return buf.getvalue()


def thumbnail_png(im: Image.Image, size: int) -> bytes:
    if max(im.size) * 2 <= size:  # tiny images (digits are 16 px): enlarge crisply rather than blur
        factor = size // max(im.size)
        thumb = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    else:  # resized straight from the original (Image.thumbnail would need a full-size copy first)
        scale = min(1.0, size / max(im.size))
        target = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        # reducing_gap 1: whole factors by box reduce() first (cheap), the rest by LANCZOS.
        thumb = im.resize(target, Image.Resampling.LANCZOS, reducing_gap=1.0) if target != im.size else im
    # Run-length deflate after PNG's row filters: ~1.4x faster than plain level 1 and no bigger, on photos
    # (runs of filtered zeros) and on flat clip art (long runs) alike.
    return to_png(thumb, zlib.Z_RLE)
