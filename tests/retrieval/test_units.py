"""Unit tests of the parts of the retrieval service that need no models: proto, batching,
image decoding, modification planning and config."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from catalog.images import ImageLimits
from retrieval.batching import MicroBatcher
from retrieval.config import BatchingConfig, ConfigError, ServerConfig, load_config
from retrieval.service import (
    AttributeEdit,
    InvalidArgument,
    LoadedEditor,
    ToModel,
    decode_image,
    plan_modifications,
)

ROOT = Path(__file__).resolve().parents[2]


def test_generated_proto_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "proto.build", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_proto_check_detects_stale_code(tmp_path: Path) -> None:
    from proto import build

    src = ROOT / "proto" / "fashion" / "retrieval" / "v1" / "retrieval.proto"
    dst = tmp_path / "fashion" / "retrieval" / "v1"
    dst.mkdir(parents=True)
    (dst / "retrieval.proto").write_text(src.read_text())
    assert build.build(check=False, root=tmp_path)  # writes everything the first time
    assert build.build(check=True, root=tmp_path) == []
    (dst / "retrieval.proto").write_text(src.read_text().replace("int32 top_k = 3;", "int32 top_k = 3;\n  int32 x = 99;"))
    assert "fashion/retrieval/v1/retrieval_pb2.py" in build.build(check=True, root=tmp_path)


def _png(w: int, h: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), "red" if mode == "RGB" else None).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_image_accepts_common_images() -> None:
    im = decode_image(_png(20, 10), ImageLimits(max_pixels=1000))
    assert im.size == (20, 10) and im.mode == "RGB"
    # transparency becomes white, not black
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    assert decode_image(buf.getvalue(), ImageLimits(max_pixels=1000)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "needle"),
    [(b"", "empty"), (b"not an image at all", "not a decodable image"), (_png(100, 100)[:60], "could not be decoded")],
)
def test_decode_image_rejects_bad_bytes(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        decode_image(data, ImageLimits(max_pixels=10**6))


def test_decode_image_refuses_bombs_before_decoding() -> None:
    # a 5000x5000 PNG is a few KiB but 75 MB decoded: over our limit, under PIL's own
    bomb = _png(5000, 5000, "1")
    assert len(bomb) < 100_000
    with pytest.raises(InvalidArgument, match="5000x5000 = 25000000 pixels, over the limit of 16000000"):
        decode_image(bomb, ImageLimits(max_pixels=16_000_000))
    # a header claiming 100000x100000 (far over PIL's own limit too): refused from the header alone
    with pytest.raises(InvalidArgument, match="too large|over the limit"):
        decode_image(_png_header(100_000, 100_000), ImageLimits(max_pixels=16_000_000))


def test_decode_image_refuses_strips_by_longest_side_and_aspect_ratio() -> None:
    # 375 bytes, 100000 pixels: under any pixel limit, but padding it to a square meant 10^10 pixels
    strip = _png(100_000, 1, "1")
    assert len(strip) < 1000
    with pytest.raises(InvalidArgument, match="longest side, 100000 px, is over the limit of 8192 px"):
        decode_image(strip, ImageLimits(16_000_000, 8192, 10))
    with pytest.raises(InvalidArgument, match=r"aspect ratio 20:1 is over the limit of 10:1"):
        decode_image(_png(20, 400, "1"), ImageLimits(16_000_000, 8192, 10))
    assert decode_image(_png(40, 400), ImageLimits(16_000_000, 8192, 10)).size == (40, 400)


def _png_header(w: int, h: int) -> bytes:
    """Just the signature and IHDR of a PNG: what a bomb needs to announce its size."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


class _Caps:
    def __init__(self, caps: dict) -> None:
        self.caps = caps

    def capabilities(self) -> dict:
        return self.caps


EDITORS = [
    LoadedEditor.from_editor("star", _Caps({"model": "stargan", "to_model": False, "edit": {
        "groups": {"color": ["blue", "red"], "sleeve_length": ["short", "long"]}, "multi_group": True}})),
    LoadedEditor.from_editor("p2p", _Caps({"model": "pix2pix", "edit": None, "to_model": True})),
]


def test_plan_merges_consecutive_edits_on_one_generator() -> None:
    steps = plan_modifications(
        [AttributeEdit("color", "blue"), AttributeEdit("sleeve_length", "short"), ToModel(),
         AttributeEdit("color", "red")],
        EDITORS, max_mods=8,
    )
    assert [(s.editor, s.edits) for s in steps] == [
        (0, (("color", "blue"), ("sleeve_length", "short"))), (1, ()), (0, (("color", "red"),)),
    ]
    # the same group twice is two ordered calls, never a silent overwrite
    steps = plan_modifications([AttributeEdit("color", "blue"), AttributeEdit("color", "red")], EDITORS, 8)
    assert len(steps) == 2


@pytest.mark.parametrize(
    ("mods", "needle"),
    [
        ([AttributeEdit("colour", "blue")], "unknown attribute group 'colour'; editable groups: color, sleeve_length"),
        ([AttributeEdit("color", "teal")], "unknown value 'teal' for group 'color'; allowed: blue, red"),
        ([AttributeEdit("", "blue")], "empty group"),
        ([AttributeEdit("color", "blue")] * 9, "at most 8"),
    ],
)
def test_plan_rejects_what_no_generator_can_do(mods: list, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle.replace("(", r"\(")):
        plan_modifications(mods, EDITORS, max_mods=8)
    with pytest.raises(InvalidArgument, match="product_to_model is not available"):
        plan_modifications([ToModel()], EDITORS[:1], max_mods=8)


