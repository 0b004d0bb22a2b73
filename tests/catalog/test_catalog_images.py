"""The shared photo convention: transparency on white, padded (not cropped) to a square."""

from __future__ import annotations

from PIL import Image

from catalog.images import square_on_white


def test_transparent_portrait_becomes_a_white_square_with_the_garment_centred():
    im = Image.new("RGBA", (40, 80), (0, 0, 0, 0))
    im.paste((200, 0, 0, 255), (10, 10, 30, 70))  # an opaque red garment on transparency
    out = square_on_white(im, 80)
    assert out.mode == "RGB" and out.size == (80, 80)
    assert out.getpixel((5, 40)) == (255, 255, 255)    # padding, left
    assert out.getpixel((25, 5)) == (255, 255, 255)    # transparent pixel, not black
    assert out.getpixel((40, 40)) == (200, 0, 0)        # garment kept whole, centred
    assert out.getpixel((31, 12)) == (200, 0, 0) and out.getpixel((48, 68)) == (200, 0, 0)


def test_square_input_of_the_right_size_is_left_alone():
    im = Image.new("RGB", (32, 32), (10, 20, 30))
    assert square_on_white(im, 32).tobytes() == im.tobytes()
    assert square_on_white(im, 16).size == (16, 16)
