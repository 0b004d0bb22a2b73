"""Edits that retrieve: the masked editor against the thesis's StarGAN and a non-learned colour shift.

    python -m benchmarks.bench_edits [--part demo|myntra|all] [--budget 45] [--work DIR] [--reuse]

Both designs are trained with the same wall-clock CPU budget, through the real training CLI
(``python -m generators.train --time-budget``), then judged by what a shopper gets: success@10
of the edited query in the catalog's index, next to the unedited query and the truth.

- **demo**: a rendered demo catalog (seed 1); 30 % of its products (a hash split) are never
  trained on by the editors or the encoder and serve as queries; the truth is the renderer's
  re-rendering of the query with the attribute changed. Also L1 to the truth.
- **myntra**: the real sample ``../shared/data/myntra-a``, the colour group; the reference is an
  oracle that filters the index to the target colour. Searched with the encoder that
  ``train-encoder`` makes with its defaults on the same training split, and with the built-in
  encoder.

Also the cost of one edit of a 256 px photo on this CPU. Writes
``benchmarks/results/bench_edits.json`` and PNG grids (input | edits | truth) to
``benchmarks/results/`` (copied into docs/img by hand for the docs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import MYNTRA, REPO, RESULTS, describe_machine, write_result

# The old design, as the committed demo StarGAN was configured (docs/generators.md).
STARGAN_DEMO = {"train": {"image_size": 64, "batch_size": 8, "steps": 20000, "decay_start": 0.75, "log_every": 10,
                          "sample_every": 500, "checkpoint_every": 500, "n_samples": 6, "holdout": 0.3},
                "stargan": {"g_conv_dim": 16, "d_conv_dim": 16, "g_repeat_num": 3, "g_lr": 2e-4, "d_lr": 2e-4}}


def run(cmd: list[str], log: Path) -> float:
    """Run a project CLI, its output to ``log``; returns wall seconds. Fails loudly."""
    t = time.perf_counter()
    print("$", " ".join(cmd), flush=True)
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.call(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    if rc:
        raise SystemExit(f"command failed ({rc}); see {log}")
    return time.perf_counter() - t


def train_editor(out: Path, catalog: Path, args: list[str], work: Path, reuse: bool) -> dict:
    if reuse and (out / "checkpoints" / "last.pt").is_file():
        return {"reused": True}
    seconds = run([sys.executable, "-m", "generators.train", "--catalog", str(catalog), "--out", str(out),
                   "--no-tensorboard", *args], work / f"{out.name}.log")
    last = json.loads((out / "logs.jsonl").read_text().splitlines()[-1])
    return {"wall_s": round(seconds, 1), "steps": last["step"]}


def train_encoder(out: Path, catalog: Path, work: Path, reuse: bool, extra: list[str]) -> dict:
    if reuse and (out / "encoder.json").is_file():
        return {"reused": True}
    seconds = run([sys.executable, "-m", "indexing", "train-encoder", "--catalog", str(catalog), "--out", str(out),
                   "--holdout", "0.3", *extra], work / f"{out.name}.log")
    return {"wall_s": round(seconds, 1)}


def edit_latency(editor, catalog, group: str, value: str, n: int = 15) -> float:
    """Median ms of one edit of one 256 px catalog photo (the serving path's cost)."""
    from generators.evaluate.common import open_rgb

    photo = open_rgb(catalog.image_path(catalog.items[0])).resize((256, 256))
    editor.edit([photo], {group: value})
    times = []
    for _ in range(n):
        t = time.perf_counter()
        editor.edit([photo], {group: value})
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 1)


