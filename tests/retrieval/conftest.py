"""Fixtures of the retrieval tests: a small real index, real generator checkpoints and a
real server process on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from web_helpers import WEB_MAX_MESSAGE, WEB_MAX_TOP_K

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789"


def build_small_index(catalog_dir: Path, index_dir: Path) -> Path:
    """A flat index of a catalog embedded with the built-in encoder."""
    from catalog import load_catalog
    from indexing.build import BuildConfig, build
    from indexing.encoder import Encoder

    build(load_catalog(catalog_dir), index_dir, Encoder.load(None, "cpu"),
          BuildConfig(index="flat", num_workers=0, progress=False))
    return index_dir


@pytest.fixture(scope="session")
def retrieval_index(demo_catalog_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_index(demo_catalog_dir, tmp_path_factory.mktemp("retrieval") / "index")


@pytest.fixture(scope="session")
def generator_ckpts() -> list[Path]:
    ckpts = sorted((ROOT / "generators" / "demo_checkpoints").glob("*.pt"))
    if not ckpts:
        pytest.fail("no generator checkpoints in generators/demo_checkpoints")
    return ckpts


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str
    log_path: Path
    http_url: str | None = None  # the HTTP base URL ("http://127.0.0.1:PORT/") when served with --http-port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(args: list[str], log_path: Path, timeout: float = 120) -> ServerProcess:
    """``python -m retrieval serve ARGS --port 0``; returns once the port is bound (not yet SERVING)."""
    with open(log_path, "w") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval", "serve", "--port", "0", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log_fh, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"},
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("LISTENING"):
            words = line.split()
            return ServerProcess(proc, words[1], log_path, words[2] if len(words) > 2 else None)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture(scope="session")
def server_process() -> Callable[..., ServerProcess]:
    """``server_process(args, log_path)``: start ``python -m retrieval serve`` (see :func:`start_server`)."""
    return start_server


@pytest.fixture(scope="session")
def web_server(retrieval_index: Path, generator_ckpts: list[Path], tmp_path_factory: pytest.TempPathFactory,
               admin_token: str):
    """One real server process with gRPC and HTTP (``--http-port 0``), shared by the HTTP and page tests.

    It never changes its index (admin tests here only reload), so the tests may share it.
    """
    from retrieval.client import RetrievalClient

    tmp = tmp_path_factory.mktemp("web_server")
    (tmp / "token").write_text(admin_token + "\n")
    cfg = tmp / "server.toml"
    cfg.write_text(
        f'index_dir = "{retrieval_index}"\n'
        f"max_message_bytes = {WEB_MAX_MESSAGE}\n"
        "max_image_pixels = 4000000\n"
        f"max_top_k = {WEB_MAX_TOP_K}\n"
    )
    srv = start_server(["--config", str(cfg), "--generators", *map(str, generator_ckpts),
                        "--admin-token-file", str(tmp / "token"), "--http-port", "0"], tmp / "server.log")
    assert srv.http_url and srv.http_url.startswith("http://127.0.0.1:"), srv.http_url
    with RetrievalClient(srv.address) as c:
        c.wait_until_serving(timeout=120)
    yield srv
    assert srv.stop() == 0, srv.log()
