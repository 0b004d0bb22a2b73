"""StarGAN training throughput (images/s) with the speed work on vs off, in one run.

Official configuration: 128 px, batch 16, G conv_dim 64 with 6 residual blocks, D with 6
strided convs, n_critic 5. Each variant is timed over whole critic cycles (n_critic
iterations = n_critic D updates + 1 G update) after a warm-up cycle, on the same data.

"off" is the official code's behaviour: NCHW, G forward with autograd in the D step, separate
D passes for real and fake, the GP through both heads, D weight gradients in the G step, fp32,
images decoded from disk in the main process. "on" switches all of the speed work on
(channels_last, lean steps, bf16 autocast where it pays, i.e. CUDA, and the pre-decoded
uint8 cache on the device). Both compute the same losses (tests/generators check this).

    python -m benchmarks.bench_gan_train [--cycles 2] [--image-size 128] [--batch-size 16]

Writes ``benchmarks/results/bench_gan_train.json``.
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.bench_gan_common import benchmark_catalog, machine, write_result


def run_variant(name: str, speed, cat, schema, image_size: int, batch_size: int, cycles: int, device) -> dict:
    from generators.datasets import BatchStream, attribute_data
    from generators.options import defaults_for
    from generators.train import make_solver

    cfg = defaults_for("stargan")
    cfg.speed = speed
    cfg.train.image_size, cfg.train.batch_size = image_size, batch_size
    data = attribute_data(cat, schema, image_size)
    t0 = time.perf_counter()
    stream = BatchStream(data, batch_size, 0, device, cache=speed.cache, num_workers=speed.num_workers,
                         pin_memory=speed.pin_memory, channels_last=speed.channels_last)
    prep_s = time.perf_counter() - t0
    torch.manual_seed(0)
    solver = make_solver(cfg, schema, device)
    n_critic = cfg.stargan.n_critic
    step = 0

    def cycle() -> None:
        nonlocal step
        for _ in range(n_critic):
            solver.train_step(stream.next(), step)
            step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()

    solver.train_step(stream.next(), step)  # warm-up (allocator, kernels, first decode)
    step += 1  # any n_critic consecutive iterations hold exactly one G update
    times = []
    for _ in range(cycles):
        t = time.perf_counter()
        cycle()
        times.append(time.perf_counter() - t)
    total = sum(times)
    stream.close()
    res = {
        "variant": name, "speed": vars(speed), "amp_dtype": str(solver.amp_dtype),
        "data_prep_s": round(prep_s, 2), "cycles": cycles, "iterations": cycles * n_critic,
        "seconds": round(total, 3), "images_per_s": round(cycles * n_critic * batch_size / total, 3),
        "seconds_per_cycle": [round(x, 3) for x in times],
    }
    print(f"{name:4s}: {res['images_per_s']:.2f} images/s ({res['seconds']:.1f} s for {res['iterations']} iterations)")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=2, help="timed critic cycles per variant (after one warm-up)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--groups", default="color,pattern", help="schema groups (myntra-a: color,pattern)")
    ap.add_argument("--max-items", type=int, default=512, help="catalog items used (decode time stays short)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from generators.options import SpeedOptions, defaults_for
    from generators.train import load_training_catalog, resolve_device, trained_schema

    device = resolve_device(args.device)
    root, name = benchmark_catalog()
    cfg = defaults_for("stargan")
    cfg.train.groups = args.groups.split(",")
    cat = load_training_catalog(cfg, root)
    cat.items = cat.items[: args.max_items]
    schema = trained_schema(cfg, cat)
    groups = schema.names
    print(f"StarGAN {args.image_size}px batch {args.batch_size} on {device}, catalog {name}, groups {groups} "
          f"(c_dim {schema.num_values})")
    variants = [run_variant("off", SpeedOptions.off(), cat, schema, args.image_size, args.batch_size, args.cycles, device),
                run_variant("on", SpeedOptions(), cat, schema, args.image_size, args.batch_size, args.cycles, device)]
    result = {
        "benchmark": "bench_gan_train", "machine": machine(), "device": str(device), "catalog": name,
        "config": {"model": "stargan", "image_size": args.image_size, "batch_size": args.batch_size,
                   "g_conv_dim": 64, "g_repeat_num": 6, "d_conv_dim": 64, "n_critic": 5,
                   "groups": groups, "c_dim": schema.num_values, "items": len(cat.items)},
        "variants": variants, "note": "timed after one warm-up iteration; CPU shared with other jobs (see load_avg)",
        "speedup_on_vs_off": round(variants[1]["images_per_s"] / variants[0]["images_per_s"], 3),
    }
    print(f"speed-up on/off: {result['speedup_on_vs_off']:.2f}x")
    write_result("bench_gan_train", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
