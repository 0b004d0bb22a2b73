"""Hostile images and paths: size limits from the header, scaling before padding, bit depths,
bad rows for refused sizes, and catalog files read without leaving the catalog folder."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

from catalog import Item, Schema, UnsafePathError, load_catalog, open_inside, read_inside, write_catalog
from catalog import format as fmt
from catalog.images import ImageLimits, ImageSizeError, flatten_on_white, square_on_white, to_8bit


@pytest.mark.parametrize(
    ("size", "needle"),
    [
        ((100_000, 1), "longest side, 100000 px, is over the limit of 16384 px"),
        ((1, 100_000), "longest side, 100000 px, is over the limit of 16384 px"),
        ((1100, 100), "aspect ratio 11:1 is over the limit of 10:1"),
        ((8000, 8000), "8000x8000 = 64000000 pixels, over the limit of 50000000 pixels"),
        ((0, 5), "has no pixels"),
    ],
)
def test_limits_name_the_limit(size, needle):
    assert needle in ImageLimits().problem(*size)
    with pytest.raises(ImageSizeError, match="image is"):
        ImageLimits().check(*size)


@pytest.mark.parametrize("size", [(1, 1), (1000, 100), (100, 1000), (16384, 1639), (7000, 7000)])
def test_limits_accept_photos(size):
    assert ImageLimits().problem(*size) is None


def test_square_on_white_refuses_a_strip_before_touching_its_pixels():
    strip = Image.new("1", (100_000, 1))  # 12.5 KB of pixels; padded first it would be 30 GB
    with pytest.raises(ImageSizeError, match="100000x1"):
        square_on_white(strip, 64)


def test_square_on_white_scales_before_padding():
    """A wide strip (allowed by looser limits) comes out as a centred band, never via a big canvas."""
    im = Image.new("RGB", (4000, 200), (200, 0, 0))
    out = square_on_white(im, 100, limits=ImageLimits(max_aspect=100))
    assert out.size == (100, 100) and out.mode == "RGB"
    arr = np.asarray(out)
    # 200/4000 * 100 = 5 rows of red, centred at (100 - 5) // 2 = 47; scaled before padding, the
    # band's edges are not blended with the white padding
    assert (arr[47:52] == (200, 0, 0)).all()
    assert (arr[:47] == 255).all() and (arr[52:] == 255).all()


def test_sixteen_bit_grey_keeps_its_tones():
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    im = Image.frombytes("I;16", (64, 64), ramp.astype("<u2").tobytes())
    assert (np.asarray(im.convert("RGB"))[32:] == 255).all()  # Pillow's own convert clips: white
    rgb = np.asarray(flatten_on_white(im))
    assert rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], (ramp >> 8).astype(np.uint8))
    big_endian = Image.frombytes("I;16B", (64, 64), ramp.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.asarray(to_8bit(big_endian)), (ramp >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", np.array([[0, 65535]], np.int32), [0, 255]),  # 16-bit data in a 32-bit image
        ("I", np.array([[0, 200]], np.int32), [0, 200]),  # 8-bit data in a 32-bit image
        ("I", np.array([[-5, 5]], np.int32), [0, 255]),  # anything else: stretched
        ("F", np.array([[0.0, 1.0]], np.float32), [0, 255]),
        ("F", np.array([[0.0, 128.0]], np.float32), [0, 128]),
    ],
)
def test_high_depth_modes_become_8_bit(mode, values, expected):
    out = to_8bit(Image.fromarray(values, mode))
    assert out.mode == "L" and list(np.asarray(out)[0]) == expected


def test_catalog_reports_refused_sizes_as_bad_rows(tmp_path):
    (tmp_path / "images").mkdir()
    photos = {"ok.png": Image.new("RGB", (40, 60), "red"), "strip.png": Image.new("1", (100_000, 1)),
              "wide.png": Image.new("L", (2200, 200)), "model_strip.png": Image.new("1", (30_000, 2))}
    for name, im in photos.items():
        im.save(tmp_path / "images" / name)
    items = [Item(id="p0", img_path="images/ok.png"), Item(id="p1", img_path="images/strip.png"),
             Item(id="p2", img_path="images/wide.png"),
             Item(id="p3", img_path="images/ok.png", model_img_paths=["images/model_strip.png"])]
    write_catalog(tmp_path, items, Schema.default())
    cat = load_catalog(tmp_path)
    assert [it.id for it in cat.items] == ["p0"]
    issues = {i.id: i for i in cat.issues}
    assert issues["p1"].reason == fmt.BAD_IMAGE_SIZE and issues["p1"].field == "img_path" and issues["p1"].line == 3
    assert "line 3 (id p1), field 'img_path'" in str(issues["p1"]) and "longest side, 100000 px" in str(issues["p1"])
    assert "aspect ratio 11:1" in issues["p2"].detail
    assert issues["p3"].reason == fmt.BAD_IMAGE_SIZE and issues["p3"].field == "model_img_paths"
    # a caller with other needs passes its own limits
    loose = ImageLimits(max_side=200_000, max_aspect=200_000)
    assert [it.id for it in load_catalog(tmp_path, image_limits=loose).items] == ["p0", "p1", "p2", "p3"]


# --- reading catalog files ------------------------------------------------------------------------
@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "catalog"
    (root / "images" / "sub").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"photo")
    (root / "images" / "sub" / "b.jpg").write_bytes(b"other")
    (tmp_path / "secret.txt").write_text("root:x:0:0")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "c.jpg").write_bytes(b"outside")
    return root


def test_open_inside_reads_files_and_links_that_stay_inside(folder):
    assert read_inside(folder, "images/a.jpg") == b"photo"
    os.symlink("sub/b.jpg", folder / "images" / "link.jpg")
    os.symlink(folder / "images" / "sub", folder / "images" / "dirlink")
    assert read_inside(folder, "images/link.jpg") == b"other"
    assert read_inside(folder, "images/dirlink/b.jpg") == b"other"


@pytest.mark.parametrize("make", ["file link", "folder link", "dotdot", "absolute", "fifo", "folder", "missing"])
def test_open_inside_refuses_what_leads_outside_or_is_no_file(folder, make):
    tmp = folder.parent
    rel = "images/evil.jpg"
    if make == "file link":
        os.symlink(tmp / "secret.txt", folder / rel)  # placed after indexing: checked at read time
    elif make == "folder link":
        os.symlink(tmp / "outside", folder / "images" / "out")
        rel = "images/out/c.jpg"
    elif make == "dotdot":
        rel = "../secret.txt"
    elif make == "absolute":
        rel = str(tmp / "secret.txt")
    elif make == "fifo":
        os.mkfifo(folder / rel)  # no writer: an open that followed it would block for ever
    elif make == "folder":
        rel = "images/sub"
    error = FileNotFoundError if make == "missing" else UnsafePathError
    done = threading.Event()

    def attempt():
        with pytest.raises(error):
            read_inside(folder, rel)
        done.set()

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(30)
    assert done.is_set(), f"{make}: the read blocked or did not raise {error.__name__}"


def test_open_inside_refuses_a_link_swapped_in_after_resolving(folder, monkeypatch):
    """The resolved path is opened component by component without following links."""
    from pathlib import Path

    real_resolve = Path.resolve

    def resolve_then_swap(self, strict=False):
        out = real_resolve(self, strict=strict)
        if self.name == "a.jpg":
            (folder / "images" / "a.jpg").unlink()
            os.symlink(folder.parent / "secret.txt", folder / "images" / "a.jpg")
        return out

    monkeypatch.setattr(Path, "resolve", resolve_then_swap)
    with pytest.raises(UnsafePathError, match="changed while being opened"), open_inside(folder, "images/a.jpg"):
        pass


def _encoded(im: Image.Image, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "fmt", "size"),
    [
        (lambda: Image.new("RGB", (3000, 2000), (200, 30, 30)), "JPEG", (1024, 683)),  # decoded at 1/2 scale, then shrunk
        (lambda: Image.new("RGBA", (2000, 3000), (200, 30, 30, 255)), "PNG", (683, 1024)),
        (lambda: Image.frombytes("I;16", (2048, 1024), np.full((1024, 2048), 51400, "<u2").tobytes()), "PNG",
         (1024, 512)),
        (lambda: Image.new("P", (2048, 2048), 3), "GIF", (1024, 1024)),
        (lambda: Image.new("RGB", (300, 200), (200, 30, 30)), "PNG", (300, 200)),  # small: untouched
    ],
)
def test_open_bounded_shrinks_before_converting(make, fmt, size):
    import io

    from catalog.images import open_bounded

    out = open_bounded(io.BytesIO(_encoded(make(), fmt)))
    assert out.size == size and out.mode == "RGB"
    if fmt == "PNG" and size == (1024, 512):
        assert out.getpixel((10, 10)) == (200, 200, 200)  # 51400 >> 8: 16-bit grey keeps its tone


def test_open_bounded_turns_exif_rotated_photos_upright_and_checks_the_header():
    import io

    from catalog.images import open_bounded

    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = _encoded(Image.new("RGB", (2400, 1200), (10, 10, 200)), "JPEG", exif=exif.tobytes())
    assert open_bounded(io.BytesIO(data)).size == (512, 1024)
    with pytest.raises(ImageSizeError, match="100000x1"):
        open_bounded(io.BytesIO(_encoded(Image.new("1", (100_000, 1)), "PNG")))


@pytest.mark.parametrize("size", [(8190, 819), (819, 8190), (6320, 632), (1025, 1), (3001, 300)])
def test_shrinking_never_makes_an_image_more_elongated(size):
    from catalog.images import shrink

    out = shrink(Image.new("L", size), 1024)
    assert max(out.size) == 1024
    assert max(out.size) / min(out.size) <= max(size) / min(size) + 1e-9
    square_on_white(out, 64, limits=ImageLimits(max_aspect=max(size) / min(size)))  # still within its limit


@pytest.mark.parametrize("orientation", range(1, 9))
def test_open_bounded_applies_every_exif_orientation_like_pillow(orientation):
    import io

    from PIL import ImageOps

    from catalog.images import open_bounded

    base = Image.new("RGB", (1600, 1200), (255, 255, 255))
    base.paste((200, 0, 0), (0, 0, 400, 300))  # a red corner marks which way is up
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encoded(base, "JPEG", exif=exif.tobytes(), quality=95)
    want = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    got = open_bounded(io.BytesIO(data))
    assert got.size == tuple(round(x * 1024 / 1600) for x in want.size)
    small = np.asarray(want.resize(got.size)).astype(int)
    assert np.abs(np.asarray(got).astype(int) - small).mean() < 8  # same picture, same way up
