"""Product-photo conventions shared by every package: RGB, on white, square, and size limits.

Shop photos are garments on a white background (the thesis's 256x256 convention). Padding
with white rather than cropping keeps the whole garment, and the whole person on portrait
model photos; transparency is composited over white for the same reason.

Every image any package decodes goes through :class:`ImageLimits` first, checked from the
header before a pixel is decoded. A pixel-count limit alone is not enough: a 375-byte PNG of
100000x1 pixels passes it, and padding that to a square would need 100000² pixels. So the
longest side and the aspect ratio are limited too, and :func:`square_on_white` scales an
image down *before* padding it, so its memory never exceeds the input's plus the output's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)
HIGH_DEPTH_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# EXIF orientation -> the transposition that shows the photo upright (as ImageOps.exif_transpose)
EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                  5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                  8: Image.Transpose.ROTATE_90}
WORKING_SIDE = 1024  # longest side a decoded query is kept at: 4x the encoder's input, above every GAN's


class ImageSizeError(ValueError):
    """An image whose declared size is outside :class:`ImageLimits`; the message names the limit."""


@dataclass(frozen=True)
class ImageLimits:
    """How large an image may be before any work is done on its pixels.

    ``max_aspect`` is longest side over shortest side: product and model photos are between
    1:1 and about 1:3, a banner 1:5; 1:10 and beyond is a strip, not a photo. The defaults
    suit offline work (crawling shop zoom photos, loading catalogs); the server sets its own,
    smaller ones (``retrieval.config.ServerConfig``).
    """

    max_pixels: int = 50_000_000
    max_side: int = 16_384
    max_aspect: float = 10.0

    def problem(self, width: int, height: int) -> str | None:
        """Why a ``width`` x ``height`` image is refused ("... over the limit of ..."), or None."""
        if width <= 0 or height <= 0:
            return f"{width}x{height}: it has no pixels"
        if width * height > self.max_pixels:
            return f"{width}x{height} = {width * height} pixels, over the limit of {self.max_pixels} pixels"
        long, short = max(width, height), min(width, height)
        if long > self.max_side:
            return f"{width}x{height}: the longest side, {long} px, is over the limit of {self.max_side} px"
        if long / short > self.max_aspect:
            return (f"{width}x{height}: the aspect ratio {long / short:.4g}:1 is over the limit of "
                    f"{self.max_aspect:g}:1")
        return None

    def check(self, width: int, height: int, what: str = "image") -> None:
        """Raise :class:`ImageSizeError` ("{what} is {problem}") when the size is refused."""
        problem = self.problem(width, height)
        if problem is not None:
            raise ImageSizeError(f"{what} is {problem}")


DEFAULT_LIMITS = ImageLimits()


def to_8bit(im: Image.Image) -> Image.Image:
    """High-bit-depth greyscale (16-bit PNG/TIFF ``I;16``, 32-bit ``I``, float ``F``) as 8-bit ``L``.

    Pillow's own ``convert("RGB")`` clips these to 255, which turns a 16-bit grey photo all
    white. 16-bit data keeps its top 8 bits; ``I`` data in 0..65535 is treated as 16-bit; float
    data in 0..1 is scaled by 255; anything else is stretched from its own minimum to maximum.
    """
    if im.mode not in HIGH_DEPTH_GREY:
        return im
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        return Image.fromarray((arr >> 8).astype(np.uint8), "L")
    arr = arr.astype(np.float32)  # float32, not 64: a 16-megapixel image stays at 64 MB per copy
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode == "F" and lo >= 0 and hi <= 1:
        arr *= 255.0
    elif lo >= 0 and hi <= 255:
        pass
    elif im.mode == "I" and lo >= 0 and hi <= 65535:
        arr /= 257.0
    elif hi > lo:
        arr -= lo
        arr *= 255.0 / (hi - lo)
    else:
        arr[:] = 0
    np.rint(arr, out=arr)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "L")


def flatten_on_white(im: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """RGB image with any transparency composited over ``fill`` and high bit depths scaled to 8 bits."""
    im = to_8bit(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, fill + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def pad_to_square(
    im: Image.Image, fill: tuple[int, int, int] = WHITE, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """``im`` centred on a square canvas of ``fill``; unchanged when already square.

    The canvas is as large as the longest side squared: prefer :func:`square_on_white`,
    which scales first. ``limits`` are checked before the canvas is made.
    """
    w, h = im.size
    limits.check(w, h)
    if w == h:
        return im
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(im, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_on_white(
    im: Image.Image,
    size: int,
    resample: int = Image.BICUBIC,
    fill: tuple[int, int, int] = WHITE,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Image.Image:
    """RGB, flattened on white, scaled so its longest side is ``size``, centred on a white square.

    Scaling comes before padding, so memory is bounded by the input and a ``size`` x ``size``
    canvas, whatever the aspect ratio. ``limits`` are checked first (:class:`ImageSizeError`).
    """
    w, h = im.size
    limits.check(w, h)
    im = flatten_on_white(im, fill)
    if w == h:
        return im if w == size else im.resize((size, size), resample)
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(im, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def shrink(im: Image.Image, max_side: int, resample: int = Image.BICUBIC) -> Image.Image:
    """``im`` scaled so its longest side is ``max_side``, never more elongated than it was.

    The short side is rounded up, so a 10:1 image stays within a 10:1 limit (rounding to the
    nearest pixel can make 8190x819 into 1024x102, which is over it).
    """
    w, h = im.size
    scale = max_side / max(w, h)
    if scale >= 1:
        return im
    size = (max_side, max(1, math.ceil(h * scale - 1e-9))) if w >= h else (max(1, math.ceil(w * scale - 1e-9)), max_side)
    return im.resize(size, resample, reducing_gap=2.0)


def open_bounded(fp: str | BinaryIO, limits: ImageLimits = DEFAULT_LIMITS, max_side: int = WORKING_SIDE) -> Image.Image:
    """Decode an image for the models: checked, scaled down early, upright, 8-bit RGB on white.

    The size is checked from the header first (:class:`ImageSizeError`), JPEGs are decoded at
    a reduced scale straight away (``draft``), and anything still longer than ``max_side`` is
    shrunk before the colour conversions, so a 16-megapixel query costs one decoded buffer,
    not the five full-size copies (EXIF rotation, RGBA compositing, RGB) it would otherwise.
    Every model works far below ``max_side`` (the encoder at 224 px, the GANs at 64-256 px).
    Decoding errors are Pillow's (``OSError``, ``ValueError``, ...).
    """
    im = Image.open(fp)
    limits.check(*im.size)
    orientation = im.getexif().get(0x0112, 1)  # read now: a resized copy may not carry it (TIFF)
    if im.format == "JPEG" and max(im.size) > max_side:
        im.draft(im.mode, (max_side, max_side))  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
    im.load()
    if max(im.size) > max_side:
        im = to_8bit(im)
        if im.mode in ("1", "P"):  # palette and bilevel images would be resized by nearest neighbour
            im = im.convert("RGBA" if "transparency" in im.info else ("L" if im.mode == "1" else "RGB"))
        im = shrink(im, max_side)
    if orientation in EXIF_TRANSPOSE:
        im = im.transpose(EXIF_TRANSPOSE[orientation])
    return flatten_on_white(im)
