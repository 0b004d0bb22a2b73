"""Reliability costs and bounds: server memory under hostile images, image hashing, commits.

    python -m benchmarks.bench_reliability [--products 24] [--hash-images 2000]

1. **Server memory under the image fuzz set** (``tests/retrieval/fuzz_images.py``, 70 images:
   extreme aspect ratios, every bit depth and mode, palettes, animations, corrupt headers).
   The server runs as its own process (``python -m retrieval serve``, 127.0.0.1) with the fuzz
   set's limits (4 MP, 8192 px, 10:1); each image is sent once as a search, sequentially. After
   each request the server's ``VmRSS`` and ``VmHWM`` (peak resident set, ``/proc/PID/status``)
   are read; reported: the status of each image, its latency and the peak growth over the
   warmed-up baseline. Then the same with the server's default limits (16 MP, 8192 px, 10:1)
   and the largest images they accept (4000x4000 RGBA, 8190x819, a 4000x4000 JPEG and
   16-bit 4000x4000).
   For scale, what the old pad-then-resize code would have allocated for the 375-byte
   100000x1 PNG is computed (not run): 100000² RGB pixels.
2. **Content hashing of catalog images** (what keys the embedding shards): ms per image over
   ``--images`` or the real myntra-a sample when present, else the demo catalog.
3. **A commit under the folder lock**: ``open_for_update`` + remove one item + save, on a
   10,000-item flat index (p50 over 20 commits).

Writes ``benchmarks/results/bench_reliability.json`` with the machine described and, per section,
the load average while it ran; ``--sections hashing,commit`` re-measures some and keeps the rest.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import MYNTRA, RESULTS, describe_machine, write_result

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Vm") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def start_server(index: Path, config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "retrieval", "serve", "--port", "0", "--config", str(config)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=fh, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING"):
        raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")
    return proc, line.split()[1]


def run_images(address: str, pid: int, images: list[tuple[str, bytes]], warmup: bytes) -> dict:
    import grpc

    from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
    from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
    from retrieval.client import RetrievalClient

    with RetrievalClient(address) as c:
        c.wait_until_serving(timeout=300)
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * MiB)])
    stub = pb_grpc.RetrievalServiceStub(channel)
    for _ in range(5):
        stub.Search(pb.SearchRequest(query=pb.Query(image=warmup), top_k=3), timeout=120)
    base = proc_status(pid)
    rows = []
    for name, data in images:
        t0 = time.perf_counter()
        try:
            stub.Search(pb.SearchRequest(query=pb.Query(image=data), top_k=3), timeout=120)
            code = "OK"
        except grpc.RpcError as err:
            code = err.code().name
        ms = (time.perf_counter() - t0) * 1000
        st = proc_status(pid)
        rows.append({"image": name, "bytes": len(data), "status": code, "ms": round(ms, 1),
                     "rss_mib": round(st["VmRSS"] / MiB, 1), "peak_growth_mib": round((st["VmHWM"] - base["VmHWM"]) / MiB, 1)})
    channel.close()
    end = proc_status(pid)
    return {"baseline_rss_mib": round(base["VmRSS"] / MiB, 1), "baseline_peak_mib": round(base["VmHWM"] / MiB, 1),
            "peak_growth_mib": round((end["VmHWM"] - base["VmHWM"]) / MiB, 1),
            "rss_after_mib": round(end["VmRSS"] / MiB, 1),
            "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
            "images": rows}


def _jpeg(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def largest_accepted() -> list[tuple[str, bytes]]:
    from PIL import Image

    def png(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    return [
        ("4000x4000 RGBA (16 MP)", png(Image.new("RGBA", (4000, 4000), (200, 10, 10, 128)))),
        ("8190x819 RGB (10:1, near the longest side)", png(Image.new("RGB", (8190, 819), (10, 10, 200)))),
        ("4000x4000 JPEG", _jpeg(Image.new("RGB", (4000, 4000), (30, 120, 30)))),
        ("4000x4000 16-bit grey", png(Image.frombytes("I;16", (4000, 4000),
                                                      np.full((4000, 4000), 30000, "<u2").tobytes()))),
        ("4001x4000 (over 16 MP)", png(Image.new("L", (4001, 4000)))),
    ]


def bench_memory(work: Path, products: int) -> dict:
    from catalog import load_catalog
    from crawler.demo.render import render_catalog
    from indexing.build import BuildConfig, build
    from indexing.encoder import Encoder
    from tests.retrieval.fuzz_images import LIMITS, fuzz_set

    cat_dir = render_catalog(work / "catalog", products=products, seed=0)
    index = work / "index"
    build(load_catalog(cat_dir), index, Encoder.load(None, "cpu"), BuildConfig(index="flat", num_workers=0,
                                                                                progress=False))
    cat = load_catalog(cat_dir)
    warmup = (cat_dir / cat.items[0].img_path).read_bytes()
    out = {}
    for name, limits, images in (
        ("fuzz_set", LIMITS, [(f.name, f.data) for f in fuzz_set()]),
        ("largest_at_default_limits", {}, largest_accepted()),
    ):
        config = work / f"{name}.toml"
        config.write_text(f'index_dir = "{index}"\nmax_message_bytes = {64 * MiB}\n'
                          + "".join(f"{k} = {v}\n" for k, v in limits.items()))
        proc, address = start_server(index, config, work / f"{name}.log")
        try:
            out[name] = {"limits": limits or "defaults", **run_images(address, proc.pid, images, warmup)}
        finally:
            proc.terminate()
            proc.wait(60)
        print(f"{name}: peak growth {out[name]['peak_growth_mib']} MiB, {out[name]['statuses']}", flush=True)
    out["old_pad_first_100000x1_gib"] = round(100_000**2 * 3 / 2**30, 1)
    return out


def bench_hashing(work: Path, limit: int, images: Path | None) -> dict:
    from indexing.embed import content_digest

    folder = images or MYNTRA / "images"
    if folder.is_dir():
        paths, source = sorted(p for p in folder.iterdir() if p.is_file())[:limit], str(folder)
    else:
        paths, source = sorted((work / "catalog" / "images").glob("*")), "demo catalog"
    for p in paths:  # warm the page cache: embedding reads them anyway
        p.read_bytes()
    t0 = time.perf_counter()
    for p in paths:
        content_digest(p)
    per_image_ms = (time.perf_counter() - t0) * 1000 / max(1, len(paths))
    out = {"source": source, "images": len(paths), "mean_bytes": int(np.mean([p.stat().st_size for p in paths])),
           "hash_ms_per_image": round(per_image_ms, 3)}
    throughput = RESULTS / "bench_index_throughput.json"
    if throughput.is_file():  # what embedding the same kind of image costs, measured by that benchmark
        raw = json.loads(throughput.read_text()).get("raw_forward_images_per_s")
        if raw:
            out["embed_ms_per_image"] = round(1000 / raw, 1)
            out["hash_share_of_embedding"] = round(per_image_ms / (1000 / raw), 5)
    return out


def bench_commit(work: Path) -> dict:
    from types import SimpleNamespace

    from catalog import Catalog, Item, Schema
    from indexing.faiss_index import choose_spec, train_index
    from indexing.store import IndexStore, new_manifest, new_metadata_db

    n, dim = 10_000, 1280
    x = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    schema = Schema({"color": ("red", "blue")})
    cat = Catalog(root=work, schema=schema, items=[Item(id=f"i{i}", img_path=f"{i}.jpg",
                                                        labels={"color": ("red", "blue")[i % 2]}) for i in range(n)])
    spec = choose_spec(n, dim, "flat")
    enc = SimpleNamespace(encoder_id="synthetic@0", checksum="0" * 64, source="bench", dim=dim,
                          config=SimpleNamespace(to_dict=dict))
    folder = work / "commit_index"
    store = IndexStore(folder, new_manifest(enc, spec, cat), train_index(spec, x), new_metadata_db())
    store.add_vectors(cat, x)
    store.save()
    times, opens = [], []
    for i in range(20):
        t0 = time.perf_counter()
        with IndexStore.open_for_update(folder) as s:
            t1 = time.perf_counter()
            s.remove([f"i{i}"])
        times.append((time.perf_counter() - t0) * 1000)
        opens.append((t1 - t0) * 1000)
    return {"items": n, "dim": dim, "index_mib": round((folder / IndexStore.open(folder).manifest["files"]["index"])
                                                         .stat().st_size / MiB, 1),
            "commit_p50_ms": round(statistics.median(times), 1), "open_with_checks_p50_ms": round(statistics.median(opens), 1)}


SECTIONS = ("memory", "hashing", "commit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=24)
    ap.add_argument("--hash-images", type=int, default=2000)
    ap.add_argument("--images", type=Path, help="folder of images to hash (default: the myntra-a sample)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="comma-separated subset to (re)measure; the others are kept from the last result file")
    ap.add_argument("--work", type=Path)
    args = ap.parse_args(argv)
    wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    path = RESULTS / "bench_reliability.json"
    result = json.loads(path.read_text()) if path.is_file() and set(wanted) != set(SECTIONS) else {}
    result["machine"] = describe_machine()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = {"memory": lambda: bench_memory(work, args.products),
               "hashing": lambda: bench_hashing(work, args.hash_images, args.images),
               "commit": lambda: bench_commit(work)}
        for name in wanted:  # each section says how busy the machine was while it ran
            start = [round(x, 2) for x in os.getloadavg()]
            section = run[name]()
            result[name] = {**section, "load_average": {"start": start, "end": [round(x, 2) for x in os.getloadavg()]}}
    result.pop("machine_after", None)
    write_result("bench_reliability", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
