"""Training: one or two steps of each model, exact resume, speed work equivalence, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from gan_helpers import make_tiny_catalog, read_log, write_tiny_config

from generators.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from generators.datasets import DataError, read_pairs
from generators.options import Config, ConfigError, apply_overrides
from generators.train import main as train_main

# One thread: tiny nets gain nothing from two, and a shared CPU makes two threads wait on each other.
COMMON = ["--image-size", "32", "--batch-size", "4", "--quiet", "--no-tensorboard", "--threads", "1"]
MODEL_ARGS = {
    "maskedit": [],
    "stargan": [],
    "pix2pix": ["--pairs", "PAIRS"],
    "cyclegan": ["--domain-a", "product:pattern=unicolors", "--domain-b", "product:pattern=stripes"],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_catalog(tmp_path_factory.mktemp("tiny_gan_catalog"))


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_config(tmp_path_factory.mktemp("cfg") / "tiny.json")


def _train(model: str, catalog: Path, out: Path, config: Path, *extra: str) -> int:
    margs = [a.replace("PAIRS", str(catalog / "pairs.jsonl")) for a in MODEL_ARGS[model]]
    return train_main(["--model", model, "--catalog", str(catalog), "--out", str(out), "--config", str(config),
                       *COMMON, *margs, *extra])


@pytest.mark.parametrize("model", ["maskedit", "stargan", "pix2pix", "cyclegan"])
def test_two_steps_write_run_folder(model: str, tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _train(model, tiny, run, tiny_config, "--steps", "2") == 0
    log = read_log(run)
    assert [r["step"] for r in log] == [1, 2]
    losses = [v for r in log for k, v in r.items() if "/loss" in k]
    assert losses and all(math.isfinite(v) for v in losses)
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["model"] == model and ck["step"] == 2
    assert ck["config"]["train"]["image_size"] == 32
    assert set(ck["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert ck["data"] == {"batches": 2}
    assert ck["optims"] and ck["scheds"]
    assert (run / "samples" / "step_00000002.png").is_file()
    cols = json.loads((run / "samples" / "columns.json").read_text())
    if model in ("stargan", "maskedit"):  # inputs, then one column per (group, value)
        assert cols[0] == "input" and len(cols) == 1 + 3 + 2 + 2
    from PIL import Image

    with Image.open(run / "samples" / "step_00000002.png") as im:
        rows = 3 if model != "cyclegan" else 3
        assert im.size == (len(cols) * 34 + 2, rows * 34 + 2)


@pytest.mark.parametrize("model", ["maskedit", "stargan", "pix2pix", "cyclegan"])
def test_resume_equals_uninterrupted(model: str, tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    full, split = tmp_path / "full", tmp_path / "split"
    assert _train(model, tiny, full, tiny_config, "--steps", "6") == 0
    assert _train(model, tiny, split, tiny_config, "--steps", "6", "--stop-at", "3") == 0
    assert load_checkpoint(split / "checkpoints" / "last.pt")["step"] == 3
    assert train_main(["--model", model, "--catalog", str(tiny), "--out", str(split), "--resume", "--quiet",
                       "--no-tensorboard", "--threads", "1"]) == 0
    a, b = read_log(full), read_log(split)
    assert [r["step"] for r in a] == list(range(1, 7))
    assert a == b  # every loss, accuracy and learning rate, bit for bit
    sd_a = load_checkpoint(full / "checkpoints" / "last.pt")["nets"]
    sd_b = load_checkpoint(split / "checkpoints" / "last.pt")["nets"]
    for net in sd_a:
        for k in sd_a[net]:
            assert torch.equal(sd_a[net][k], sd_b[net][k]), f"{net}.{k} differs after resume"


def test_resume_from_loader_workers_equals_cached(tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    """Batches come from (seed, batch number) alone: DataLoader workers == decoded cache."""
    cached, workers = tmp_path / "cached", tmp_path / "workers"
    assert _train("stargan", tiny, cached, tiny_config, "--steps", "4") == 0
    assert _train("stargan", tiny, workers, tiny_config, "--steps", "4", "--stop-at", "2",
                  "--set", "speed.cache=false", "--set", "speed.num_workers=1") == 0
    assert train_main(["--model", "stargan", "--catalog", str(tiny), "--out", str(workers), "--resume", "--quiet",
                       "--no-tensorboard", "--threads", "1"]) == 0
    assert read_log(cached) == read_log(workers)


def test_speed_work_computes_the_same_losses(tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    on, off = tmp_path / "on", tmp_path / "off"
    assert _train("stargan", tiny, on, tiny_config, "--steps", "4") == 0
    assert _train("stargan", tiny, off, tiny_config, "--steps", "4", "--no-speed") == 0
    a, b = read_log(on), read_log(off)
    for ra, rb in zip(a, b, strict=True):
        for k, v in ra.items():
            if "/loss" in k:
                assert v == pytest.approx(rb[k], rel=1e-4, abs=1e-5), k


def test_tensorboard_events_written(tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train_main(["--model", "stargan", "--catalog", str(tiny), "--out", str(run), "--config", str(tiny_config),
                       "--image-size", "32", "--batch-size", "4", "--steps", "1", "--quiet", "--threads", "1"]) == 0
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_refuses_to_overwrite_or_resume_nothing(tiny: Path, tiny_config: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert _train("stargan", tiny, run, tiny_config, "--steps", "1") == 0
    assert _train("stargan", tiny, run, tiny_config, "--steps", "1") == 2
    assert "--resume" in capsys.readouterr().err
    assert _train("stargan", tiny, tmp_path / "empty", tiny_config, "--steps", "1", "--resume") == 2
    assert "no checkpoints/last.pt" in capsys.readouterr().err


def test_bad_arguments_name_the_problem(tiny: Path, tiny_config: Path, tmp_path: Path, capsys) -> None:
    assert _train("stargan", tiny, tmp_path / "a", tiny_config, "--groups", "colour") == 2
    assert "colour" in capsys.readouterr().err
    assert train_main(["--model", "pix2pix", "--catalog", str(tiny), "--out", str(tmp_path / "b"), *COMMON]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert _train("cyclegan", tiny, tmp_path / "c", tiny_config, "--domain-b", "product:pattern=plaid") == 2
    assert "plaid" in capsys.readouterr().err
    assert _train("stargan", tiny, tmp_path / "d", tiny_config, "--set", "stargan.n_critics=3") == 2
    assert "n_critic" in capsys.readouterr().err


def test_config_overrides_are_checked() -> None:
    cfg = Config()
    apply_overrides(cfg, {"stargan": {"g_conv_dim": "32"}, "speed": {"cache": "false"}})
    assert cfg.stargan.g_conv_dim == 32 and cfg.speed.cache is False
    with pytest.raises(ConfigError, match="allowed: .*lambda_rec"):
        apply_overrides(cfg, {"stargan": {"lambda_recon": 5}})
    with pytest.raises(ConfigError, match="sections are"):
        apply_overrides(cfg, {"stargn": {}})
    cfg.train.image_size = 100
    with pytest.raises(ConfigError, match="multiple of 32"):
        cfg.validate()


def test_a_catalog_without_schema_is_loaded_by_the_shared_rule(tiny: Path, tiny_config: Path, tmp_path: Path) -> None:
    """No schema.json and a foreign vocabulary (like myntra-a): the schema is inferred, nothing lost."""
    import csv
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny, bare)
    (bare / "schema.json").unlink()
    with open(bare / "catalog.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:  # not the thesis vocabulary any more
        r["color"] = {"blue": "navy_blue", "red": "maroon"}.get(r["color"], r["color"])
    with open(bare / "catalog.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run = tmp_path / "run"
    assert _train("stargan", bare, run, tiny_config, "--steps", "1", "--groups", "color,length", "--min-count", "1") == 0
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["schema"]["groups"]["color"] == sorted({r["color"] for r in rows})
    data = json.loads((run / "data.json").read_text())
    assert data["loaded"]["skipped"] == 0 and data["loaded"]["items"] == len(rows)


def test_pairs_file_errors_name_the_line(tiny: Path, tmp_path: Path) -> None:
    assert len(read_pairs(tiny / "pairs.jsonl", tiny)) == 12
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"id": "p0", "product_path": "images/p0.png", "model_path": "model_images/p0_0.png"}\n'
                   '{"id": "p1", "product_path": "images/p1.png"}\n')
    with pytest.raises(DataError, match="line 2: field 'model_path'"):
        read_pairs(bad, tiny)
    bad.write_text('{"id": "p0", "product_path": "images/p0.png", "model_path": "model_images/nope.png"}\n')
    with pytest.raises(DataError, match="line 1: field 'model_path'.*does not exist"):
        read_pairs(bad, tiny)
    csv_pairs = tmp_path / "pairs.csv"
    csv_pairs.write_text("id,product_path,model_path,score\np3,images/p3.png,model_images/p3_0.png,0.9\n")
    (p,) = read_pairs(csv_pairs, tiny)
    assert p.id == "p3" and p.meta == {"score": "0.9"}


def test_truncated_checkpoint_never_loads(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"model": "stargan", "config": {}, "schema": {}, "nets": {}})
    assert load_checkpoint(path)["model"] == "stargan"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not list(tmp_path.glob("*.tmp"))
