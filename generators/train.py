"""``python -m generators.train``: train a generator of the registry (:mod:`generators.models`) on a catalog.

    python -m generators.train --model stargan --catalog DIR --out RUN_DIR \
        [--config FILE] [--image-size 64|128|256] [--steps N] [--batch-size N] [--device auto] [--resume]
    python -m generators.train --model pix2pix --catalog DIR --pairs pairs.jsonl --out RUN_DIR
    python -m generators.train --model cyclegan --catalog DIR --out RUN_DIR \
        --domain-a product:pattern=unicolors --domain-b product:pattern=stripes
    python -m generators.train --recipe demo-cpu --model munit --catalog DIR --out RUN_DIR   # or --model fader

A run folder holds ``config.json``, ``schema.json``, ``checkpoints/`` (``step_*.pt`` and
``last.pt``), ``samples/step_*.png`` (+ ``samples/columns.json``), ``logs.jsonl`` and
``tensorboard/``. ``--resume`` continues from ``checkpoints/last.pt`` exactly: the log of a
resumed run equals the log of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from catalog import Catalog, Schema, add_catalog_options, atomic_write_bytes, atomic_write_text
from generators.checkpoint import CheckpointManager, load_checkpoint, rng_state, set_rng_state
from generators.datasets import (
    BatchStream,
    TrainData,
    attribute_data,
    float_to_uint8,
    load_image_uint8,
    paired_data,
    parse_domain,
    read_pairs,
    unpaired_data,
)
from generators.models import REGISTRY, solver_class
from generators.models.base import Solver
from generators.options import (
    MODELS,
    Config,
    ConfigError,
    apply_overrides,
    defaults_for,
    load_config_file,
    parse_set,
)


class TrainError(ValueError):
    """A run that cannot start: names the argument or file at fault."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: CUDA is not available on this machine")
    return dev


def make_solver(cfg: Config, schema: Schema, device: torch.device, meta: dict | None = None) -> Solver:
    return solver_class(cfg.train.model)(cfg, schema, device, meta)


def load_training_catalog(cfg: Config, catalog_dir: str | Path, progress: bool = False) -> Catalog:
    """The catalog by the rule every command shares (:mod:`catalog.loading`).

    A catalog without ``schema.json`` (a real shop's, like ``myntra-a``) gets a schema inferred
    from its own columns unless it fits the thesis vocabulary; a large loss of rows stops the
    run with the reasons and the flag that accepts it.
    """
    from catalog import LoadOptions, open_catalog
    from catalog.format import CATALOG_FILE

    root = Path(catalog_dir)
    if not (root / CATALOG_FILE).is_file():
        raise TrainError(f"--catalog {root}: no {CATALOG_FILE} there")
    t = cfg.train
    options = LoadOptions(schema_file=Path(t.schema) if t.schema else None, infer_groups=tuple(t.infer_schema or ()),
                          min_count=t.min_count, max_skipped=t.max_skipped, unknown_values=t.unknown_values)
    cat = open_catalog(root, options)
    if progress:
        print(f"catalog {root}: {cat.counts_line()}", file=sys.stderr)
    return cat


def trained_schema(cfg: Config, cat: Catalog) -> Schema:
    """The schema the model learns: the model decides (maskedit: its judges read every group)."""
    own = getattr(solver_class(cfg.train.model), "training_schema", None)
    try:
        if own is not None:
            return own(cfg, cat.schema)
        return cat.schema.subset(cfg.train.groups) if cfg.train.groups else cat.schema
    except ValueError as exc:
        raise TrainError(f"train.groups: {exc}") from exc


def training_items(cat: Catalog, holdout: float, seed: int = 0) -> tuple[list, list]:
    """(items trained on, items held out) by a hash of the id: the split train-encoder uses too."""
    from catalog.split import holdout_mask

    test = holdout_mask([it.id for it in cat.items], holdout, seed)
    return ([it for it, t in zip(cat.items, test, strict=True) if not t],
            [it for it, t in zip(cat.items, test, strict=True) if t])


