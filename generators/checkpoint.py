"""Checkpoints: atomic, complete for an exact resume, loadable without unpickling code.

A training checkpoint holds the networks, optimisers, LR schedulers, every RNG state
(Python, NumPy, torch CPU and CUDA, the solver's own generator), the data stream position,
the step, the full config and the schema. ``torch.load(weights_only=True)`` reads it, so a
checkpoint file can never run code. An *inference* checkpoint (:func:`export_inference`)
keeps only what :func:`generators.inference.load_editor` needs, optionally in fp16.

CLI::

    python -m generators.checkpoint info RUN_DIR/checkpoints/last.pt
    python -m generators.checkpoint export RUN_DIR/checkpoints/last.pt OUT.pt [--fp16]
"""

from __future__ import annotations

import argparse
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catalog import atomic_path

FORMAT = "fashion-gan-checkpoint"
VERSION = 1
LAST = "last.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project."""


# --------------------------------------------------------------------------------------
# RNG states
# --------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically: a killed process never leaves a half-written checkpoint."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: folder holds no checkpoint (looked for {LAST} and checkpoints/{LAST})")
        path = found
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, foreign pickle
        raise CheckpointError(f"{path}: not a readable checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} file (format={ckpt.get('format') if isinstance(ckpt, dict) else None!r})")
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this code ({VERSION})")
    for key in ("model", "config", "schema", "nets"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return ckpt


def latest_checkpoint(run_or_dir: str | Path) -> Path | None:
    """``last.pt`` of a run folder (``RUN/checkpoints/last.pt``) or of a checkpoints folder."""
    p = Path(run_or_dir)
    for cand in (p / "checkpoints" / LAST, p / LAST):
        if cand.is_file():
            return cand
    return None


class CheckpointManager:
    """``RUN/checkpoints/step_XXXXXXXX.pt`` every N steps, ``last.pt`` always the newest."""

    def __init__(self, run_dir: str | Path, keep: int = 3) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.dir / f"step_{step:08d}.pt", payload)
        # last.pt as a hard link to the same bytes, swapped in atomically.
        tmp = self.dir / f".{LAST}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
            os.replace(tmp, self.dir / LAST)
        except OSError:
            save_checkpoint(self.dir / LAST, payload)
        self._prune()
        return path

    def _prune(self) -> None:
        steps = sorted(p for p in self.dir.iterdir() if _STEP_RE.match(p.name))
        for old in steps[: max(0, len(steps) - self.keep)]:
            old.unlink(missing_ok=True)

    def last(self) -> Path | None:
        p = self.dir / LAST
        return p if p.is_file() else None


def export_inference(src: str | Path, dst: str | Path, fp16: bool = False) -> Path:
    """Only the networks inference needs (+ config, schema, meta): small, safe to ship."""
    ckpt = load_checkpoint(src)
    from generators.models import solver_class

    wanted = solver_class(ckpt["model"]).inference_nets
    nets = {}
    for name in wanted:
        if name not in ckpt["nets"]:  # an optional net an older run did not have (cutout's "M")
            continue
        sd = ckpt["nets"][name]
        nets[name] = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in sd.items()}
    payload = {
        "model": ckpt["model"], "step": ckpt.get("step"), "config": ckpt["config"], "schema": ckpt["schema"],
        "meta": ckpt.get("meta", {}), "nets": nets, "inference_only": True,
        "dtype": "float16" if fp16 else "float32",
    }
    return save_checkpoint(dst, payload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generators.checkpoint", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="what a checkpoint holds")
    info.add_argument("path")
    exp = sub.add_parser("export", help="inference-only copy (networks, config, schema)")
    exp.add_argument("src")
    exp.add_argument("dst")
    exp.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    args = ap.parse_args(argv)
    if args.cmd == "info":
        ck = load_checkpoint(args.path)
        size = Path(args.path).stat().st_size if Path(args.path).is_file() else 0
        nparams = {k: sum(v.numel() for v in sd.values() if v.is_floating_point()) for k, sd in ck["nets"].items()}
        print(f"model {ck['model']}  step {ck.get('step')}  inference_only {ck.get('inference_only', False)}  "
              f"{size / 2**20:.1f} MiB")
        print(f"image_size {ck['config']['train']['image_size']}  params {nparams}")
        print(f"groups {', '.join(ck['schema']['groups'])}")
        return 0
    out = export_inference(args.src, args.dst, args.fp16)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
