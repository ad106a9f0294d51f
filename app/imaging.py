"""Safe image decoding, thumbnails and PNG encoding.

Images are identified by content (magic bytes), opened with an explicit format allow-list, checked for
pixel count before decoding (decompression bombs), reduced to their first frame, stripped of metadata and
re-encoded before anything is stored.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pyspng
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
            plain = _decode_plain_png(data) if im.format == "PNG" else None
            if plain is not None:
                im = plain
            else:
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


# PNG chunks after which a file is left to Pillow: a transparent colour (tRNS: Pillow's "transparency"), an
# animation (acTL: Pillow gives its first frame), orientation (eXIf, and text chunks whose keyword says EXIF or
# XMP: Pillow's getexif reads both).
_PNG_LEFT_TO_PILLOW = (b"tRNS", b"acTL", b"eXIf")
_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
_PNG_MODES = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}  # IHDR colour type -> mode, at 8 bits a sample


def _decode_plain_png(data: bytes) -> Image.Image | None:
    """An 8-bit grey/RGB PNG, with or without alpha and without the chunks above, decoded by libspng (pyspng):
    the same pixels as Pillow's decoder (PNG is lossless) in 0.69x its time (libspng's unfiltering is
    vectorised; a 256-px photo-like PNG: 0.99 vs 1.44 ms). Ingest is mostly PNG decoding, in both our pipeline
    and the loop a user would write. None for any other PNG, and for any file libspng refuses (Pillow then
    decodes it, or rejects it, as before): callers get what Pillow would have given them. One leniency: libspng
    does not compare the zlib stream's closing checksum, so a file whose pixels all decode but whose last
    four bytes of image data are damaged opens where Pillow refused it."""
    if len(data) < 33 or data[12:16] != b"IHDR" or data[24] != 8 or data[25] not in _PNG_MODES:
        return None
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind in _PNG_LEFT_TO_PILLOW:
            return None
        if kind in _PNG_TEXT:
            keyword = data[at + 8 : at + 8 + min(length, 80)].split(b"\0", 1)[0].lower()
            if b"exif" in keyword or b"xmp" in keyword:
                return None
        if kind == b"IEND":
            break
        at += 12 + length
    mode = "RGBA" if data[25] in (4, 6) else "RGB"  # what open_image makes of L and LA anyway
    try:
        return Image.fromarray(pyspng.load(data, format=mode), mode)
    except Exception:  # noqa: BLE001 - a CRC or stream error libspng checks more strictly than Pillow
        return None


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


# The map is dark (static/js/core/constants.js MAP_BACKGROUND): a picture with transparency whose visible pixels
# are on average darker than this (relative luminance) contrasts less than 3:1 with black, WCAG's minimum for
# graphics; black line art and dark icons would vanish there, so they are drawn on a light plate instead.
DARK_INK_LUMINANCE = 0.1
PLATE_RGB = (236, 239, 243)


def for_dark_map(im: Image.Image) -> Image.Image:
    """The picture as the map draws it: on a light plate of its own size when it has transparency and its ink
    is too dark to read on the dark map (DARK_INK_LUMINANCE); otherwise unchanged (alpha kept: colourful
    pictures sit on the map itself). RGBA or the picture's own mode."""
    if not has_alpha(im):
        return im
    rgba = im.convert("RGBA")
    pixels = np.asarray(rgba)
    alpha = pixels[..., 3].astype(np.float32)
    if alpha.min() == 255 or alpha.max() == 0:
        return im
    luminance = _LUMINANCE[0][pixels[..., 0]] + _LUMINANCE[1][pixels[..., 1]] + _LUMINANCE[2][pixels[..., 2]]
    if float((luminance * alpha).sum() / alpha.sum()) >= DARK_INK_LUMINANCE:
        return im
    return Image.alpha_composite(Image.new("RGBA", im.size, (*PLATE_RGB, 255)), rgba)


def _luminance_tables() -> np.ndarray:
    """(3, 256): each 8-bit sRGB channel value's share of relative luminance (linear light x Rec. 709 weight)."""
    srgb = np.arange(256) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return (np.array([[0.2126], [0.7152], [0.0722]]) * linear).astype(np.float32)


_LUMINANCE = _luminance_tables()


def to_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    # No metadata is copied: a fresh PNG from pixels only. Light compression: 3x faster than the default level,
    # which dominated ingest time (bench/encode.py).
    im.save(buf, format="PNG", compress_level=1)
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
    return sub_filtered_png(thumb)


_PNG_COLOUR_TYPES = {"L": 0, "LA": 4, "RGB": 2, "RGBA": 6}


def sub_filtered_png(im: Image.Image) -> bytes:
    """A PNG of the pixels alone, every row through PNG's Sub filter (each byte minus the same channel of the
    pixel to its left) and run-length deflate. Pillow's encoder spends more on its Paeth filter than on the
    compression: this is ~2x faster for ~6% more bytes on photos and clip art (bench/thumbnails.py).
    Modes other than 8-bit L, LA, RGB and RGBA are converted first (RGBA where they have transparency)."""
    if im.mode not in _PNG_COLOUR_TYPES:
        im = im.convert("RGBA" if has_alpha(im) else "RGB")
    pixels = np.asarray(im)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 1  # the filter type of each row: Sub
    flat = pixels.reshape(height, width * channels)
    rows[:, 1 : 1 + channels] = flat[:, :channels]
    np.subtract(flat[:, channels:], flat[:, :-channels], out=rows[:, 1 + channels :])  # wraps mod 256, as PNG's
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[im.mode], 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", deflate.compress(rows) + deflate.flush()),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