def build_data(cfg: Config, cat: Catalog, schema: Schema) -> tuple[TrainData, dict[str, Any]]:
    """Training data for the model and the metadata inference needs (e.g. CycleGAN domains)."""
    t = cfg.train
    if t.holdout > 0:
        cat.items, held = training_items(cat, t.holdout)
    if t.model in ("stargan", "maskedit", "fader"):
        return attribute_data(cat, schema, t.image_size, t.max_items), {}
    pairs = read_pairs(t.pairs, cat.root) if t.pairs else None
    if t.model == "pix2pix":
        if pairs is None:
            raise TrainError("pix2pix trains on pairs: pass --pairs FILE (written by python -m generators.pairs)")
        direction = cfg.pix2pix.direction  # model->product: the same pose pairs, read the other way round
        return (paired_data(pairs, t.image_size, t.max_items, reverse=direction == "model->product"),
                {"direction": direction})
    if t.model == "cutout":  # a = the product photo, b = the model photo of each pair
        if pairs is None:
            raise TrainError("cutout learns from pairs: pass --pairs FILE (written by python -m generators.pairs)")
        return paired_data(pairs, t.image_size, t.max_items), {}  # it translates both ways
    dom_a, dom_b = parse_domain(t.domain_a, cat.schema), parse_domain(t.domain_b, cat.schema)
    data = unpaired_data(cat, dom_a, dom_b, t.image_size, pairs, t.max_items)
    meta = {"domain_a": {"kind": dom_a.kind, "where": dom_a.where},
            "domain_b": {"kind": dom_b.kind, "where": dom_b.where}}
    return data, meta


