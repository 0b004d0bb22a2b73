"""An adversarial set of query images, generated on the spot (nothing downloaded or committed).

Every extreme aspect ratio around the limits, every bit depth and mode Pillow reads, palettes,
animations, and corrupt or lying headers. Each image says what the service must answer:
``"ok"`` (it searches), ``"invalid"`` (INVALID_ARGUMENT) or ``"either"`` (corrupt data that
Pillow may or may not be able to read partially); nothing may ever get another status.

The limits the expectations assume are those of :data:`LIMITS` (the test server's config).
Used by ``tests/retrieval/test_reliability.py`` and ``benchmarks/bench_image_fuzz.py``.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

LIMITS = {"max_image_pixels": 4_000_000, "max_image_side": 8192, "max_aspect_ratio": 10.0}


@dataclass(frozen=True)
class FuzzImage:
    name: str
    data: bytes
    expect: str  # ok | invalid | either


def save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def gradient(w: int, h: int) -> np.ndarray:
    """A float ramp in 0..1 with a diagonal, so a decoder that loses tones or channels shows it."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x / max(w - 1, 1)) * 0.7 + (y / max(h - 1, 1)) * 0.3).astype(np.float64)


def rgb(w: int, h: int) -> Image.Image:
    g = gradient(w, h)
    return Image.fromarray((np.stack([g, 1 - g, g * g], axis=-1) * 255).astype(np.uint8), "RGB")


def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def raw_png(w: int, h: int, bit_depth: int, color_type: int, rows: bytes | None = None,
            extra: tuple[bytes, ...] = (), bad_ihdr_crc: bool = False) -> bytes:
    """A PNG written by hand: the bit depths and colour types Pillow cannot write itself."""
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr, 0 if bad_ihdr_crc else None)
    out += b"".join(extra)
    if rows is not None:
        out += _chunk(b"IDAT", zlib.compress(rows, 9))
    return out + _chunk(b"IEND", b"")


def _rows(arr: np.ndarray) -> bytes:
    """Big-endian sample rows, each behind filter byte 0."""
    return b"".join(b"\x00" + row.tobytes() for row in arr)


