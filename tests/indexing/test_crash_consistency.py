"""Every index writer killed at every write step: the folder opens as the old generation or the
new one, never a mix, and running the writer again finishes the job.

One helper process (``tests/indexing/crashpoints.py``) runs each writer once to list its write
steps, then once per step in a forked child that SIGKILLs itself just before that step. The
writers: a first build, a rebuild over a live index (flat, and on-disk IVF), ``add`` and
``remove`` through the CLI (flat, and HNSW with tombstones). The tests open every copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalog import load_catalog
from indexing.build import BuildConfig, build
from indexing.engines import EngineConfig
from indexing.store import IndexStore, IndexStoreError

REPO = Path(__file__).resolve().parents[2]
SHARD = 8
FAST = dict(num_workers=0, batch_size=8, shard_size=SHARD, progress=False, tune_queries=8)


def state(folder: Path, dim: int) -> dict | str:
    """What a reader sees: the refusal message, or generation, every row and fixed searches."""
    try:
        store = IndexStore.open(folder)
    except IndexStoreError as exc:
        return f"refused: {str(exc).replace(str(folder), '<folder>')}"
    rows = store.get_items(store.ids())
    queries = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    hits = [[(h.id, round(h.score, 4)) for h in row] for row in store.search(queries, max(1, store.count))]
    return {"generation": store.manifest["generation"],
            "rows": {i: json.dumps(r, sort_keys=True) for i, r in rows.items()}, "hits": hits}


def content(s: dict | str) -> dict | str:
    return s if isinstance(s, str) else {k: v for k, v in s.items() if k != "generation"}


def leftovers(folder: Path) -> list[str]:
    """Files besides the live generation's, the manifest, the lock and work folders."""
    m = json.loads((folder / "manifest.json").read_text())
    keep = {*m["files"].values(), "manifest.json", ".lock", ".work", ".work-add"}
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def crash_runs(tmp_path_factory, catalog_factory, small_encoder) -> dict:
    root = tmp_path_factory.mktemp("crash")
    cat_a = catalog_factory(root / "cat_a", 12, seed=5, size=40)
    cat_b = catalog_factory(root / "cat_b", 4, seed=6, size=40, prefix="b")
    cat_c = catalog_factory(root / "cat_c", 10, seed=7, size=40, prefix="c")
    a, c = load_catalog(cat_a), load_catalog(cat_c)
    # Every embedding the writers need is computed here, once: the children run no model.
    build(a, root / "flat", small_encoder, BuildConfig(index="flat", keep_shards=True, **FAST))
    IndexStore.open(root / "flat", small_encoder).embed_catalog(
        load_catalog(cat_b), engine_cfg=EngineConfig(num_workers=0), progress=False)
    build(c, root / "c_shards", small_encoder, BuildConfig(index="flat", keep_shards=True, **FAST))
    for name, cfg in (("hnsw", BuildConfig(index="hnsw", **FAST)),
                      ("ondisk", BuildConfig(index="ivf", nlist=2, ondisk=True, **FAST))):
        shutil.copytree(root / "flat" / ".work", root / name / ".work")  # A's embeddings, not computed again
        build(a, root / name, small_encoder, cfg)
    (root / "first").mkdir()
    shutil.copytree(root / "flat" / ".work", root / "first" / ".work")
    for name in ("flat", "ondisk"):
        base = root / f"rebuild_{name}"
        shutil.copytree(root / name, base)
        shutil.rmtree(base / ".work", ignore_errors=True)
        shutil.copytree(root / "c_shards" / ".work", base / ".work")
    gone = [a.items[0].id, a.items[5].id]
    cases = {
        "first build": dict(op="build", catalog=str(cat_a), folder=root / "first"),
        "rebuild": dict(op="build", catalog=str(cat_c), folder=root / "rebuild_flat"),
        "rebuild on-disk": dict(op="build", catalog=str(cat_c), folder=root / "rebuild_ondisk", index="ivf",
                                nlist=2, ondisk=True),
        "add": dict(op="add", catalog=str(cat_b), folder=root / "flat"),
        "remove": dict(op="remove", ids=gone, folder=root / "flat"),
        "remove hnsw": dict(op="remove", ids=gone, folder=root / "hnsw"),
    }
    for name, case in cases.items():
        case.update(folder=str(case["folder"]), copies=str(root / "runs" / name.replace(" ", "_")), shard_size=SHARD)
    spec = root / "spec.json"
    spec.write_text(json.dumps({"image_size": small_encoder.config.image_size, "cases": list(cases.values())}))
    proc = subprocess.run([sys.executable, "-m", "tests.indexing.crashpoints", str(spec)], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cases


def rerun(case: dict, folder: Path, encoder, monkeypatch) -> None:
    """The same writer again, in this process (what an operator does after a crash)."""
    import indexing.__main__ as cli

    if case["op"] == "build":
        cfg = BuildConfig(index=case.get("index", "flat"), ondisk=case.get("ondisk", False), nlist=case.get("nlist"),
                          **FAST)
        build(load_catalog(case["catalog"]), folder, encoder, cfg)
        return
    monkeypatch.setattr(cli, "_encoder_for_index", lambda *a: encoder)
    if case["op"] == "add":
        argv = ["add", "--index", str(folder), "--catalog", case["catalog"], "--workers", "0", "--device", "cpu"]
    else:
        argv = ["remove", "--index", str(folder), "--ids", *case["ids"], "--missing-ok"]
    assert cli.main(argv) == 0


CASES = ["first build", "rebuild", "rebuild on-disk", "add", "remove", "remove hnsw"]


@pytest.mark.parametrize("name", CASES)
def test_killed_writer_leaves_old_or_new_generation(crash_runs, name, small_encoder, monkeypatch, capsys):
    case = crash_runs[name]
    copies = Path(case["copies"])
    exits = json.loads((copies / "exits.json").read_text())
    assert exits["ref"] == "exit 0", exits
    steps = json.loads((copies / "steps.json").read_text())
    commit = steps.index("replace manifest.json")  # the one commit point
    assert steps.count("replace manifest.json") == 1 and commit >= 2, steps
    dim = small_encoder.dim
    old = state(Path(case["folder"]), dim)
    new = state(copies / "ref", dim)
    assert not isinstance(new, str) and content(new) != content(old)
    if name == "first build":
        assert "did not finish" in old
    else:
        assert new["generation"] == old["generation"] + 1
    for k, label in enumerate(steps):
        where = f"{name}, killed before step {k} ({label})"
        assert exits[f"kill-{k}"] == "signal 9", where
        folder = copies / f"kill-{k}"
        got = state(folder, dim)
        # before the manifest is replaced the folder is the old generation, from then on the new one
        assert got == (old if k <= commit else new), where
        rerun(case, folder, small_encoder, monkeypatch)
        assert content(state(folder, dim)) == content(new), f"{where}: rerun did not end as an uninterrupted run"
        assert leftovers(folder) == [], where
    capsys.readouterr()
