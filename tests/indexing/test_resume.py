"""A build killed with SIGKILL mid-way resumes from its shards and ends equal to an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from catalog import load_catalog
from indexing.build import BuildConfig, build
from indexing.encoder import Encoder, EncoderConfig
from indexing.store import IndexStore, IndexStoreError

REPO = Path(__file__).resolve().parents[2]


def test_killed_build_resumes_and_equals_uninterrupted(small_catalog, tmp_path):
    # 224 px keeps the forward pass slow enough (~1 s per shard of 8) to kill the build mid-way.
    encoder = Encoder.builtin(EncoderConfig(image_size=224), device="cpu")
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "indexing", "build", "--catalog", str(small_catalog), "--out", str(out),
            "--image-size", "224", "--batch-size", "4", "--shard-size", "4", "--workers", "0", "--device", "cpu"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    shards = out / ".work" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("shard-*.npz"))) < 2:
        assert proc.poll() is None, f"build ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in shards.glob("shard-*.npz"))
    assert 2 <= len(done_before) < 9, done_before  # 36 items / 4 per shard = 9 shards
    assert not (out / "manifest.json").exists()
    with pytest.raises(IndexStoreError, match="did not finish"):
        IndexStore.open(out)

    mtimes = {n: (shards / n).stat().st_mtime_ns for n in done_before}
    cfg = BuildConfig(batch_size=4, shard_size=4, num_workers=0, progress=False, keep_shards=True)
    resumed = build(load_catalog(small_catalog), out, encoder, cfg)
    # finished shards were reused, not recomputed
    assert all((shards / n).stat().st_mtime_ns == mtimes[n] for n in done_before)
    reference = build(load_catalog(small_catalog), tmp_path / "clean", encoder,
                      BuildConfig(batch_size=4, shard_size=4, num_workers=0, progress=False))
    assert resumed.ids() == reference.ids()
    a = np.stack([resumed.reconstruct(i) for i in resumed.ids()])
    b = np.stack([reference.reconstruct(i) for i in reference.ids()])
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert resumed.manifest["count"] == reference.manifest["count"] == 36
    assert IndexStore.open(out, encoder).count == 36


def test_kept_shards_are_reused_only_for_unchanged_photos(tmp_path, catalog_factory, small_encoder):
    """A photo replaced under the same id and file name is embedded again on a rebuild with kept shards."""
    from PIL import Image

    cat_dir = catalog_factory(tmp_path / "cat", 12, seed=21, size=40)
    out = tmp_path / "idx"
    cfg = BuildConfig(keep_shards=True, num_workers=0, batch_size=4, shard_size=4, progress=False)
    first = build(load_catalog(cat_dir), out, small_encoder, cfg)
    shards = out / ".work" / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.npz")}
    item = load_catalog(cat_dir).items[5]  # in shard 1 (items 4-7)
    old_vector = first.reconstruct(item.id)
    photo = cat_dir / item.img_path
    photo.write_bytes((cat_dir / "images" / "0000.jpg").read_bytes())  # the shop changed the photo

    again = build(load_catalog(cat_dir), out, small_encoder, cfg)
    with Image.open(photo) as im:
        want = small_encoder.embed_images([im])[0]
    np.testing.assert_allclose(again.reconstruct(item.id), want, atol=1e-5)
    assert not np.allclose(again.reconstruct(item.id), old_vector, atol=1e-3)
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard-*.npz")}
    assert [n for n in before if after[n] != before[n]] == ["shard-00001.npz"]  # only that shard was redone
