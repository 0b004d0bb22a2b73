"""Product and model photos as the thesis stored them: 256x256 JPEG on white.

Shops serve PNGs with transparent backgrounds, portrait crops and CMYK JPEGs; the GANs and the
encoder want one square RGB size. Transparent pixels become white (not black, which is what a
plain ``convert("RGB")`` does), the picture is scaled and padded to a square with white so
nothing is cut off (:func:`catalog.images.square_on_white`, which refuses absurd sizes and
aspect ratios from the header before decoding). The output bytes are a pure function of the
input bytes, which makes a resumed crawl write byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from catalog.images import (  # noqa: F401 - WHITE, flatten_on_white, pad_to_square: part of this module's API
    DEFAULT_LIMITS,
    WHITE,
    ImageLimits,
    ImageSizeError,
    flatten_on_white,
    pad_to_square,
    square_on_white,
)


class ImageError(ValueError):
    """Downloaded bytes that are not a usable image."""


@dataclass(frozen=True)
class ImageConfig:
    size: int = 256
    quality: int = 92
    limits: ImageLimits = DEFAULT_LIMITS  # shop zoom photos are large; strips and bombs are not photos


def normalize_image(data: bytes, config: ImageConfig = ImageConfig()) -> bytes:
    """Bytes of the shop's photo -> bytes of a ``size`` x ``size`` JPEG on white."""
    try:
        with Image.open(io.BytesIO(data)) as src:
            config.limits.check(*src.size)
            src.load()
            im = ImageOps.exif_transpose(src)
        im = square_on_white(im, config.size, Image.Resampling.LANCZOS, limits=config.limits)
    except ImageSizeError as exc:
        raise ImageError(f"refused ({len(data)} bytes): {exc}") from exc
    except Exception as exc:  # PIL raises many types for bad data
        raise ImageError(f"not a readable image ({len(data)} bytes): {exc}") from exc
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=config.quality, optimize=True)
    return out.getvalue()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
