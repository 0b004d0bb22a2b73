"""Inference latency of one StarGAN edit at 64, 128 and 256 px (batch 1), CPU or GPU.

Times :meth:`generators.inference.Editor.edit` on one PIL image end to end (resize, the
classifier reading the input's own labels, the generator, conversion back to PIL) and the
generator forward alone, with the official network sizes (G conv_dim 64, 6 residual blocks;
D conv_dim 64) and the thesis schema (7 groups, 38 values). Latency does not depend on the
weights, so randomly initialised checkpoints are timed; the demo checkpoint is timed too.

    python -m benchmarks.bench_gan_infer [--repeats 10] [--sizes 64,128,256]

Writes ``benchmarks/results/bench_gan_infer.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.bench_gan_common import machine, write_result


def make_checkpoint(size: int, out: Path) -> Path:
    from catalog import Schema
    from generators.checkpoint import save_checkpoint
    from generators.models.stargan import build_stargan_nets
    from generators.options import defaults_for

    cfg = defaults_for("stargan")
    cfg.train.image_size = size
    schema = Schema.default()
    torch.manual_seed(0)
    g, d = build_stargan_nets(cfg, schema)
    return save_checkpoint(out, {"model": "stargan", "step": 0, "config": cfg.to_dict(), "schema": schema.to_dict(),
                                 "meta": {}, "nets": {"G": g.state_dict(), "D": d.state_dict()}, "inference_only": True})


def time_ms(fn, repeats: int, sync: bool) -> dict:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(ts), 2), "min_ms": round(min(ts), 2), "max_ms": round(max(ts), 2)}


def bench_editor(path: Path, device: str, repeats: int, label: str) -> dict:
    from generators.inference import load_editor

    ed = load_editor(path, device)
    sync = ed.device.type == "cuda"
    img = Image.new("RGB", (256, 256), (255, 255, 255))
    img.paste((40, 60, 200), (80, 40, 176, 230))
    group, values = next(iter(ed.capabilities()["edit"]["groups"].items()))
    edit = time_ms(lambda: ed.edit([img], {group: values[-1]}), repeats, sync)
    x = torch.zeros(1, 3, ed.image_size, ed.image_size, device=ed.device)
    c = torch.zeros(1, ed.schema.num_values, device=ed.device)
    with torch.inference_mode():
        g_only = time_ms(lambda: ed.nets["G"](x, c), repeats, sync)
        d_only = time_ms(lambda: ed.nets["D"].classify(x), repeats, sync)
    res = {"checkpoint": label, "image_size": ed.image_size, "device": str(ed.device),
           "edit_one_image": edit, "generator_forward": g_only, "classifier_forward": d_only}
    print(f"{label:28s} {ed.image_size:4d}px  edit {edit['median_ms']:8.1f} ms   G {g_only['median_ms']:8.1f} ms   "
          f"D classifier {d_only['median_ms']:7.1f} ms")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from generators import DEMO_CHECKPOINTS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            ck = make_checkpoint(size, Path(tmp) / f"stargan_{size}.pt")
            rows.append(bench_editor(ck, args.device, args.repeats, "official size (conv_dim 64)"))
    for demo in sorted(DEMO_CHECKPOINTS.glob("stargan*.pt")):
        rows.append(bench_editor(demo, args.device, args.repeats, f"demo {demo.name}"))
    write_result("bench_gan_infer", {"benchmark": "bench_gan_infer", "machine": machine(), "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
