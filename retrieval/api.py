"""The API's RPCs over protobuf messages, shared by both transports (gRPC and HTTP/JSON).

Each RPC takes its request message, translates it into the pipeline's dataclasses
(:mod:`retrieval.service`), runs it and translates the result back. The gRPC servicer passes
its messages straight in; the HTTP layer parses JSON bodies (the standard proto3 JSON mapping)
into the very same messages. So a field added to ``retrieval.proto`` and mapped here shows on
both transports at once, with the same checks, limits and error messages.

Errors are :class:`retrieval.service.RetrievalError` subclasses whose message is safe to show;
:data:`STATUS` maps each to a gRPC status code and an HTTP status. Anything else becomes
INTERNAL / 500 with a generic message, the details going to the log only.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from retrieval.config import ServerConfig
from retrieval.service import (
    Aborted,
    AttributeEdit,
    FailedPrecondition,
    InvalidArgument,
    ModelFailure,
    Modification,
    NotFound,
    Pipeline,
    RetrievalError,
    SearchQuery,
    ToModel,
    ToProduct,
    store_size,
    store_version,
)

log = logging.getLogger(__name__)


# --- errors of the API layer (the pipeline's own are in retrieval.service) ------------------------
class Unauthenticated(RetrievalError):
    """An admin RPC without usable credentials."""


class PermissionDenied(RetrievalError):
    """An admin RPC with the wrong token, or admin RPCs are disabled."""


class Unavailable(RetrievalError):
    """The server is still loading, or is shutting down."""


class ResourceExhausted(RetrievalError):
    """A request (or response) over ``max_message_bytes``."""


class Internal(RetrievalError):
    """An unexpected failure; the message is generic, the traceback is in the log."""


@dataclass(frozen=True)
class Status:
    grpc_code: grpc.StatusCode
    http: int

    @property
    def name(self) -> str:
        return self.grpc_code.name


STATUS: dict[type[RetrievalError], Status] = {
    InvalidArgument: Status(grpc.StatusCode.INVALID_ARGUMENT, 400),
    NotFound: Status(grpc.StatusCode.NOT_FOUND, 404),
    FailedPrecondition: Status(grpc.StatusCode.FAILED_PRECONDITION, 409),
    # another writer (python -m indexing, another server) held the index folder's lock past the
    # server's index_lock_timeout_s: nothing changed, the same request may be retried later.
    # 409 as in the google.rpc mapping; the body's code (ABORTED, not FAILED_PRECONDITION) says
    # that a retry can succeed without changing anything.
    Aborted: Status(grpc.StatusCode.ABORTED, 409),
    Unauthenticated: Status(grpc.StatusCode.UNAUTHENTICATED, 401),
    PermissionDenied: Status(grpc.StatusCode.PERMISSION_DENIED, 403),
    ResourceExhausted: Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    ModelFailure: Status(grpc.StatusCode.INTERNAL, 500),
    Internal: Status(grpc.StatusCode.INTERNAL, 500),
    Unavailable: Status(grpc.StatusCode.UNAVAILABLE, 503),
}


def status_of(exc: RetrievalError) -> Status:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return STATUS[Internal]


MAX_STATUS_MESSAGE = 2000  # characters; a gRPC status message travels in a header (8 KiB by default)


def status_message(exc: Exception) -> str:
    """The error's message, cut so that it always fits in a status header, on both transports.

    Messages cap the client values they repeat (:func:`retrieval.service.shown`); this is the
    net under that: a longer gRPC message would turn the error into RESOURCE_EXHAUSTED, and the
    HTTP error body says the same as the gRPC status.
    """
    text = str(exc)
    return text if len(text) <= MAX_STATUS_MESSAGE else text[: MAX_STATUS_MESSAGE - 20] + "... (cut)"


def check_admin(authorization: str, token: str | None) -> None:
    """The admin bearer-token check, with the same messages on both transports.

    The header is checked before the server's token so that a client without credentials
    learns it must send some, and the comparison is constant-time.
    """
    if not authorization:
        raise Unauthenticated("admin RPC: send 'authorization: Bearer <admin token>'")
    if not token:
        raise PermissionDenied("admin RPCs are disabled: the server has no admin token")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthenticated("admin RPC: authorization must be 'Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise PermissionDenied("admin RPC: the token is not the admin token")


# --- proto <-> pipeline ----------------------------------------------------------------------
def modifications_from_proto(mods: Sequence[pb.Modification]) -> list[Modification]:
    out: list[Modification] = []
    for i, m in enumerate(mods):
        kind = m.WhichOneof("kind")
        if kind == "edit":
            # unset strength means the full edit; the pipeline checks the range (0..1)
            strength = float(m.edit.strength) if m.edit.HasField("strength") else 1.0
            out.append(AttributeEdit(m.edit.group, m.edit.value, strength))
        elif kind == "product_to_model":
            out.append(ToModel())
        elif kind == "model_to_product":
            out.append(ToProduct())
        else:
            raise InvalidArgument(f"modification {i} is empty: set edit, product_to_model or model_to_product")
    return out


def query_from_proto(q: pb.Query) -> tuple[bytes | None, str | None]:
    source = q.WhichOneof("source")
    if source == "image":
        return q.image, None
    if source == "item_id":
        if not q.item_id:
            raise InvalidArgument("query.item_id is empty")
        return None, q.item_id
    raise InvalidArgument("query is empty: set query.image (image bytes) or query.item_id")


def _list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
    return [str(v) for v in value]


def item_to_proto(item_id: str, row: dict[str, Any], groups: list[str]) -> pb.ItemMetadata:
    """A metadata row of the index store as the API's ItemMetadata."""
    labels = row.get("labels")
    if not isinstance(labels, dict):
        labels = {g: row.get(g) for g in groups}
    return pb.ItemMetadata(
        id=item_id,
        name=str(row.get("name") or ""),
        brand=str(row.get("brand") or ""),
        product_url=str(row.get("product_url") or ""),
        image_url=str(row.get("img_url") or ""),
        image_path=str(row.get("img_path") or ""),
        attributes={str(g): str(v) for g, v in labels.items() if v},
        tags=_list(row.get("attributes")),
        model_image_urls=_list(row.get("model_img_urls")),
    )