def _run(coro):
    return asyncio.run(coro)


def test_batcher_groups_concurrent_items_and_keeps_order() -> None:
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(list(items))
        time.sleep(0.01)
        return [i * 10 for i in items]

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, enabled=True, max_batch=4, max_wait_ms=50)
            out = await asyncio.gather(*(b.submit(i) for i in range(10)))
            await b.close()
            return out

    assert _run(main()) == [i * 10 for i in range(10)]
    assert max(len(c) for c in calls) == 4 and sum(len(c) for c in calls) == 10
    assert len(calls) == 3  # 4 + 4 + 2


def test_batcher_off_runs_each_item_alone() -> None:
    sizes: list[int] = []

    async def main() -> None:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(lambda xs: (sizes.append(len(xs)), xs)[1], ex, enabled=False, max_batch=8)
            assert await asyncio.gather(*(b.submit(i) for i in range(5))) == list(range(5))

    _run(main())
    assert sizes == [1] * 5


def test_batcher_lone_item_waits_at_most_max_wait() -> None:
    async def main() -> float:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(lambda xs: xs, ex, enabled=True, max_batch=8, max_wait_ms=30)
            t0 = time.perf_counter()
            await b.submit(1)
            dt = time.perf_counter() - t0
            await b.close()
            return dt

    assert _run(main()) < 5.0  # it returns (no hang); the 30 ms wait is a benchmark matter


def test_batcher_failure_reaches_every_caller_and_batcher_survives() -> None:
    def fn(items: list[int]) -> list[int]:
        if 3 in items:
            raise RuntimeError("boom")
        return items

    async def main() -> None:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, enabled=True, max_batch=8, max_wait_ms=20)
            res = await asyncio.gather(*(b.submit(i) for i in (1, 2, 3)), return_exceptions=True)
            assert all(isinstance(r, RuntimeError) for r in res)
            assert await b.submit(5) == 5
            await b.close()

    _run(main())


def test_batcher_drops_cancelled_items() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def fn(items: list[int]) -> list[int]:
        gate.wait(2)
        seen.extend(items)
        return items

    async def main() -> None:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, enabled=True, max_batch=2, max_wait_ms=0)
            first = asyncio.ensure_future(b.submit(1))  # occupies the model thread
            await asyncio.sleep(0.05)
            doomed = asyncio.ensure_future(b.submit(2))
            await asyncio.sleep(0.01)
            doomed.cancel()  # e.g. its deadline passed while queued
            gate.set()
            assert await first == 1
            assert await b.submit(3) == 3
            await b.close()

    _run(main())
    assert seen == [1, 3]


def test_config_file_and_errors(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('index_dir = "idx"\nport = 0\n[batching]\nenabled = true\nmax_batch = 4\n')
    (tmp_path / "idx").mkdir()
    toml.write_text(toml.read_text().replace('"idx"', f'"{tmp_path / "idx"}"'))
    cfg = load_config(toml).validate()
    assert cfg.index_dir == str(tmp_path / "idx") and cfg.batching.max_batch == 4 and cfg.batching.resolve("cpu") is True
    (tmp_path / "bad.toml").write_text('index_dri = "idx"\n')
    with pytest.raises(ConfigError, match="unknown key 'index_dri'"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="index_dir is required"):
        ServerConfig().validate()
    with pytest.raises(ConfigError, match="together"):
        ServerConfig(index_dir=str(tmp_path), tls_cert="a").validate()
    with pytest.raises(ConfigError, match="index_dir: no such folder /no/index"):
        ServerConfig(index_dir="/no/index").validate()
    with pytest.raises(ConfigError, match="no such checkpoint file /no/g.pt"):
        ServerConfig(index_dir=str(tmp_path), generators=["/no/g.pt"]).validate()


def test_serve_cli_refuses_bad_config_before_binding(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "retrieval", "serve", "--index", str(tmp_path / "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "index_dir: no such folder" in proc.stderr and "LISTENING" not in proc.stdout
    assert BatchingConfig().resolve("cpu") is True and BatchingConfig().resolve("cuda:0") is True
    assert BatchingConfig(enabled=False).resolve("cuda:0") is False
    assert BatchingConfig().resolve_max_batch("cpu") == 4 and BatchingConfig().resolve_max_batch("cuda") == 16


def test_contact_sheet_lays_out_labelled_tiles(tmp_path: Path) -> None:
    from retrieval.demo import contact_sheet

    tiles = [(Image.new("RGB", (64, 64), c), [f"#{i}", "label"]) for i, c in enumerate(["red", "blue", "green"] * 3)]
    out = contact_sheet(tiles, ["title", "timings"], tmp_path / "sheet.png", tile=100, per_row=4)
    sheet = Image.open(out)
    assert sheet.size == (4 * 108 + 8, 12 + 44 + 3 * (100 + 54 + 8) + 8)
    # small images are enlarged to the tile: the first tile's centre and its corner are red
    assert sheet.getpixel((8 + 50, 56 + 50)) == (255, 0, 0) and sheet.getpixel((8 + 2, 56 + 2)) == (255, 0, 0)
    assert not list(tmp_path.glob("*.tmp"))
