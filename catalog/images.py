"""Product-photo conventions shared by every package: RGB, on white, square.

Shop photos are garments on a white background (the thesis's 256x256 convention). Padding
with white rather than cropping keeps the whole garment, and the whole person on portrait
model photos; transparency is composited over white for the same reason.
"""

from __future__ import annotations

from PIL import Image

WHITE = (255, 255, 255)


def flatten_on_white(im: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """RGB image with any transparency composited over ``fill``."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, fill + (255,))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def pad_to_square(im: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """``im`` centred on a square canvas of ``fill``; unchanged when already square."""
    w, h = im.size
    if w == h:
        return im
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(im, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_on_white(
    im: Image.Image, size: int, resample: int = Image.BICUBIC, fill: tuple[int, int, int] = WHITE
) -> Image.Image:
    """RGB, flattened and padded on white, resized to ``size`` x ``size`` (if not already)."""
    im = pad_to_square(flatten_on_white(im, fill), fill)
    return im if im.size == (size, size) else im.resize((size, size), resample)