def timings_to_proto(timings: list[tuple[str, float]]) -> list[pb.StageTiming]:
    return [pb.StageTiming(stage=s, ms=ms) for s, ms in timings]


def search_query_from_proto(request: pb.SearchRequest) -> SearchQuery:
    image, item_id = query_from_proto(request.query)
    return SearchQuery(
        image=image,
        item_id=item_id,
        modifications=modifications_from_proto(request.modifications),
        top_k=request.top_k,
        filters={g: list(f.values) for g, f in request.filters.items()},
        return_modified_image=request.return_modified_image,
        include_query_item=request.include_query_item,
        variants=request.variants,
        views=list(request.views),
    )


# --- the RPCs ----------------------------------------------------------------------------------
async def search(p: Pipeline, request: pb.SearchRequest) -> pb.SearchResponse:
    res = await p.search(search_query_from_proto(request))
    groups = p.schema.names
    return pb.SearchResponse(
        hits=[
            pb.Hit(id=h.id, score=h.score, rank=i + 1, item=item_to_proto(h.id, h.item, groups),
                   view=h.view, matched_image_path=h.path)
            for i, h in enumerate(res.hits)
        ],
        modified_image=res.modified_png or b"",
        modified_images=res.modified_pngs,
        timings=timings_to_proto(res.timings),
        index_version=res.index_version,
    )


async def modify(p: Pipeline, request: pb.ModifyRequest) -> pb.ModifyResponse:
    image, item_id = query_from_proto(request.query)
    mods = modifications_from_proto(request.modifications)
    if not mods:
        raise InvalidArgument("modifications is empty: Modify needs at least one")
    pngs, timings = await p.modify(image, item_id, mods, request.variants)
    return pb.ModifyResponse(image=pngs[0], images=pngs if len(pngs) > 1 else [], timings=timings_to_proto(timings))


async def get_item(p: Pipeline, request: pb.GetItemRequest) -> pb.GetItemResponse:
    row, data = await p.get_item(request.id, request.include_image)
    return pb.GetItemResponse(item=item_to_proto(request.id, row, p.schema.names), image=data or b"")


async def list_attributes(p: Pipeline, request: pb.ListAttributesRequest) -> pb.ListAttributesResponse:
    caps = p.capabilities()
    return pb.ListAttributesResponse(
        groups=[pb.AttributeGroup(name=g, values=v, editable_values=e) for g, v, e in caps["groups"]],
        product_to_model=caps["product_to_model"],
        generators=[
            pb.GeneratorInfo(name=e.name, kind=e.kind, groups=list(e.groups), product_to_model=e.to_model,
                             multi_modal=e.multi_modal, continuous=e.continuous, model_to_product=e.to_product)
            for e in caps["generators"]
        ],
        index_size=caps["index_size"],
        index_version=caps["index_version"],
        model_to_product=caps["model_to_product"],
        views=caps["views"],
    )


