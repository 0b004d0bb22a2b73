"""Retrieval service: latency, throughput, service overhead and micro-batching, in one run.

    python -m benchmarks.bench_service [--items 10000] [--requests 96] [--device auto]

Set-up (all local, traffic to 127.0.0.1 only, a bounded number of requests):

* a rendered demo catalog (``--products``, default 200) embedded with the built-in encoder;
* a ``--items`` (10k) flat FAISS index: the real vectors of the demo catalog plus synthetic
  neighbours (each a real vector plus Gaussian noise, renormalised) under new ids. Only the
  index content is synthetic; every query runs the real path: JPEG decode, the demo StarGAN
  generator, the encoder, FAISS over all 10k vectors and SQLite metadata;
* the shipped demo generator checkpoints, the server started as ``python -m retrieval serve``.

Measured (the machine may be shared, so what is compared is measured interleaved):

1./2. at concurrency 1, round by round: the raw forwards of a 1-edit search, each on the thread
   the service runs it on (generator ``G(x, c)``; the StarGAN classifier that reads the query's
   own labels, part of every edit, reported apart; encoder ``embed_tensor``; FAISS search), then
   the same pipeline in-process (``Pipeline.search``, the server's configuration), over gRPC
   and over HTTP/JSON (``POST /v1/search``, image as base64, one keep-alive connection) to the
   same server process, 0/1/2 edits each;
3. the gRPC server with the device's default batching: p50/p99 latency and QPS for 0/1/2 edits
   at concurrency 1, 8 and 32;
4. micro-batching on vs off at concurrency 32: both servers up, blocks of requests alternated;
5. ratios: service overhead (gRPC p50 / in-process p50, two processes interleaved; goal
   <= 1.10), the gRPC layer alone (client latency / the server's own pipeline total of the same
   request), the same two for HTTP, 1-edit gRPC p50 / (generator + encoder + FAISS raw forward;
   goal <= 1.1), batching on / off QPS, failed requests (goal: none). The load average is
   recorded at the start and the end: on a shared machine, read the ratios.

Writes ``benchmarks/results/bench_service[_<device>].json`` with the machine described.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def machine(device: str) -> dict:
    return describe_machine(device=device)


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
    index_dir = work / "index"
    if (index_dir / "manifest.json").is_file() and IndexStore.open(index_dir).count == items:
        return cat_dir, index_dir  # a kept --work folder: the same catalog and index as last time
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


# --- 1./2./5. side by side at concurrency 1 ------------------------------------------------------------
class RawForwards:
    """The bare model calls of a 1-edit search, each timed on the thread the service uses: the
    editor's own ``edit`` of one photo (MaskEdit needs no classifier; its apply at the photo's
    resolution is part of it), the encoder's forward and the FAISS search."""

    def __init__(self, pipeline, image: bytes, edit: tuple[str, str]) -> None:
        from PIL import Image

        self.pipeline = pipeline
        self.ed = next(e for e in pipeline.editors if e.groups).editor
        im = Image.open(io.BytesIO(image)).convert("RGB")
        self.im = im
        self.change = {edit[0]: edit[1]}
        self.xe = pipeline.encoder.preprocess(im)[None]
        self.vec = pipeline.encoder.embed_tensor(self.xe).numpy()

    def _model(self, fn) -> float:
        import torch

        def run() -> float:
            with torch.inference_mode():
                t = time.perf_counter()
                fn()
                if self.pipeline.device.startswith("cuda"):
                    torch.cuda.synchronize()
                return (time.perf_counter() - t) * 1000

        return self.pipeline.model_executor.submit(run).result()

    def once(self) -> dict[str, float]:
        def faiss_search() -> float:
            t = time.perf_counter()
            self.pipeline.store.index.search(self.vec, 10)
            return (time.perf_counter() - t) * 1000

        return {
            "generator_ms": self._model(lambda: self.ed.edit([self.im], self.change)),
            "encoder_ms": self._model(lambda: self.pipeline.encoder.embed_tensor(self.xe)),
            "faiss_ms": self.pipeline.io_executor.submit(faiss_search).result(),
        }


