"""Retrieval service: latency, throughput, service overhead and micro-batching, in one run.

    python -m benchmarks.bench_service [--items 10000] [--requests 96] [--device auto]

Set-up (all local, traffic to 127.0.0.1 only, a bounded number of requests):

* a rendered demo catalog (``--products``, default 200) embedded with the built-in encoder;
* a ``--items`` (10k) flat FAISS index: the real vectors of the demo catalog plus synthetic
  neighbours (each a real vector plus Gaussian noise, renormalised) under new ids. Only the
  index content is synthetic; every query runs the real path: JPEG decode, the demo StarGAN
  generator, the encoder, FAISS over all 10k vectors and SQLite metadata;
* the shipped demo generator checkpoints, the server started as ``python -m retrieval serve``.

Measured:

1. raw forwards, batch 1: generator (``G(x, c)``), the StarGAN classifier that reads the query's
   own labels (part of an edit, reported apart), encoder ``embed_tensor`` and the FAISS search;
2. the same pipeline called in-process (``Pipeline.search``), concurrency 1, 0/1/2 edits;
3. the gRPC server: p50/p99 latency and QPS for 0/1/2 edits at concurrency 1, 8 and 32;
4. micro-batching on vs off at concurrency 32 (one server run each);
5. ratios: service overhead (gRPC p50 / in-process p50 at concurrency 1) and
   1-edit Search p50 / (generator + encoder + FAISS raw forward).

Writes ``benchmarks/results/bench_service[_<device>].json`` with the machine described.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine(device: str) -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# --- set-up --------------------------------------------------------------------------------------
def build_bench_index(work: Path, products: int, items: int, device: str, seed: int = 0) -> tuple[Path, Path]:
    """Render the catalog, embed it for real, pad to ``items`` with synthetic neighbours."""
    from catalog import Catalog, load_catalog
    from crawler.demo.render import render_catalog
    from indexing.encoder import Encoder
    from indexing.faiss_index import choose_spec, train_index, training_sample
    from indexing.store import IndexStore, new_manifest, new_metadata_db

    cat_dir = work / "catalog"
    if not (cat_dir / "catalog.csv").is_file():
        render_catalog(cat_dir, products=products, seed=seed)
    cat = load_catalog(cat_dir)
    encoder = Encoder.load(None, device)
    from PIL import Image

    images = [Image.open(cat.image_path(it)).convert("RGB") for it in cat.items]
    # on a worker thread, like the server's model thread: on an overloaded 2-core machine we saw
    # torch's main-thread OpenMP team run 10-100x slower than a worker thread's
    with ThreadPoolExecutor(1) as ex:
        real = ex.submit(encoder.embed_images, images).result()
    rng = np.random.default_rng(seed)
    n = len(cat.items)
    copies = items - n
    src = np.arange(copies) % n
    noise = rng.normal(0, 0.35 / np.sqrt(real.shape[1]), size=(copies, real.shape[1])).astype(np.float32)
    synth = real[src] + noise
    synth /= np.linalg.norm(synth, axis=1, keepdims=True)
    vectors = np.concatenate([real, synth]).astype(np.float32)
    from dataclasses import replace

    all_items = list(cat.items) + [replace(cat.items[s], id=f"{cat.items[s].id}-syn{j}") for j, s in enumerate(src)]
    big = Catalog(root=cat.root, schema=cat.schema, items=all_items)
    index_dir = work / "index"
    spec = choose_spec(len(vectors), encoder.dim)
    store = IndexStore(index_dir, new_manifest(encoder, spec, big), train_index(spec, training_sample(vectors, spec)),
                       new_metadata_db(), encoder)
    store.add_vectors(big, vectors)
    store.save()
    return cat_dir, index_dir


def query_images(cat_dir: Path, count: int = 16) -> list[bytes]:
    from PIL import Image

    from catalog import load_catalog

    cat = load_catalog(cat_dir)
    out = []
    for it in cat.items[:count]:
        buf = io.BytesIO()
        Image.open(cat.image_path(it)).convert("RGB").save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def pick_edits(editors) -> list[tuple[str, str]]:
    """Two edits of different groups the first attribute generator can make."""
    e = next(e for e in editors if e.groups)
    groups = list(e.groups)
    return [(groups[0], e.groups[groups[0]][-1]), (groups[1 % len(groups)], e.groups[groups[1 % len(groups)]][0])]


# --- 1./2. in-process -----------------------------------------------------------------------------
def raw_forwards(pipeline, images: list[bytes], edit: tuple[str, str], reps: int) -> dict:
    import torch
    from PIL import Image

    from generators.datasets import group_sizes, one_hot, pil_to_uint8, to_square_rgb, uint8_to_float

    handle = next(e for e in pipeline.editors if e.groups)
    ed = handle.editor
    im = Image.open(io.BytesIO(images[0])).convert("RGB")
    x = uint8_to_float(pil_to_uint8(to_square_rgb(im, ed.image_size))[None]).to(ed.device)
    labels = torch.zeros(1, len(ed.schema.names), dtype=torch.long)
    labels[0, ed.schema.names.index(edit[0])] = ed.schema.index(*edit)
    c = one_hot(labels, group_sizes(ed.schema)).to(ed.device)
    xe = pipeline.encoder.preprocess(im)[None]
    vec = pipeline.encoder.embed_tensor(xe).numpy()
    store = pipeline.store

    def timed(fn) -> float:
        ts = []
        for _ in range(3):
            fn()
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            if str(ed.device).startswith("cuda"):
                torch.cuda.synchronize()
            ts.append((time.perf_counter() - t) * 1000)
        return statistics.median(ts)

    def on_model_thread(fn) -> float:
        """Time on the pipeline's own model thread, where the service runs these forwards."""

        def run() -> float:
            with torch.inference_mode():
                return timed(fn)

        return pipeline.model_executor.submit(run).result()

    gen = on_model_thread(lambda: ed.nets["G"](x, c))
    cls = on_model_thread(lambda: ed.nets["D"].classify(x))
    enc = on_model_thread(lambda: pipeline.encoder.embed_tensor(xe))
    faiss_ms = pipeline.io_executor.submit(timed, lambda: store.index.search(vec, 10)).result()
    return {"generator_ms": gen, "classifier_ms": cls, "encoder_ms": enc, "faiss_ms": faiss_ms,
            "sum_ms": gen + enc + faiss_ms, "sum_with_classifier_ms": gen + cls + enc + faiss_ms}


