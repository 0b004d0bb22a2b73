"""Several writers on one index folder: every change survives, a stale store refuses to commit,
and a killed writer never leaves the folder locked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from catalog import load_catalog
from indexing.faiss_index import choose_spec, train_index
from indexing.lock import IndexLockTimeout, folder_lock
from indexing.store import ConcurrentUpdateError, IndexStore, new_manifest, new_metadata_db

REPO = Path(__file__).resolve().parents[2]
DIM = 16

# One writer process: waits for the start signal, then commits one change per item, each in
# its own open_for_update (what `python -m indexing add/remove` and the server do).
WRITER = r"""
import dataclasses, json, sys, time
from pathlib import Path
import numpy as np
from catalog import load_catalog
from indexing.store import IndexStore

folder, role, go, out, args = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), json.loads(sys.argv[5])
while not go.exists():
    time.sleep(0.002)
generations = []
if role == "remove":
    for item_id in args["ids"]:
        with IndexStore.open_for_update(folder) as store:
            store.remove([item_id])
            generations.append(store.manifest["generation"])
else:
    cat = load_catalog(args["catalog"], check_images=False)
    vectors = np.load(args["vectors"])
    for i, item in enumerate(cat.items):
        with IndexStore.open_for_update(folder) as store:
            store.add_vectors(dataclasses.replace(cat, items=[item]), vectors[i : i + 1])
            store.save()
            generations.append(store.manifest["generation"])
out.write_text(json.dumps(generations))
"""


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_index(folder: Path, catalog_dir: Path) -> tuple[IndexStore, np.ndarray]:
    """A flat index of the catalog with random vectors (no encoder: the writers need none)."""
    cat = load_catalog(catalog_dir)
    x = unit_vectors(len(cat.items), 0)
    spec = choose_spec(len(x), DIM, "flat")
    enc = SimpleNamespace(encoder_id="synthetic@0", checksum="0" * 64, source="test", dim=DIM,
                          config=SimpleNamespace(to_dict=dict))
    store = IndexStore(folder, new_manifest(enc, spec, cat), train_index(spec, x), new_metadata_db())
    store.add_vectors(cat, x)
    store.save()
    return store, x


@pytest.fixture()
def two_catalogs(tmp_path, catalog_factory) -> tuple[Path, Path]:
    return (catalog_factory(tmp_path / "a", 16, seed=11, size=40),
            catalog_factory(tmp_path / "b", 10, seed=12, size=40, prefix="b"))


def test_two_writer_processes_lose_no_update(tmp_path, two_catalogs):
    cat_a, cat_b = two_catalogs
    folder = tmp_path / "idx"
    synthetic_index(folder, cat_a)
    removed = [it.id for it in load_catalog(cat_a).items[:10]]
    added = unit_vectors(10, 1)
    np.save(tmp_path / "b.npy", added)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = {
        role: subprocess.Popen([sys.executable, "-c", WRITER, str(folder), role, str(go), str(tmp_path / f"{role}.json"),
                                json.dumps(args)], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        for role, args in (("remove", {"ids": removed}),
                           ("add", {"catalog": str(cat_b), "vectors": str(tmp_path / "b.npy")}))
    }
    go.touch()  # both start together: ten commits each, interleaved
    for role, proc in procs.items():
        assert proc.wait(timeout=120) == 0, f"{role} writer: {proc.stderr.read()[-2000:]}"
    gens = {role: json.loads((tmp_path / f"{role}.json").read_text()) for role in procs}
    every = gens["remove"] + gens["add"]
    assert sorted(every) == list(range(2, 22)), gens  # twenty commits, twenty distinct generations
    store = IndexStore.open(folder)
    b_items = load_catalog(cat_b).items
    assert set(store.ids()) == ({it.id for it in load_catalog(cat_a).items} - set(removed)) | {it.id for it in b_items}
    assert store.manifest["generation"] == 21 and store.count == 16 and store.index.ntotal == 16
    for it, vec in zip(b_items, added, strict=True):
        np.testing.assert_allclose(store.reconstruct(it.id), vec, atol=1e-6)


def test_a_store_opened_before_another_commit_refuses_to_commit(tmp_path, two_catalogs):
    cat_a, _ = two_catalogs
    folder = tmp_path / "idx"
    synthetic_index(folder, cat_a)
    ids = IndexStore.open(folder).ids()
    first, second = IndexStore.open(folder), IndexStore.open(folder)
    first.remove([ids[0]])  # commits generation 2
    with pytest.raises(ConcurrentUpdateError, match="committed generation 2 after this store was opened at generation 1"):
        second.remove([ids[1]])
    after = IndexStore.open(folder)
    assert after.manifest["generation"] == 2 and ids[0] not in after and ids[1] in after
    with IndexStore.open_for_update(folder) as store:  # the way to do it: read, change, commit under the lock
        store.remove([ids[1]])
    assert ids[1] not in IndexStore.open(folder)


def test_lock_wait_times_out_naming_the_holder_and_cli_says_so(tmp_path, two_catalogs, capsys):
    from indexing.__main__ import main

    cat_a, _ = two_catalogs
    folder = tmp_path / "idx"
    synthetic_index(folder, cat_a)
    item = IndexStore.open(folder).ids()[0]
    with folder_lock(folder):
        with pytest.raises(IndexLockTimeout, match=f"still held by pid {os.getpid()}"), \
                IndexStore.open_for_update(folder, timeout_s=0.2):
            pass
        assert main(["remove", "--index", str(folder), "--ids", item, "--lock-timeout", "0.2"]) == 2
        err = capsys.readouterr().err
        assert "waiting for the write lock" in err and "another build, add or remove is running" in err
    assert item in IndexStore.open(folder)  # nothing was changed


def test_a_killed_writer_leaves_no_lock_behind(tmp_path, two_catalogs):
    cat_a, _ = two_catalogs
    folder = tmp_path / "idx"
    synthetic_index(folder, cat_a)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from indexing.lock import folder_lock\n"
         "with folder_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(600)", str(folder)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(IndexLockTimeout), folder_lock(folder, timeout_s=0.1):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with IndexStore.open_for_update(folder, timeout_s=0.5) as store:  # the kernel dropped the lock
        store.remove([store.ids()[0]])
    assert IndexStore.open(folder).count == 15
