"""Photos as the thesis stored them: flattened on white, padded square, 256x256 JPEG."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from crawler.images import ImageConfig, ImageError, content_hash, normalize_image


def encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def test_transparent_background_becomes_white_not_black():
    im = Image.new("RGBA", (300, 400), (0, 0, 0, 0))  # transparent black
    im.paste((200, 0, 0, 255), (100, 150, 200, 250))  # opaque red square in the middle
    out = decode(normalize_image(encode(im)))
    assert out.format == "JPEG" and out.size == (256, 256) and out.mode == "RGB"
    assert min(out.getpixel((5, 5))) > 245  # corner: white
    r, g, b = out.getpixel((128, 128))
    assert r > 150 and g < 60 and b < 60  # the garment survives


def test_portrait_is_padded_not_cropped():
    im = Image.new("RGB", (100, 200), (0, 0, 255))  # all blue, tall
    out = decode(normalize_image(encode(im, "JPEG")))
    assert min(out.getpixel((3, 128))) > 240  # left margin: white padding
    assert out.getpixel((128, 3))[2] > 200  # top edge still blue: nothing cut off


def test_palette_transparency_and_grayscale_and_size_option():
    p = Image.new("P", (50, 50), 0)
    p.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    p.info["transparency"] = 0
    assert min(decode(normalize_image(encode(p))).getpixel((1, 1))) > 245
    gray = Image.new("L", (64, 64), 30)
    out = decode(normalize_image(encode(gray), ImageConfig(size=64)))
    assert out.size == (64, 64) and out.mode == "RGB"


def test_output_is_a_function_of_the_input():
    im = Image.effect_noise((120, 90), 40).convert("RGB")
    data = encode(im)
    assert content_hash(normalize_image(data)) == content_hash(normalize_image(data))


def test_bad_bytes_raise_a_clear_error():
    with pytest.raises(ImageError, match="not a readable image"):
        normalize_image(b"<html>Zu viele Anfragen</html>")
