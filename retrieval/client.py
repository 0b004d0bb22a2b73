"""A small synchronous Python client for the RetrievalService (used by the CLI and the demo)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc

MiB = 1024 * 1024
TO_MODEL = "to_model"
TO_PRODUCT = "to_product"


def parse_modification(spec: str, strength: float | None = None) -> pb.Modification:
    """``"color=blue"`` -> an attribute edit (with ``strength`` when given); ``"to_model"`` ->
    product-to-model; ``"to_product"`` -> model-to-product. The server checks the strength's
    range (0..1)."""
    if spec in (TO_MODEL, "product_to_model"):
        return pb.Modification(product_to_model=pb.ProductToModel())
    if spec in (TO_PRODUCT, "model_to_product"):
        return pb.Modification(model_to_product=pb.ModelToProduct())
    group, sep, value = spec.partition("=")
    if not sep or not group.strip() or not value.strip():
        raise ValueError(f"modification {spec!r}: expected GROUP=VALUE (e.g. color=blue), {TO_MODEL!r} "
                         f"or {TO_PRODUCT!r}")
    edit = pb.AttributeEdit(group=group.strip(), value=value.strip())
    if strength is not None:
        edit.strength = strength
    return pb.Modification(edit=edit)


def parse_filters(specs: Iterable[str]) -> dict[str, list[str]]:
    """``["color=blue", "color=red", "length=knee"]`` -> ``{color: [blue, red], length: [knee]}``."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        group, sep, value = spec.partition("=")
        if not sep or not group or not value:
            raise ValueError(f"filter {spec!r}: expected GROUP=VALUE")
        out.setdefault(group, []).extend(v for v in value.split(",") if v)
    return out


class RetrievalClient:
    """Thin wrapper over the generated stub: builds requests, adds auth and deadlines."""

    def __init__(
        self,
        target: str,
        *,
        tls_ca: str | Path | None = None,
        tls: bool = False,
        admin_token: str | None = None,
        timeout: float = 60.0,
        max_message_bytes: int = 16 * MiB,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_ca or tls:
            root = Path(tls_ca).read_bytes() if tls_ca else None
            self.channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root), options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.RetrievalServiceStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.admin_token = admin_token
        self.timeout = timeout

    def __enter__(self) -> RetrievalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _admin_metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")] if self.admin_token else []

    @staticmethod
    def _query(image: bytes | str | Path | None, item_id: str | None) -> pb.Query:
        if (image is None) == (item_id is None):
            raise ValueError("give exactly one of image (bytes or a path) and item_id")
        if item_id is not None:
            return pb.Query(item_id=item_id)
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        return pb.Query(image=data)

    @staticmethod
    def _mods(modifications: Sequence[str | pb.Modification], strength: float | None = None) -> list[pb.Modification]:
        return [m if isinstance(m, pb.Modification) else parse_modification(m, strength) for m in modifications]

    def search(
        self,
        image: bytes | str | Path | None = None,
        *,
        item_id: str | None = None,
        modifications: Sequence[str | pb.Modification] = (),
        top_k: int = 10,
        filters: Mapping[str, Sequence[str]] | None = None,
        return_modified_image: bool = False,
        include_query_item: bool = False,
        strength: float | None = None,
        variants: int = 0,
        views: Sequence[str] = (),
        timeout: float | None = None,
    ) -> pb.SearchResponse:
        """``strength`` applies to every edit given as a string; ``variants`` > 1 asks a multi-modal
        generator for that many diverse edits, searched and fused (``modified_images`` holds them)."""
        req = pb.SearchRequest(
            query=self._query(image, item_id),
            modifications=self._mods(modifications, strength),
            top_k=top_k,
            filters={g: pb.FilterValues(values=list(v)) for g, v in (filters or {}).items()},
            return_modified_image=return_modified_image,
            include_query_item=include_query_item,
            variants=variants,
            views=list(views),
        )
        return self.stub.Search(req, timeout=timeout or self.timeout)

    def modify(
        self,
        image: bytes | str | Path | None = None,
        *,
        item_id: str | None = None,
        modifications: Sequence[str | pb.Modification] = (),
        strength: float | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """The modified image (PNG bytes)."""
        return self.modify_variants(image, item_id=item_id, modifications=modifications, strength=strength,
                                    timeout=timeout)[0]

    def modify_variants(
        self,
        image: bytes | str | Path | None = None,
        *,
        item_id: str | None = None,
        modifications: Sequence[str | pb.Modification] = (),
        strength: float | None = None,
        variants: int = 0,
        timeout: float | None = None,
    ) -> list[bytes]:
        """Every modified image (PNG bytes): ``variants`` of them from a multi-modal generator, else one."""
        req = pb.ModifyRequest(query=self._query(image, item_id), modifications=self._mods(modifications, strength),
                               variants=variants)
        resp = self.stub.Modify(req, timeout=timeout or self.timeout)
        return list(resp.images) or [resp.image]

    def get_item(self, item_id: str, include_image: bool = False) -> pb.GetItemResponse:
        return self.stub.GetItem(pb.GetItemRequest(id=item_id, include_image=include_image), timeout=self.timeout)

    def list_attributes(self) -> pb.ListAttributesResponse:
        return self.stub.ListAttributes(pb.ListAttributesRequest(), timeout=self.timeout)

    def add_items(self, catalog_dir: str | Path, ids: Sequence[str] = (),
                  max_skipped: float | None = None) -> pb.AddItemsResponse:
        """``max_skipped``: the largest share of skipped rows the server accepts (None: its default, 0.05)."""
        req = pb.AddItemsRequest(catalog_dir=str(catalog_dir), ids=list(ids))
        if max_skipped is not None:
            req.max_skipped = max_skipped
        return self.stub.AddItems(req, timeout=self.timeout, metadata=self._admin_metadata())

    def remove_items(self, ids: Sequence[str]) -> pb.RemoveItemsResponse:
        req = pb.RemoveItemsRequest(ids=list(ids))
        return self.stub.RemoveItems(req, timeout=self.timeout, metadata=self._admin_metadata())

    def reload(self, index_dir: str | Path | None = None) -> pb.ReloadResponse:
        req = pb.ReloadRequest(index_dir=str(index_dir or ""))
        return self.stub.Reload(req, timeout=self.timeout, metadata=self._admin_metadata())

    def health(self, service: str = "") -> str:
        """``SERVING``, ``NOT_SERVING`` or ``UNREACHABLE``."""
        try:
            resp = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        except grpc.RpcError:
            return "UNREACHABLE"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_until_serving(self, timeout: float = 120.0, poll: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health() == "SERVING":
                return
            time.sleep(poll)
        raise TimeoutError(f"server not SERVING after {timeout:.0f} s (last: {self.health()})")


def format_hits(resp: pb.SearchResponse) -> str:
    """The hits as a plain-text table, then the stage timings."""
    rows = [("rank", "id", "score", "view", "brand", "name", "attributes")]
    for h in resp.hits:
        attrs = " ".join(f"{g}={v}" for g, v in sorted(h.item.attributes.items()))
        rows.append((str(h.rank), h.id, f"{h.score:.4f}", h.view or "product", h.item.brand, h.item.name[:40], attrs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1] for r in rows]
    lines.insert(1, "-" * min(120, max(len(x) for x in lines)))
    lines.append("timings: " + ", ".join(f"{t.stage} {t.ms:.1f} ms" for t in resp.timings))
    return "\n".join(lines)