def fuzz_set() -> list[FuzzImage]:
    out: list[FuzzImage] = []

    def add(name: str, data: bytes, expect: str) -> None:
        out.append(FuzzImage(name, data, expect))

    # --- aspect ratio, longest side, pixel count (limits: 4 MP, 8192 px, 10:1) ----------------------
    add("1x1", save(rgb(1, 1), "PNG"), "ok")
    add("2x1", save(rgb(2, 1), "PNG"), "ok")
    add("10x1 (exactly 10:1)", save(rgb(10, 1), "PNG"), "ok")
    add("1x10 (exactly 1:10)", save(rgb(1, 10), "PNG"), "ok")
    add("11x1", save(rgb(11, 1), "PNG"), "invalid")
    add("1x11", save(rgb(1, 11), "PNG"), "invalid")
    add("1001x100 (10.01:1)", save(rgb(1001, 100), "PNG"), "invalid")
    add("100000x1 bilevel (the 375-byte killer)", save(Image.new("1", (100_000, 1)), "PNG"), "invalid")
    add("1x100000 bilevel", save(Image.new("1", (1, 100_000)), "PNG"), "invalid")
    add("8193x1", save(Image.new("L", (8193, 1), 128), "PNG"), "invalid")
    add("65535x65535 header only", raw_png(65535, 65535, 8, 2), "invalid")
    add("2000x2000 RGBA (at the pixel limit)", save(Image.new("RGBA", (2000, 2000), (200, 10, 10, 128)), "PNG"), "ok")
    add("6320x632 (10:1, at the pixel limit)", save(Image.new("RGB", (6320, 632), (10, 10, 200)), "PNG"), "ok")
    add("632x6320 16-bit grey (1:10, at the pixel limit)",
        save(Image.frombytes("I;16", (632, 6320), np.full((6320, 632), 40000, "<u2").tobytes()), "PNG"), "ok")
    add("6325x632 (10.008:1)", save(Image.new("RGB", (6325, 632)), "PNG"), "invalid")
    add("2001x2000 (over the pixel limit)", save(Image.new("L", (2001, 2000)), "PNG"), "invalid")
    add("zero width IHDR", raw_png(0, 10, 8, 0, b""), "invalid")

    # --- modes and bit depths ----------------------------------------------------------------------
    w, h = 64, 48
    g = gradient(w, h)
    base = rgb(w, h)
    add("mode 1", save(base.convert("1"), "PNG"), "ok")
    add("mode L", save(base.convert("L"), "PNG"), "ok")
    add("mode LA", save(base.convert("LA"), "PNG"), "ok")
    add("mode P 256 colours", save(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"), "ok")
    p = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("mode P with transparency", save(p, "PNG", transparency=0), "ok")
    add("mode P 2 colours GIF", save(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=2), "GIF"), "ok")
    add("mode RGBA transparent", save(Image.new("RGBA", (w, h), (0, 0, 0, 0)), "PNG"), "ok")
    add("mode CMYK JPEG", save(base.convert("CMYK"), "JPEG"), "ok")
    add("mode CMYK TIFF", save(base.convert("CMYK"), "TIFF"), "ok")
    add("mode YCbCr JPEG", save(base.convert("YCbCr"), "JPEG"), "ok")
    add("mode LAB TIFF", save(base.convert("LAB"), "TIFF"), "either")
    add("JPEG progressive", save(base, "JPEG", progressive=True, quality=80), "ok")
    add("JPEG grey", save(base.convert("L"), "JPEG"), "ok")
    grey16 = (g * 65535).astype("<u2")
    add("16-bit grey PNG (I;16)", save(Image.frombytes("I;16", (w, h), grey16.tobytes()), "PNG"), "ok")
    add("16-bit grey TIFF (I;16B)", save(Image.frombytes("I;16B", (w, h), grey16.astype(">u2").tobytes()), "TIFF"),
        "ok")
    add("32-bit int TIFF (I)", save(Image.fromarray((g * 65535).astype(np.int32), "I"), "TIFF"), "ok")
    add("32-bit float TIFF (F)", save(Image.fromarray(g.astype(np.float32), "F"), "TIFF"), "ok")
    add("32-bit float TIFF (F, out of range)", save(Image.fromarray((g * 1e6 - 5e5).astype(np.float32), "F"), "TIFF"),
        "ok")
    rgb48 = (np.stack([g, 1 - g, g], axis=-1) * 65535).astype(">u2").reshape(h, w * 3)
    add("48-bit RGB PNG", raw_png(w, h, 16, 2, _rows(rgb48)), "ok")
    la16 = (np.stack([g, np.ones_like(g)], axis=-1) * 65535).astype(">u2").reshape(h, w * 2)
    add("16-bit grey+alpha PNG", raw_png(w, h, 16, 4, _rows(la16)), "ok")
    rgba64 = (np.stack([g, g, 1 - g, np.full_like(g, 0.5)], axis=-1) * 65535).astype(">u2").reshape(h, w * 4)
    add("64-bit RGBA PNG", raw_png(w, h, 16, 6, _rows(rgba64)), "ok")
    two_bit = np.packbits(np.unpackbits((g * 3).astype(np.uint8)[..., None], axis=-1)[..., 6:].reshape(h, -1), axis=-1)
    add("2-bit grey PNG", raw_png(w, h, 2, 0, _rows(two_bit)), "ok")
    plte = _chunk(b"PLTE", bytes(range(48)))
    four_bit = ((g * 15).astype(np.uint8)[:, 0::2] << 4) | (g * 15).astype(np.uint8)[:, 1::2]
    add("4-bit palette PNG", raw_png(w, h, 4, 3, _rows(four_bit), (plte,)), "ok")
    add("palette PNG without PLTE", raw_png(w, h, 4, 3, _rows(four_bit)), "either")
    add("BMP 1-bit", save(base.convert("1"), "BMP"), "ok")
    add("BMP 32-bit", save(base.convert("RGBA"), "BMP"), "ok")
    add("TGA", save(base, "TGA"), "ok")
    add("PPM", save(base, "PPM"), "ok")
    add("ICO", save(base, "ICO"), "ok")
    add("WebP", save(base, "WEBP"), "ok")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: 400x40 becomes 40x400
    add("JPEG EXIF-rotated 10:1 strip", save(rgb(400, 40), "JPEG", exif=exif.tobytes()), "ok")

    # --- animations and multi-page -----------------------------------------------------------------
    frames = [rgb(w, h).rotate(i * 7) for i in range(30)]
    add("GIF 30 frames", save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0), "ok")
    add("APNG 30 frames", save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=40), "ok")
    add("WebP animated", save(frames[0], "WEBP", save_all=True, append_images=frames[1:8], duration=40), "ok")
    add("TIFF 5 pages", save(frames[0], "TIFF", save_all=True, append_images=frames[1:5]), "ok")
    many = [Image.new("P", (100, 100), i % 256) for i in range(500)]
    add("GIF 500 frames", save(many[0], "GIF", save_all=True, append_images=many[1:]), "ok")

    # --- corrupt data and lying headers ------------------------------------------------------------
    good_png = save(base, "PNG")
    good_jpeg = save(base, "JPEG")
    add("empty", b"", "invalid")
    add("random bytes", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "invalid")
    add("HTML", b"<html><body>Zu viele Anfragen</body></html>", "invalid")
    add("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "invalid")
    add("PNG signature then garbage", b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, "invalid")
    add("PNG truncated in IDAT", good_png[: len(good_png) // 2], "invalid")
    add("PNG with a bad IHDR CRC", raw_png(w, h, 8, 0, _rows((g * 255).astype(np.uint8)), bad_ihdr_crc=True),
        "invalid")
    add("PNG zlib bomb (10x10 declared, 50 MB of zeros)",
        raw_png(10, 10, 8, 0, b"\x00" * 50_000_000), "either")
    text_bomb = _chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"A" * 100_000_000, 9))
    add("PNG with a 100 MB zTXt text bomb", raw_png(w, h, 8, 0, _rows((g * 255).astype(np.uint8)), (text_bomb,)),
        "either")
    add("JPEG truncated", good_jpeg[: len(good_jpeg) // 2], "either")
    add("JPEG SOF declaring 65500x65500", _jpeg_with_size(good_jpeg, 65500, 65500), "invalid")
    add("JPEG SOF declaring 60000x10", _jpeg_with_size(good_jpeg, 60000, 10), "invalid")
    gif = bytearray(save(base.convert("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen 65535x65535, frame still 64x48
    add("GIF logical screen 65535x65535", bytes(gif), "invalid")
    bmp = bytearray(save(base, "BMP"))
    bmp[18:26] = struct.pack("<ii", 100_000, 100_000)
    add("BMP header 100000x100000", bytes(bmp), "invalid")
    bmp[18:26] = struct.pack("<ii", 64, -48)  # top-down: legal, negative height
    add("BMP negative height (top-down)", bytes(bmp), "ok")
    add("TIFF declaring 100000x100000", _tiff_with_size(save(base.convert("L"), "TIFF"), 100_000, 100_000), "invalid")
    return out


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0/SOF2) claiming another size."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data) - 9:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise ValueError("no SOF marker")


def _tiff_with_size(tiff: bytes, width: int, height: int) -> bytes:
    """The TIFF with its ImageWidth/ImageLength tags changed (first IFD, little-endian)."""
    data = bytearray(tiff)
    assert data[:2] == b"II"
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    for k in range(count):
        at = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[at : at + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT cannot hold 100000: make it a LONG
                data[at + 2 : at + 4] = struct.pack("<H", 4)
            data[at + 8 : at + 12] = struct.pack("<I", value)
    return bytes(data)
