"""Server configuration: one dataclass, read from a TOML or JSON file, overridden by flags.

A config file holds the same keys as :class:`ServerConfig` (``[batching]`` as a table);
an unknown key is an error that names it, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catalog.images import DEFAULT_LIMITS, ImageLimits

MiB = 1024 * 1024
ADMIN_TOKEN_ENV = "RETRIEVAL_ADMIN_TOKEN"


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names the key."""


@dataclass
class BatchingConfig:
    """Micro-batching of concurrent requests through the generators and the encoder.

    ``enabled=None`` means on, on every device; ``max_batch=None`` picks 16 for CUDA, where a
    batch of 16 costs little more than one image, and 4 for CPU, where per-image cost rises at
    large batches. Measured on 2 quiet CPU cores (benchmarks/bench_service.py): batches of 4
    give 1.6x the QPS of batching off at concurrency 32, while batches of 16 lost 30-40 %.
    A lone request waits at most ``max_wait_ms`` for partners.
    """

    enabled: bool | None = None
    max_batch: int | None = None
    max_wait_ms: float = 2.0

    def resolve(self, device: str) -> bool:
        return True if self.enabled is None else self.enabled

    def resolve_max_batch(self, device: str) -> int:
        if self.max_batch is not None:
            return self.max_batch
        return 16 if str(device).startswith("cuda") else 4


@dataclass
class ServerConfig:
    index_dir: str = ""
    generators: list[str] = field(default_factory=list)
    encoder: str | None = None  # encoder checkpoint; None: the ImageNet-pretrained default
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int | None = None  # HTTP/JSON API, page and /metrics on this port (same host); None: off
    max_message_bytes: int = 16 * MiB
    max_image_pixels: int = 16_000_000  # larger images are refused (decompression bombs)
    max_image_side: int = 8192  # longer sides are refused (a 100000x1 strip passes the pixel limit)
    max_aspect_ratio: float = 10.0  # long side / short side; photos are 1:1 to ~1:3
    default_top_k: int = 10
    max_top_k: int = 1000
    max_modifications: int = 8
    max_variants: int = 8  # SearchRequest/ModifyRequest.variants: diverse edits per request
    admin_token: str | None = None  # falls back to $RETRIEVAL_ADMIN_TOKEN
    tls_cert: str | None = None
    tls_key: str | None = None
    grace_s: float = 30.0  # how long in-flight requests may take to finish on SIGTERM
    drain_delay_s: float = 0.0  # NOT_SERVING but still answering, so balancers move away first
    io_threads: int = 2  # image decoding, FAISS search, SQLite, PNG encoding
    index_lock_timeout_s: float = 120.0  # AddItems/RemoveItems wait this long for another writer of the index
    torch_threads: int | None = None  # torch intra-op threads; None: torch's default
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def validate(self) -> ServerConfig:
        if not self.index_dir:
            raise ConfigError("index_dir is required (--index DIR)")
        if not Path(self.index_dir).is_dir():
            raise ConfigError(f"index_dir: no such folder {self.index_dir}")
        for ckpt in self.generators:
            if not Path(ckpt).is_file():
                raise ConfigError(f"generators: no such checkpoint file {ckpt}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"http_port must be 0..65535 (0 picks a free port), got {self.http_port}")
        if self.http_port is not None and self.http_port != 0 and self.http_port == self.port:
            raise ConfigError(f"http_port and port are both {self.port}; the two servers need two ports")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max_message_bytes must be at least 1024, got {self.max_message_bytes}")
        shared = DEFAULT_LIMITS  # what the encoder's and generators' own image code accepts
        for key, low, high in (("max_image_pixels", 1, shared.max_pixels), ("max_image_side", 1, shared.max_side),
                               ("max_aspect_ratio", 1, shared.max_aspect)):
            if not low <= getattr(self, key) <= high:
                raise ConfigError(f"{key} must be in {low}..{high:g} (the models' own image limit), "
                                  f"got {getattr(self, key)}")
        if not 1 <= self.default_top_k <= self.max_top_k:
            raise ConfigError(f"default_top_k must be in 1..max_top_k ({self.max_top_k}), got {self.default_top_k}")
        if self.max_variants < 1:
            raise ConfigError(f"max_variants must be >= 1, got {self.max_variants}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key must be given together")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}: no such file {path}")
        if (self.batching.max_batch is not None and self.batching.max_batch < 1) or self.batching.max_wait_ms < 0:
            raise ConfigError("batching.max_batch must be >= 1 and batching.max_wait_ms >= 0")
        if self.admin_token is None:
            self.admin_token = os.environ.get(ADMIN_TOKEN_ENV) or None
        return self

    def image_limits(self) -> ImageLimits:
        """The query-image limits, checked from the header before any pixel is decoded."""
        return ImageLimits(self.max_image_pixels, self.max_image_side, self.max_aspect_ratio)

    def public_dict(self) -> dict[str, Any]:
        """The config without the admin token, for logs."""
        d = dataclasses.asdict(self)
        d["admin_token"] = "***" if self.admin_token else None
        return d


def _from_mapping(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
        if key == "batching":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: 'batching' must be a table")
            value = _from_mapping(BatchingConfig, value, f"{where} [batching]")
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | Path) -> ServerConfig:
    """Read a ``.toml`` or ``.json`` config file (not yet validated: flags may complete it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings")
    return _from_mapping(ServerConfig, data, str(path))
