"""Server lifecycle and failure handling: health transitions, graceful SIGTERM with requests in
flight, a failing model (INTERNAL, nothing leaked), TLS."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from retrieval.client import RetrievalClient
from retrieval.config import ServerConfig
from retrieval.server import SERVICE_NAME, RetrievalServer
from retrieval.service import Pipeline

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def query_png(demo_catalog_dir: Path) -> bytes:
    from catalog import load_catalog

    cat = load_catalog(demo_catalog_dir)
    buf = io.BytesIO()
    Image.open(cat.image_path(cat.items[0])).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _editable(address: str, tls_ca: Path | None = None) -> tuple[str, str]:
    with RetrievalClient(address, tls_ca=tls_ca) as c:
        g = next(g for g in c.list_attributes().groups if g.editable_values)
    return g.name, g.editable_values[0]


def _http(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_transitions_and_graceful_shutdown(
    retrieval_index: Path, generator_ckpts: list[Path], server_process, tmp_path: Path, query_png: bytes
) -> None:
    """gRPC health and /healthz: NOT_SERVING (503) while loading, SERVING, NOT_SERVING while
    draining with both transports still answering; requests in flight at SIGTERM finish; exit 0."""
    srv = server_process(["--index", str(retrieval_index), "--generators", *map(str, generator_ckpts),
                          "--http-port", "0", "--drain-delay", "2.0", "--grace", "30"], tmp_path / "server.log")
    healthz = srv.http_url + "healthz"
    try:
        # bound before torch and the models load (seconds): 503 until SERVING
        assert _http(healthz)[0] == 503
        channel = grpc.insecure_channel(srv.address)
        health = health_pb2_grpc.HealthStub(channel)
        statuses: list[int] = []
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=120)

        def follow() -> None:
            try:
                for resp in watch:
                    statuses.append(resp.status)
            except grpc.RpcError:
                pass

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        stub = pb_grpc.RetrievalServiceStub(channel)
        deadline = time.monotonic() + 120
        while SERVING not in statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        # the port is bound before the models load: NOT_SERVING first, SERVING once loaded
        assert statuses[:1] == [NOT_SERVING] and statuses[-1] == SERVING, statuses
        assert _http(healthz) == (200, b'{"status":"SERVING"}')

        group, value = _editable(srv.address)
        mods = [pb.Modification(edit=pb.AttributeEdit(group=group, value=value)),
                pb.Modification(edit=pb.AttributeEdit(group=group, value=value))]
        req = pb.SearchRequest(query=pb.Query(image=query_png), modifications=mods, top_k=5,
                               return_modified_image=True)
        http_body = json.dumps({"query": {"image": base64.b64encode(query_png).decode()}, "top_k": 5,
                                "modifications": [json_format.MessageToDict(m) for m in mods]}).encode()
        first_done = threading.Event()

        def one(i: int) -> int:
            if i % 4 == 3:  # every fourth over HTTP
                status, body = _http(srv.http_url + "v1/search", http_body)
                assert status == 200, body
                n = len(json.loads(body)["hits"])
            else:
                n = len(stub.Search(req, timeout=120).hits)
            first_done.set()
            return n

        with ThreadPoolExecutor(12) as pool:
            futs = [pool.submit(one, i) for i in range(12)]
            assert first_done.wait(120)
            srv.proc.send_signal(15)  # SIGTERM with requests still queued or running
            t_term = time.monotonic()
            while NOT_SERVING not in statuses[statuses.index(SERVING):] and time.monotonic() - t_term < 10:
                time.sleep(0.02)
            assert statuses[-1] == NOT_SERVING, statuses  # draining
            assert _http(healthz)[0] == 503
            # during the drain delay the server still answers new requests, on both transports
            assert len(stub.Search(pb.SearchRequest(query=pb.Query(image=query_png), top_k=2), timeout=30).hits) == 2
            assert _http(srv.http_url + "v1/attributes")[0] == 200
            results = [f.result() for f in futs]
        assert results == [5] * 12  # every in-flight request finished
        assert srv.proc.wait(60) == 0
        log = srv.log()
        assert "draining" in log and "stopped" in log
        with pytest.raises(grpc.RpcError) as err:
            stub.Search(req, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(OSError):
            _http(healthz)
        channel.close()
    finally:
        srv.stop()


# --- in-process server: model failure and TLS ------------------------------------------------------
class _BrokenEditor:
    """Wraps a real editor; every edit fails the way a GPU or a corrupt model fails."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def capabilities(self) -> dict:
        return self.inner.capabilities()

    def edit(self, images, changes, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access at /srv/secret/weights.pt:1234")

    to_model = edit


class InProcessServer:
    """A RetrievalServer on its own event-loop thread, on a real port."""

    def __init__(self, config: ServerConfig, factory) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> RetrievalServer:
            return RetrievalServer(config, factory)

        self.srv = self._run(make())
        self.port = self._run(self.srv.start())
        self._run(self.srv.load(), timeout=300)

    def _run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self._run(self.srv.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
         "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def broken_tls_server(retrieval_index: Path, generator_ckpts: list[Path], tls_files):
    cert, key = tls_files
    cfg = ServerConfig(index_dir=str(retrieval_index), generators=[str(p) for p in generator_ckpts], port=0,
                       http_port=0, tls_cert=str(cert), tls_key=str(key)).validate()

    def factory() -> Pipeline:
        p = Pipeline.load(cfg)
        for e in p.editors:
            e.editor = _BrokenEditor(e.editor)
        return p

    srv = InProcessServer(cfg, factory)
    yield f"localhost:{srv.port}", cert, f"https://localhost:{srv.srv.http_port}/"
    srv.close()


def test_model_failure_is_internal_without_internals(broken_tls_server, query_png: bytes, caplog) -> None:
    address, cert, _ = broken_tls_server
    group, value = _editable(address, cert)
    with RetrievalClient(address, tls_ca=cert) as c, caplog.at_level("ERROR"):
        with pytest.raises(grpc.RpcError) as err:
            c.search(query_png, modifications=[f"{group}={value}"])
        assert err.value.code() == grpc.StatusCode.INTERNAL
        details = err.value.details()
        assert "generator" in details and "secret" not in details and "CUDA" not in details
        assert any("secret" in r.getMessage() or "secret" in str(r.exc_info) for r in caplog.records)
        with pytest.raises(grpc.RpcError) as err:
            c.modify(query_png, modifications=[f"{group}={value}"])
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert len(c.search(query_png, top_k=3).hits) == 3  # still serving what does not need the generator


def test_tls_serves_tls_only(broken_tls_server, query_png: bytes) -> None:
    address, cert, _ = broken_tls_server
    with RetrievalClient(address, tls_ca=cert) as c:
        assert c.health() == "SERVING"
        assert c.list_attributes().index_size > 0
    with RetrievalClient(address) as plain:  # a plaintext client cannot talk to a TLS port
        with pytest.raises(grpc.RpcError) as err:
            plain.list_attributes()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_https_model_failure_is_500_without_internals(broken_tls_server, query_png: bytes, caplog) -> None:
    """The HTTP port serves HTTPS with the same certificate, and a model failure is a 500 with
    the same safe message as gRPC's INTERNAL."""
    import ssl

    address, cert, url = broken_tls_server
    group, value = _editable(address, cert)
    ctx = ssl.create_default_context(cafile=str(cert))
    body = json.dumps({"query": {"image": base64.b64encode(query_png).decode()},
                       "modifications": [{"edit": {"group": group, "value": value}}]}).encode()
    req = urllib.request.Request(url + "v1/search", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with caplog.at_level("ERROR"), pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60, context=ctx)
    assert err.value.code == 500
    error = json.loads(err.value.read())["error"]
    assert error["code"] == "INTERNAL" and "generator" in error["message"]
    assert "secret" not in error["message"] and "CUDA" not in error["message"]
    with urllib.request.urlopen(url + "healthz", timeout=30, context=ctx) as resp:
        assert resp.status == 200
    with pytest.raises(OSError):  # plain HTTP to the HTTPS port gets no answer
        urllib.request.urlopen(url.replace("https://", "http://") + "healthz", timeout=30)