async def in_process(pipeline, images: list[bytes], edits: list[tuple[str, str]], reps: int) -> dict:
    from retrieval.service import AttributeEdit, SearchQuery

    out = {}
    for n_edits in (0, 1, 2):
        mods = [AttributeEdit(*e) for e in edits[:n_edits]]
        lat = []
        for i in range(reps + 3):
            t = time.perf_counter()
            res = await pipeline.search(SearchQuery(image=images[i % len(images)], modifications=mods, top_k=10))
            if i >= 3:
                lat.append((time.perf_counter() - t) * 1000)
            assert len(res.hits) == 10
        out[f"{n_edits}_edits"] = {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "n": len(lat)}
    return out


# --- 3./4. over gRPC ---------------------------------------------------------------------------------
def start_server(index_dir: Path, ckpts: list[Path], batching: str, device: str, log: Path):
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval", "serve", "--index", str(index_dir), "--port", "0",
             "--generators", *map(str, ckpts), "--batching", batching, "--device", device],
            cwd=REPO, stdout=subprocess.PIPE, stderr=fh, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("LISTENING"):
            address = line.split()[1]
            break
    else:
        raise RuntimeError(f"server did not start: {log.read_text()}")
    from retrieval.client import RetrievalClient

    with RetrievalClient(address) as c:
        c.wait_until_serving(300)
    return proc, address


def stop_server(proc) -> None:
    import signal

    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