class HttpClient:
    """``POST /v1/search`` on one keep-alive connection; the JSON body is built before timing,
    like the gRPC request message, and the response is parsed inside it, like gRPC's."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = self._connect()

    def _connect(self):
        import http.client

        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    @staticmethod
    def body(image: bytes, edits: list[tuple[str, str]]) -> bytes:
        import base64

        return json.dumps({"query": {"image": base64.b64encode(image).decode()}, "top_k": 10,
                           "modifications": [{"edit": {"group": g, "value": v}} for g, v in edits]}).encode()

    def search(self, body: bytes) -> dict:
        import http.client

        try:
            self.conn.request("POST", "/v1/search", body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed the idle keep-alive connection (uvicorn: after 5 s): a new one,
            # as every HTTP client library does
            self.conn.close()
            self.conn = self._connect()
            self.conn.request("POST", "/v1/search", body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
        return json.loads(data)

    def close(self) -> None:
        self.conn.close()


def side_by_side(pipeline, address: str, http_url: str, images: list[bytes], edits: list[tuple[str, str]],
                 reps: int) -> dict:
    """Raw forwards, the in-process pipeline, the gRPC service and its HTTP API, interleaved
    request by request, so that load from anything else on the machine hits all of them alike."""
    import grpc

    from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
    from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
    from retrieval.service import AttributeEdit, SearchQuery

    raw = RawForwards(pipeline, images[0], edits[0])
    loop = asyncio.new_event_loop()
    channel = grpc.insecure_channel(address)
    stub = pb_grpc.RetrievalServiceStub(channel)
    web = HttpClient(http_url)
    series: dict[str, list[float]] = {}
    for i in range(reps + 3):
        image = images[i % len(images)]
        sample = raw.once()
        for n in (0, 1, 2):
            q = SearchQuery(image=image, modifications=[AttributeEdit(*e) for e in edits[:n]], top_k=10)
            t = time.perf_counter()
            res = loop.run_until_complete(pipeline.search(q))
            sample[f"in_process_{n}_edits_ms"] = (time.perf_counter() - t) * 1000
            assert len(res.hits) == 10
            for stage, ms in res.timings:
                if stage in ("modify", "encode", "search"):
                    sample[f"in_process_{n}_edits_stage_{stage}_ms"] = ms
            req = pb.SearchRequest(query=pb.Query(image=image), top_k=10, modifications=[
                pb.Modification(edit=pb.AttributeEdit(group=g, value=v)) for g, v in edits[:n]])
            t = time.perf_counter()
            resp = stub.Search(req, timeout=120)
            sample[f"grpc_{n}_edits_ms"] = (time.perf_counter() - t) * 1000
            assert len(resp.hits) == 10
            # the same request as the server saw it: its pipeline total, and what gRPC added around it
            server_total = next(x.ms for x in resp.timings if x.stage == "total")
            sample[f"grpc_{n}_edits_server_total_ms"] = server_total
            sample[f"grpc_{n}_edits_transport_ms"] = sample[f"grpc_{n}_edits_ms"] - server_total
            for x in resp.timings:
                if x.stage in ("modify", "encode", "search"):
                    sample[f"grpc_{n}_edits_stage_{x.stage}_ms"] = x.ms
            body = HttpClient.body(image, edits[:n])
            t = time.perf_counter()
            reply = web.search(body)
            sample[f"http_{n}_edits_ms"] = (time.perf_counter() - t) * 1000
            assert len(reply["hits"]) == 10
            server_total = next(x["ms"] for x in reply["timings"] if x["stage"] == "total")
            sample[f"http_{n}_edits_server_total_ms"] = server_total
            sample[f"http_{n}_edits_transport_ms"] = sample[f"http_{n}_edits_ms"] - server_total
        if i >= 3:  # warm-up
            for k, v in sample.items():
                series.setdefault(k, []).append(v)
    channel.close()
    web.close()
    loop.run_until_complete(pipeline.close())
    loop.close()
    return {k: {"p50": pct(v, 50), "p99": pct(v, 99), "n": len(v)} for k, v in series.items()}


# --- 3./4. over gRPC ---------------------------------------------------------------------------------
def start_server(index_dir: Path, ckpts: list[Path], batching: str, device: str, log: Path,
                 torch_threads: int | None = None):
    """The server as its own process (gRPC and HTTP on free ports); returns (process, gRPC address, HTTP URL)."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval", "serve", "--index", str(index_dir), "--port", "0", "--http-port", "0",
             "--generators", *map(str, ckpts), "--batching", batching, "--device", device,
             *(["--torch-threads", str(torch_threads)] if torch_threads else [])],
            cwd=REPO, stdout=subprocess.PIPE, stderr=fh, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("LISTENING"):
            address, http_url = line.split()[1:3]
            break
    else:
        raise RuntimeError(f"server did not start: {log.read_text()}")
    from retrieval.client import RetrievalClient

    with RetrievalClient(address) as c:
        c.wait_until_serving(300)
    return proc, address, http_url