async def sample_items(p: Pipeline, request: pb.SampleItemsRequest) -> pb.SampleItemsResponse:
    """Random items of the current index; a seed makes the sample repeatable for one index version."""
    count = p.check_top_k(request.count)
    store = p.store

    def draw() -> list[pb.ItemMetadata]:
        ids = sorted(store.ids())
        rng = random.Random(request.seed) if request.seed else random.Random()
        chosen = rng.sample(ids, min(count, len(ids)))
        rows = store.get_items(chosen)
        groups = store.schema.names
        return [item_to_proto(i, rows[i], groups) for i in chosen if i in rows]

    items = await asyncio.get_running_loop().run_in_executor(p.io_executor, draw)
    return pb.SampleItemsResponse(items=items, index_version=store_version(store))


async def add_items(p: Pipeline, request: pb.AddItemsRequest) -> pb.AddItemsResponse:
    if not request.catalog_dir:
        raise InvalidArgument("catalog_dir is empty")
    max_skipped = round(request.max_skipped, 6) if request.HasField("max_skipped") else None
    counts, skipped, store = await p.add_items(request.catalog_dir, list(request.ids), max_skipped)
    return pb.AddItemsResponse(
        added=counts["added"], replaced=counts["replaced"], index_size=store_size(store),
        index_version=store_version(store), skipped=skipped,
    )


async def remove_items(p: Pipeline, request: pb.RemoveItemsRequest) -> pb.RemoveItemsResponse:
    removed, missing, store = await p.remove_items(list(request.ids))
    return pb.RemoveItemsResponse(
        removed=removed, not_found=missing, index_size=store_size(store), index_version=store_version(store)
    )


async def reload(p: Pipeline, request: pb.ReloadRequest) -> pb.ReloadResponse:
    store = await p.reload(request.index_dir or None)
    return pb.ReloadResponse(index_size=store_size(store), index_version=store_version(store),
                             index_dir=str(p.index_dir))


@dataclass(frozen=True)
class Rpc:
    """One RPC: its request type, implementation and whether it needs the admin token."""

    name: str
    request: type[Message]
    handler: Callable[[Pipeline, Any], Awaitable[Message]]
    admin: bool = False


RPCS: dict[str, Rpc] = {r.name: r for r in (
    Rpc("Search", pb.SearchRequest, search),
    Rpc("Modify", pb.ModifyRequest, modify),
    Rpc("GetItem", pb.GetItemRequest, get_item),
    Rpc("ListAttributes", pb.ListAttributesRequest, list_attributes),
    Rpc("SampleItems", pb.SampleItemsRequest, sample_items),
    Rpc("AddItems", pb.AddItemsRequest, add_items, admin=True),
    Rpc("RemoveItems", pb.RemoveItemsRequest, remove_items, admin=True),
    Rpc("Reload", pb.ReloadRequest, reload, admin=True),
)}


class Api:
    """The RPCs of one server over its pipeline, for every transport; counts each call.

    ``pipeline`` is None until the index and models are loaded: every RPC answers
    UNAVAILABLE until then (health has its own service and answers from the start).
    """

    def __init__(self, config: ServerConfig, metrics: Any = None) -> None:
        self.config = config
        self.metrics = metrics
        self.pipeline: Pipeline | None = None

    def observe(self, transport: str, rpc: str, code: str, seconds: float, response: Message | None = None) -> None:
        if self.metrics is not None:
            self.metrics.observe_request(transport, rpc, code, seconds, getattr(response, "timings", None))

    async def call(self, transport: str, rpc: str, request: Message, authorization: str = "") -> Message:
        """Run one RPC; raises a RetrievalError (see :data:`STATUS`) on failure."""
        spec = RPCS[rpc]
        t0 = time.perf_counter()
        code, response = "OK", None
        if self.metrics is not None:
            self.metrics.in_flight.labels(transport).inc()
        try:
            if spec.admin:
                check_admin(authorization, self.config.admin_token)
            if self.pipeline is None:
                raise Unavailable("the server is still loading the index and models")
            response = await spec.handler(self.pipeline, request)
            return response
        except RetrievalError as exc:
            code = status_of(exc).name
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            log.exception("unexpected error in %s", rpc)
            raise Internal("internal error; the details are in the server log") from None
        finally:
            if self.metrics is not None:
                self.metrics.in_flight.labels(transport).dec()
            self.observe(transport, rpc, code, time.perf_counter() - t0, response)