async def load(address: str, images: list[bytes], edits: list[tuple[str, str]], n_edits: int,
               concurrency: int, requests: int) -> dict:
    import grpc

    from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
    from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

    mods = [pb.Modification(edit=pb.AttributeEdit(group=g, value=v)) for g, v in edits[:n_edits]]
    reqs = [pb.SearchRequest(query=pb.Query(image=im), modifications=mods, top_k=10) for im in images]
    lat: list[float] = []
    failures: list[str] = []
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pb_grpc.RetrievalServiceStub(ch)
        for r in reqs[:2]:  # warm-up
            await stub.Search(r, timeout=120)
        counter = iter(range(requests))

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                try:
                    resp = await stub.Search(reqs[i % len(reqs)], timeout=120)
                    if len(resp.hits) != 10:
                        failures.append(f"{len(resp.hits)} hits")
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"edits": n_edits, "concurrency": concurrency, "requests": requests, "failed": len(failures),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "qps": len(lat) / wall, "errors": failures[:3]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_service", description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--products", type=int, default=200)
    p.add_argument("--requests", type=int, default=96, help="requests per (edits, concurrency) cell")
    p.add_argument("--reps", type=int, default=30, help="repetitions of in-process and raw timings")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, help="keep catalog and index here (default: a temp folder)")
    p.add_argument("--generator", type=Path, help="StarGAN checkpoint (default: generators/demo_checkpoints/stargan*.pt)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    from retrieval.config import ServerConfig
    from retrieval.service import Pipeline, resolve_device

    device = resolve_device(args.device)
    ckpts = [args.generator] if args.generator else sorted((REPO / "generators" / "demo_checkpoints").glob("stargan*.pt"))
    if not ckpts:
        raise SystemExit("no StarGAN demo checkpoint in generators/demo_checkpoints")
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_service_")
        args.work = Path(tmp.name)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cat_dir, index_dir = build_bench_index(args.work, args.products, args.items, device)
    print(f"index of {args.items} items ready in {time.perf_counter() - t0:.0f} s", flush=True)
    images = query_images(cat_dir)
    result: dict = {"machine": machine(device), "setup": {
        "items": args.items, "real_items": args.products, "index": "flat (exact inner product)",
        "synthetic": "vectors of items beyond the rendered catalog are real vectors + N(0, 0.35/sqrt(D)) noise",
        "generator": [c.name for c in ckpts], "requests_per_cell": args.requests, "top_k": 10}}

    # 1./2. in-process (nothing else running)
    cfg = ServerConfig(index_dir=str(index_dir), generators=[str(c) for c in ckpts], device=device).validate()
    pipeline = Pipeline.load(cfg, batching=False)
    edits = pick_edits(pipeline.editors)
    result["setup"]["edits"] = [f"{g}={v}" for g, v in edits]
    result["raw_forward_ms"] = raw_forwards(pipeline, images, edits[0], args.reps)
    result["in_process"] = asyncio.run(in_process(pipeline, images, edits, args.reps))
    asyncio.run(pipeline.close())
    print(json.dumps({"raw": result["raw_forward_ms"], "in_process": result["in_process"]}, indent=1), flush=True)

    # 3. the server with the device's default batching, then 4. the other setting at concurrency 32
    default_on = cfg.batching.resolve(device)
    runs = {}
    for mode in (("on", "off") if default_on else ("off", "on")):
        proc, address = start_server(index_dir, ckpts, mode, device, args.work / f"server_{mode}.log")
        try:
            cells = []
            grid = [(e, c) for e in (0, 1, 2) for c in (1, 8, 32)] if mode == ("on" if default_on else "off") \
                else [(1, 32), (2, 32)]
            for n_edits, conc in grid:
                cell = asyncio.run(load(address, images, edits, n_edits, conc, args.requests))
                print(f"batching {mode}: {cell}", flush=True)
                cells.append(cell)
            runs[mode] = cells
        finally:
            stop_server(proc)
    result["grpc"] = {"batching_default": "on" if default_on else "off", "cells": runs["on" if default_on else "off"]}
    result["batching"] = {m: [c for c in runs[m] if c["concurrency"] == 32 and c["edits"] in (1, 2)] for m in runs}

    # 5. ratios
    default = result["grpc"]["cells"]
    c1 = {c["edits"]: c for c in default if c["concurrency"] == 1}
    raw = result["raw_forward_ms"]
    result["ratios"] = {
        "service_overhead": {f"{e}_edits": c1[e]["p50_ms"] / result["in_process"][f"{e}_edits"]["p50_ms"] - 1
                             for e in (0, 1, 2)},
        "one_edit_p50_over_raw_sum": c1[1]["p50_ms"] / raw["sum_ms"],
        "one_edit_p50_over_raw_sum_with_classifier": c1[1]["p50_ms"] / raw["sum_with_classifier_ms"],
        "batching_on_over_off_qps_c32": {
            f"{e}_edits": next(c["qps"] for c in runs["on"] if c["concurrency"] == 32 and c["edits"] == e)
            / next(c["qps"] for c in runs["off"] if c["concurrency"] == 32 and c["edits"] == e)
            for e in (1, 2)},
        "failed_requests": sum(c["failed"] for cells in runs.values() for c in cells),
    }
    out = args.out or RESULTS / f"bench_service_{'cuda' if device.startswith('cuda') else 'cpu'}.json"
    from catalog import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