def stop_server(proc) -> None:
    import signal

    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(300)  # the server drains at once; a loaded machine can make the exit itself slow
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "qps": len(lat) / wall, "wall_s": wall,
            "errors": failures[:3]}


def latency_ratios(c1: dict) -> dict:
    """The ratios of the side-by-side measurement (step 5, without the load grid)."""
    raw_sum = c1["generator_ms"]["p50"] + c1["encoder_ms"]["p50"] + c1["faiss_ms"]["p50"]
    return {
        # goal <= 1.10: the service against the same pipeline in-process
        "service_over_in_process_p50": {
            f"{e}_edits": c1[f"grpc_{e}_edits_ms"]["p50"] / c1[f"in_process_{e}_edits_ms"]["p50"] for e in (0, 1, 2)},
        "grpc_layer_same_request_p50": {
            f"{e}_edits": c1[f"grpc_{e}_edits_ms"]["p50"] / c1[f"grpc_{e}_edits_server_total_ms"]["p50"]
            for e in (0, 1, 2)},
        "http_over_in_process_p50": {
            f"{e}_edits": c1[f"http_{e}_edits_ms"]["p50"] / c1[f"in_process_{e}_edits_ms"]["p50"] for e in (0, 1, 2)},
        "http_layer_same_request_p50": {
            f"{e}_edits": c1[f"http_{e}_edits_ms"]["p50"] / c1[f"http_{e}_edits_server_total_ms"]["p50"]
            for e in (0, 1, 2)},
        "http_over_grpc_p50": {
            f"{e}_edits": c1[f"http_{e}_edits_ms"]["p50"] / c1[f"grpc_{e}_edits_ms"]["p50"] for e in (0, 1, 2)},
        "raw_sum_ms": raw_sum,
        # goal <= 1.1: a 1-edit search against its bare forwards (generator + encoder + FAISS)
        "one_edit_grpc_p50_over_raw_sum": c1["grpc_1_edits_ms"]["p50"] / raw_sum,
        "one_edit_in_process_p50_over_raw_sum": c1["in_process_1_edits_ms"]["p50"] / raw_sum,
        "one_edit_http_p50_over_raw_sum": c1["http_1_edits_ms"]["p50"] / raw_sum,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_service", description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--products", type=int, default=200)
    p.add_argument("--requests", type=int, default=96, help="requests per (edits, concurrency) cell")
    p.add_argument("--reps", type=int, default=40, help="interleaved rounds of raw / in-process / gRPC timings")
    p.add_argument("--batching-rounds", type=int, default=2, help="alternated on/off blocks per edit count")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, help="keep catalog and index here (default: a temp folder)")
    p.add_argument("--generator", type=Path, help="attribute editor checkpoint (default: generators/demo_checkpoints/maskedit*.pt)")
    p.add_argument("--torch-threads", type=int, help="torch intra-op threads of the server and the in-process pipeline")
    p.add_argument("--out", type=Path)
    p.add_argument("--side-by-side-only", action="store_true",
                   help="only steps 1./2./5. (the latency goals); writes bench_service_<device>_latency.json")
    args = p.parse_args(argv)

    from retrieval.config import ServerConfig
    from retrieval.service import Pipeline, resolve_device

    device = resolve_device(args.device)
    ckpts = [args.generator] if args.generator else sorted((REPO / "generators" / "demo_checkpoints").glob("maskedit*.pt"))
    if not ckpts:
        raise SystemExit("no maskedit demo checkpoint in generators/demo_checkpoints")
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

    cfg = ServerConfig(index_dir=str(index_dir), generators=[str(c) for c in ckpts], device=device,
                       torch_threads=args.torch_threads).validate()
    result["setup"]["torch_threads"] = args.torch_threads
    default_on = cfg.batching.resolve(device)
    default_mode, other_mode = ("on", "off") if default_on else ("off", "on")
    procs = {}
    try:
        # the server with the device's default batching; the other setting joins for step 4
        procs[default_mode] = start_server(index_dir, ckpts, default_mode, device, args.work / f"server_{default_mode}.log",
                                           args.torch_threads)
        address, http_url = procs[default_mode][1:]

        # 1./2./5.: raw forwards, in-process pipeline and service, interleaved at concurrency 1;
        # the in-process pipeline has the server's configuration (batching included)
        pipeline = Pipeline.load(cfg)
        edits = pick_edits(pipeline.editors)
        result["setup"]["edits"] = [f"{g}={v}" for g, v in edits]
        gen = next(e for e in pipeline.editors if e.groups).editor
        model = gen.capabilities()["model"]
        result["setup"]["generator_arch"] = {"model": model, "image_size": gen.image_size,
                                             **gen.cfg.to_dict().get(model, {})}
        result["concurrency_1"] = side_by_side(pipeline, address, http_url, images, edits, args.reps)
        del pipeline
        print(json.dumps(result["concurrency_1"], indent=1), flush=True)

        if args.side_by_side_only:
            result["ratios"] = latency_ratios(result["concurrency_1"])
            result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
            out = args.out or RESULTS / f"bench_service_{'cuda' if device.startswith('cuda') else 'cpu'}_latency.json"
            from catalog import atomic_write_text

            atomic_write_text(out, json.dumps(result, indent=2) + "\n")
            print(json.dumps(result["ratios"], indent=2))
            print(f"wrote {out}")
            return 0
        # 3. the load grid on the default server
        cells = []
        for n_edits in (0, 1, 2):
            for conc in (1, 8, 32):
                cell = asyncio.run(load(address, images, edits, n_edits, conc, args.requests))
                print(f"batching {default_mode}: {cell}", flush=True)
                cells.append(cell)
        result["grpc"] = {"batching": default_mode, "cells": cells}

        # 4. batching on vs off at concurrency 32: both servers up, blocks alternated
        procs[other_mode] = start_server(index_dir, ckpts, other_mode, device, args.work / f"server_{other_mode}.log",
                                         args.torch_threads)
        blocks: dict[str, dict[int, list[dict]]] = {"on": {1: [], 2: []}, "off": {1: [], 2: []}}
        for _ in range(args.batching_rounds):
            for n_edits in (1, 2):
                for mode in ("off", "on"):
                    cell = asyncio.run(load(procs[mode][1], images, edits, n_edits, 32, args.requests))
                    blocks[mode][n_edits].append(cell)
                    print(f"batching {mode}: {cell}", flush=True)
    finally:
        for proc, *_ in procs.values():
            stop_server(proc)
    for mode in ("on", "off"):
        log = (args.work / f"server_{mode}.log").read_text()
        stats = [ln.split("model calls: ", 1)[1] for ln in log.splitlines() if "model calls: " in ln]
        result.setdefault("batch_stats", {})[mode] = stats[-1] if stats else None

    def merged(cs: list[dict]) -> dict:
        return {"requests": sum(c["requests"] for c in cs), "failed": sum(c["failed"] for c in cs),
                "qps": sum(c["requests"] - c["failed"] for c in cs) / sum(c["wall_s"] for c in cs),
                "p50_ms_median_of_blocks": statistics.median(c["p50_ms"] for c in cs),
                "p99_ms_max_of_blocks": max(c["p99_ms"] for c in cs)}

    result["batching_c32"] = {m: {f"{e}_edits": merged(blocks[m][e]) for e in (1, 2)} for m in blocks}

    # 5. ratios
    all_cells = cells + [c for m in blocks.values() for cs in m.values() for c in cs]
    result["ratios"] = {
        **latency_ratios(result["concurrency_1"]),
        "batching_on_over_off_qps_c32": {
            f"{e}_edits": result["batching_c32"]["on"][f"{e}_edits"]["qps"] / result["batching_c32"]["off"][f"{e}_edits"]["qps"]
            for e in (1, 2)},
        "failed_requests": sum(c["failed"] for c in all_cells),
        "requests": sum(c["requests"] for c in all_cells) + 2 * 3 * (args.reps + 3),
    }
    result["machine"]["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - t0, 1)
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