def save_grid(path: Path, grid: torch.Tensor) -> None:
    """``[rows, cols, 3, H, W]`` in [-1, 1] -> one PNG, rows of inputs and their outputs."""
    import io

    from PIL import Image

    rows, cols, _, h, w = grid.shape
    pad = 2
    canvas = torch.full((3, rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=torch.uint8)
    img = float_to_uint8(grid.cpu())
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[:, y:y + h, x:x + w] = img[r, c]
    buf = io.BytesIO()
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class RunResult:
    run_dir: Path
    step: int
    last_checkpoint: Path
    seconds: float
    images_per_s: float


class _Logs:
    """logs.jsonl (truncated to the resumed step, so a resumed log equals an uninterrupted one)
    and TensorBoard events."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool = True) -> None:
        self.path = run_dir / "logs.jsonl"
        if self.path.exists():
            kept = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= start_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        self.fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def write(self, step: int, values: dict[str, float]) -> None:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
        self.fh.write(json.dumps({"step": step, **clean}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not math.isnan(v):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def train(
    cfg: Config, catalog_dir: str | Path, run_dir: str | Path, resume: bool = False,
    progress: bool = True, tensorboard: bool = True, stop_at: int | None = None,
) -> RunResult:
    """Train (or resume) a run. The function behind the CLI, callable from tests and notebooks.

    ``stop_at`` ends the session at that step (with a checkpoint) without changing the
    schedule, which still spans ``train.steps``: a long run can be trained in slices.
    """
    run_dir = Path(run_dir)
    ckpts = CheckpointManager(run_dir, cfg.train.keep_checkpoints)
    state = None
    if resume:
        last = ckpts.last()
        if last is None:
            raise TrainError(f"--resume: {run_dir} has no checkpoints/last.pt to resume from")
        state = load_checkpoint(last)
        steps, device_name, threads = cfg.train.steps, cfg.train.device, cfg.train.threads
        cfg = Config.from_dict(state["config"])
        cfg.train.steps = max(steps, cfg.train.steps) if steps else cfg.train.steps
        # Where it runs is this session's choice; what it computes is the checkpoint's config.
        cfg.train.device, cfg.train.threads = device_name, threads or cfg.train.threads
    elif ckpts.last() is not None:
        raise TrainError(f"{run_dir} already holds checkpoints; pass --resume to continue or choose another --out")
    cfg.validate()
    t = cfg.train
    device = resolve_device(t.device)
    threads_before = torch.get_num_threads()
    if t.threads > 0:
        torch.set_num_threads(t.threads)  # restored at the end: callers keep their setting
    try:
        return _train(cfg, catalog_dir, run_dir, state, ckpts, device, progress, tensorboard, stop_at)
    finally:
        torch.set_num_threads(threads_before)


def _train(
    cfg: Config, catalog_dir: str | Path, run_dir: Path, state: dict[str, Any] | None, ckpts: CheckpointManager,
    device: torch.device, progress: bool, tensorboard: bool, stop_at: int | None,
) -> RunResult:
    t = cfg.train
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.speed.cudnn_benchmark

    random.seed(t.seed)
    np.random.seed(t.seed)
    torch.manual_seed(t.seed)

    cat = load_training_catalog(cfg, catalog_dir, progress)
    schema = trained_schema(cfg, cat)
    if state is not None and state["schema"] != schema.to_dict():
        raise TrainError(f"--resume: the catalog's schema differs from the run's ({run_dir / 'schema.json'})")
    data, meta = build_data(cfg, cat, schema)
    stream = BatchStream(
        data, t.batch_size, t.seed, device, flip=t.flip, cache=cfg.speed.cache,
        cache_max_mb=cfg.speed.cache_max_mb, num_workers=cfg.speed.num_workers,
        pin_memory=cfg.speed.pin_memory, channels_last=cfg.speed.channels_last, progress=progress,
    )
    solver = make_solver(cfg, schema, device, meta)
    start = 0
    if state is None and hasattr(solver, "prepare"):
        # e.g. maskedit fits its frozen judges on the training photos before the first step
        # (two-domain models, MUNIT, get each domain's photos by field name)
        images = (stream.all_images("image") if "image" in data.fields
                  else {name: stream.all_images(name) for name in data.fields})
        solver.prepare(images, data.labels, progress=progress)
        hires = getattr(solver, "hires_size", 0)
        if hires and "image" in data.fields:
            # fixed steps that copy detail from the photos (print tiles) read them sharper than the
            # networks' working size: a lace at 64 px is a grid of blocks
            from tqdm import tqdm

            paths = data.fields["image"]
            solver.prepare_hires(torch.stack([load_image_uint8(p, hires) for p in tqdm(
                paths, desc=f"photos at {hires} px", unit="photo", disable=not progress, leave=False)]), data.labels)
    if state is not None:
        solver.load_state_dict(state)
        stream.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        start = int(state["step"])
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        schema.save(run_dir / "schema.json")
        atomic_write_text(run_dir / "data.json", json.dumps({
            "catalog": str(Path(catalog_dir).resolve()), "catalog_checksum": cat.checksum(),
            "loaded": cat.provenance(), "holdout": t.holdout,
            "fields": {k: len(v) for k, v in data.fields.items()}, "meta": meta,
        }, indent=2) + "\n")
    fixed = stream.fixed_batch(t.n_samples)
    logs = _Logs(run_dir, start, tensorboard)

    def payload(step: int) -> dict[str, Any]:
        return {
            "model": t.model, "step": step, "config": cfg.to_dict(), "schema": schema.to_dict(),
            "meta": meta, "data": stream.state_dict(), "rng": rng_state(), **solver.state_dict(),
        }

    def sample(step: int) -> None:
        grid, captions = solver.sample_grid(fixed)
        save_grid(run_dir / "samples" / f"step_{step:08d}.png", grid)
        atomic_write_text(run_dir / "samples" / "columns.json", json.dumps(captions) + "\n")

    from tqdm import tqdm

    bar = tqdm(total=t.steps, initial=start, unit="it", desc=f"{t.model} {run_dir.name}",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)
    t0 = time.perf_counter()
    step = start
    solver.train(True)
    in_step = False
    try:
        end = min(t.steps, stop_at) if stop_at else t.steps
        while step < end:
            in_step = True  # an interrupt in here leaves a half-done step: not saved
            batch = stream.next()
            lrs = solver.lrs()  # the rates this step used
            values = solver.train_step(batch, step)
            solver.step_schedulers()
            step += 1
            in_step = False
            bar.update(1)
            if step % t.log_every == 0 or step == t.steps:
                values.update(lrs)
                values["epoch"] = round(stream.epoch, 4)
                logs.write(step, values)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in values.items()
                                 if k.startswith(("D/loss", "G/loss")) and v == v}, refresh=False)
            out_of_time = bool(t.time_budget_min) and time.perf_counter() - t0 > 60 * t.time_budget_min
            if step % t.sample_every == 0 or step == t.steps or out_of_time:
                sample(step)
            if step % t.checkpoint_every == 0 or step == end or out_of_time:
                ckpts.save(step, payload(step))
            if out_of_time:
                print(f"\ntime budget of {t.time_budget_min} min reached at step {step}; "
                      f"--resume continues exactly", file=sys.stderr)
                break
    except KeyboardInterrupt:
        # Keep the work done so far; --resume continues from here exactly.
        if step > start and not in_step:
            ckpts.save(step, payload(step))
            print(f"\ninterrupted: saved step {step} to {ckpts.last()}; continue with --resume", file=sys.stderr)
        elif step > start:
            print(f"\ninterrupted inside step {step + 1}; --resume continues from {ckpts.last()}", file=sys.stderr)
        raise
    finally:
        bar.close()
        logs.close()
        stream.close()
    seconds = time.perf_counter() - t0
    done = step - start
    return RunResult(run_dir, step, ckpts.last() or Path(), seconds,
                     done * t.batch_size / seconds if seconds > 0 and done else 0.0)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from generators.recipes import describe

    models = "\n".join(f"  {name:<11} {e.summary}" for name, e in REGISTRY.items())
    ap = argparse.ArgumentParser(
        prog="python -m generators.train",
        description="Train a generator: an attribute editor (maskedit, stargan), attribute sliders (fader), "
                    "product->model (pix2pix) or unpaired translation (cyclegan; munit, multi-modal).",
        epilog=f"recipes (--recipe NAME; flags still override their fields):\n{describe()}\n\nmodels:\n{models}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--recipe", help="a named preset (model + settings), listed below")
    ap.add_argument("--model", choices=MODELS, help="the model, when no --recipe names it")
    ap.add_argument("--catalog", required=True, help="catalog folder (catalog.csv, images/, schema.json)")
    ap.add_argument("--out", required=True, help="run folder: checkpoints, samples, logs")
    ap.add_argument("--config", help="JSON or YAML file overriding defaults by section, e.g. {\"stargan\": {\"g_conv_dim\": 32}}")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override one config field (repeatable), e.g. --set stargan.n_critic=5")
    ap.add_argument("--image-size", type=int, help="64 (CPU smoke runs), 128 or 256")
    ap.add_argument("--steps", type=int, help="training iterations (StarGAN: critic steps, as official)")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--device", help="auto (CUDA if present), cpu, cuda, cuda:1")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoints/last.pt exactly")
    ap.add_argument("--time-budget", type=float, metavar="MIN",
                    help="stop (with a checkpoint) after this many minutes of training; the schedule still spans --steps")
    ap.add_argument("--stop-at", type=int, help="stop (with a checkpoint) at this step; the LR schedule still spans --steps")
    ap.add_argument("--pairs", help="pairs file (pix2pix, cutout; CycleGAN model domain)")
    ap.add_argument("--groups", help="attribute editors: comma-separated schema groups to edit (default: all; "
                                     "maskedit: all but the anchor group, category)")
    ap.add_argument("--holdout", type=float, help="share of items held out of training by a hash of the id "
                                                  "(the split train-encoder uses), e.g. 0.3")
    ap.add_argument("--domain-a", help="CycleGAN / MUNIT domain A, e.g. product:pattern=unicolors or product")
    ap.add_argument("--domain-b", help="CycleGAN / MUNIT domain B, e.g. product:pattern=floral or model")
    ap.add_argument("--max-items", type=int, help="use only the first N items")
    ap.add_argument("--log-every", type=int)
    ap.add_argument("--sample-every", type=int)
    ap.add_argument("--checkpoint-every", type=int)
    add_catalog_options(ap)
    ap.add_argument("--no-speed", action="store_true", help="switch the speed work off (official code's behaviour)")
    ap.add_argument("--no-tensorboard", action="store_true")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def config_from_args(args: argparse.Namespace) -> Config:
    from generators.options import SpeedOptions
    from generators.recipes import RecipeError, find

    recipe = None
    if args.recipe:
        try:
            recipe = find(args.recipe, args.model)
        except RecipeError as exc:
            raise ConfigError(str(exc)) from None
        args.model = recipe.model
    if not args.model:
        raise ConfigError("give --recipe NAME or --model NAME (see --help)")
    cfg = defaults_for(args.model)
    if recipe is not None:
        apply_overrides(cfg, recipe.overrides, source=f"recipe {args.recipe}")
    if args.no_speed:
        cfg.speed = SpeedOptions.off()
    if args.config:
        data = load_config_file(args.config)
        model_in_file = data.get("train", {}).get("model")
        if model_in_file and model_in_file != args.model:
            raise ConfigError(f"--config {args.config} is for model {model_in_file!r}, not --model {args.model}")
        apply_overrides(cfg, data, source=str(args.config))
    apply_overrides(cfg, parse_set(args.set), source="--set")
    flags = {
        "image_size": args.image_size, "steps": args.steps, "batch_size": args.batch_size,
        "device": args.device, "threads": args.threads, "seed": args.seed, "pairs": args.pairs,
        "schema": str(args.schema) if args.schema else None,
        "infer_schema": [g.strip() for g in args.infer_schema.split(",") if g.strip()] if args.infer_schema else None,
        "min_count": args.min_count, "max_skipped": args.max_skipped, "unknown_values": args.unknown_values,
        "groups": args.groups.split(",") if args.groups else None, "domain_a": args.domain_a,
        "domain_b": args.domain_b, "max_items": args.max_items, "log_every": args.log_every,
        "sample_every": args.sample_every, "checkpoint_every": args.checkpoint_every, "holdout": args.holdout,
        "time_budget_min": args.time_budget,
    }
    for k, v in flags.items():
        if v is not None:
            setattr(cfg.train, k, v)
    if cfg.train.pairs:
        cfg.train.pairs = str(Path(cfg.train.pairs).resolve())
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.resume and args.steps is None:
            cfg.train.steps = 0  # keep the checkpoint's
        res = train(cfg, args.catalog, args.out, resume=args.resume, progress=not args.quiet,
                    tensorboard=not args.no_tensorboard, stop_at=args.stop_at)
    except (ConfigError, TrainError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"done: step {res.step}, {res.images_per_s:.1f} images/s, checkpoint {res.last_checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