def evaluate_part(name: str, catalog_dir: Path, editors_dirs: dict[str, Path], encoders: dict[str, str | None],
                  queries: int, work: Path) -> dict:
    import torch

    from catalog import load_catalog
    from catalog.split import holdout_mask
    from generators.evaluate.baselines import LabColourShift
    from generators.evaluate.search import SearchEvalConfig, edited_search, example_grid
    from generators.inference import load_editor
    from indexing.encoder import Encoder

    torch.set_num_threads(2)
    catalog = load_catalog(catalog_dir, check_images=False)
    editors = {n: load_editor(p, device="cpu") for n, p in editors_dirs.items()}
    held = holdout_mask([it.id for it in catalog.items], 0.3)
    if "color" in catalog.schema.groups:
        editors["lab-shift"] = LabColourShift.fit(catalog, [it for it, h in zip(catalog.items, held, strict=True) if not h])
    out: dict = {"catalog": str(catalog_dir), "items": len(catalog.items), "latency_ms_256px": {}}
    for n, ed in editors.items():
        groups = ed.capabilities()["edit"]["groups"]
        g = "color" if "color" in groups else next(iter(groups))
        out["latency_ms_256px"][n] = edit_latency(ed, catalog, g, groups[g][0])
    for enc_name, enc_path in encoders.items():
        encoder = Encoder.load(enc_path, device="cpu")
        cfg = SearchEvalConfig(queries_per_group=queries, holdout=0.3)
        t = time.perf_counter()
        res = edited_search(editors, catalog, encoder, cfg, cache_dir=work / "gallery_cache", progress=True)
        res.report["seconds"] = round(time.perf_counter() - t, 1)
        out[f"search_{enc_name}"] = res.report
        if enc_name == next(iter(encoders)):  # the edited images are the same whatever the encoder
            grid = example_grid(res, [*editors, "truth" if res.report["mode"] == "render" else "unedited"])
            path = RESULTS / f"bench_edits_{name}.png"
            grid.save(path, optimize=True)
            print(f"grid -> {path}")
        head = res.report["headline" if res.report["headline"]["groups"] else "overall"]
        print(name, enc_name, json.dumps(head, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["demo", "myntra", "all"], default="all")
    ap.add_argument("--budget", type=float, default=45.0, help="CPU minutes of training for each editor")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_edits")
    ap.add_argument("--demo-products", type=int, default=1200)
    ap.add_argument("--queries", type=int, default=40, help="held-out queries per group")
    ap.add_argument("--reuse", action="store_true", help="reuse trained runs and encoders found in --work")
    ap.add_argument("--skip-stargan", action="store_true", help="only the new design (and the baselines)")
    ap.add_argument("--stargan-checkpoint", type=Path,
                    help="demo part: evaluate this StarGAN checkpoint as the old design instead of training one "
                         "(e.g. the previously committed demo StarGAN); the myntra part then has no StarGAN")
    args = ap.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"benchmark": "bench_edits", "machine": describe_machine(), "budget_min": args.budget, "parts": {}}
    previous = RESULTS / "bench_edits.json"
    if args.part != "all" and previous.is_file():  # one part re-run: keep the other part's last result
        result["parts"] = json.loads(previous.read_text()).get("parts", {})
    budget = ["--time-budget", str(args.budget)]
    if args.part in ("demo", "all"):
        cat = work / "demo"
        if not (cat / "catalog.csv").is_file():
            run([sys.executable, "-m", "crawler", "demo", "render", "--out", str(cat), "--products",
                 str(args.demo_products), "--seed", "1"], work / "render.log")
        part: dict = {"training": {}}
        part["training"]["encoder"] = train_encoder(work / "demo_encoder", cat, work, args.reuse, [])
        part["training"]["maskedit"] = train_editor(work / "demo_maskedit", cat, ["--recipe", "demo-cpu", *budget],
                                                    work, args.reuse)
        editors = {"maskedit": work / "demo_maskedit"}
        if args.stargan_checkpoint:
            editors["stargan"] = args.stargan_checkpoint
            part["training"]["stargan"] = {"checkpoint": str(args.stargan_checkpoint)}
        elif not args.skip_stargan:
            cfg = work / "stargan_demo.json"
            cfg.write_text(json.dumps(STARGAN_DEMO))
            part["training"]["stargan"] = train_editor(work / "demo_stargan", cat,
                                                       ["--model", "stargan", "--config", str(cfg), *budget],
                                                       work, args.reuse)
            editors["stargan"] = work / "demo_stargan"
        part.update(evaluate_part("demo", cat, editors, {"trained": str(work / "demo_encoder"), "builtin": None},
                                  args.queries, work))
        result["parts"]["demo"] = part
        write_result("bench_edits", result)
    if args.part in ("myntra", "all"):
        if not (MYNTRA / "catalog.csv").is_file():
            print(f"myntra-a not found at {MYNTRA}: skipping the real part")
        else:
            part = {"training": {}}
            part["training"]["encoder"] = train_encoder(work / "myntra_encoder", MYNTRA, work, args.reuse,
                                                        ["--infer-schema", "category,color"])
            part["training"]["maskedit"] = train_editor(work / "myntra_maskedit", MYNTRA,
                                                        ["--recipe", "colour-cpu", "--infer-schema", "category,color",
                                                         *budget], work, args.reuse)
            editors = {"maskedit": work / "myntra_maskedit"}
            if not (args.skip_stargan or args.stargan_checkpoint):
                cfg = work / "stargan_myntra.json"
                cfg.write_text(json.dumps(STARGAN_DEMO))
                part["training"]["stargan"] = train_editor(
                    work / "myntra_stargan", MYNTRA, ["--model", "stargan", "--config", str(cfg), "--groups", "color",
                                                      *budget], work, args.reuse)
                editors["stargan"] = work / "myntra_stargan"
            part.update(evaluate_part("myntra", MYNTRA, editors,
                                      {"trained": str(work / "myntra_encoder"), "builtin": None}, args.queries, work))
            result["parts"]["myntra"] = part
            write_result("bench_edits", result)
    write_result("bench_edits", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
