"""The gRPC server (grpc.aio): the RetrievalService, health, reflection, auth, TLS, shutdown.

Start-up order: the port is bound and the health service answers NOT_SERVING at once; the
index and models load on a thread; only then does health turn SERVING (and RPCs other than
health answer UNAVAILABLE until then). On SIGTERM/SIGINT health turns NOT_SERVING, the
server keeps answering for ``drain_delay_s`` (so load balancers move away first), then stops
taking new RPCs and gives in-flight ones up to ``grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
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
    store_size,
    store_version,
)

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
ADMIN_METHODS = ("AddItems", "RemoveItems", "Reload")
STATUS_OF = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Aborted: grpc.StatusCode.ABORTED,
    ModelFailure: grpc.StatusCode.INTERNAL,
}
MAX_STATUS_MESSAGE = 2000  # characters; a status message travels in a header (8 KiB by default)


def status_message(exc: Exception) -> str:
    """The error's message, cut so that it always fits in the status header.

    Messages cap the client values they repeat (:func:`retrieval.service.shown`); this is the
    net under that: a longer message would turn the error into RESOURCE_EXHAUSTED.
    """
    text = str(exc)
    return text if len(text) <= MAX_STATUS_MESSAGE else text[: MAX_STATUS_MESSAGE - 20] + "... (cut)"


# --- proto <-> pipeline ----------------------------------------------------------------------
def modifications_from_proto(mods: Any) -> list[Modification]:
    out: list[Modification] = []
    for i, m in enumerate(mods):
        kind = m.WhichOneof("kind")
        if kind == "edit":
            out.append(AttributeEdit(m.edit.group, m.edit.value))
        elif kind == "product_to_model":
            out.append(ToModel())
        else:
            raise InvalidArgument(f"modification {i} is empty: set edit or product_to_model")
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
        import json

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


# --- health ----------------------------------------------------------------------------------------
class HealthServicer(health_pb2_grpc.HealthServicer):
    """The standard health service, whose Watch streams end once the server drains.

    grpc's own asyncio servicer keeps every Watch stream open forever, so a single watching
    load balancer would hold a graceful shutdown for the whole grace period. Here a watcher
    gets NOT_SERVING and then the end of its stream, and the shutdown waits only for real work.
    """

    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._draining = False

    async def set(self, service: str, status: int) -> None:
        async with self._changed:
            if not self._draining:
                self._status[service] = status
                self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        async with self._changed:
            self._draining = True
            for service in self._status:
                self._status[service] = health_pb2.HealthCheckResponse.NOT_SERVING
            self._changed.notify_all()

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext):
        unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        last = None
        while True:
            async with self._changed:  # not held while writing: a slow watcher blocks nobody
                while self._status.get(request.service, unknown) == last and not self._draining:
                    await self._changed.wait()
                status, draining = self._status.get(request.service, unknown), self._draining
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if draining:
                return


# --- the servicer ----------------------------------------------------------------------------
class RetrievalServicer(pb_grpc.RetrievalServiceServicer):
    """Maps RPCs onto :class:`Pipeline` and its errors onto status codes."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.pipeline: Pipeline | None = None

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[[Pipeline], Awaitable[Any]]) -> Any:
        if self.pipeline is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is still loading the index and models")
        try:
            return await fn(self.pipeline)
        except RetrievalError as exc:
            await context.abort(STATUS_OF.get(type(exc), grpc.StatusCode.INTERNAL), status_message(exc))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            log.exception("unexpected error")
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the details are in the server log")

    async def _require_admin(self, context: grpc.aio.ServicerContext) -> None:
        token = self.config.admin_token
        header = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not header:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "admin RPC: send metadata 'authorization: Bearer <admin token>'"
            )
        if not token:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "admin RPCs are disabled: the server has no admin token")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin RPC: authorization must be 'Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "admin RPC: the token is not the admin token")

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        async def run(p: Pipeline) -> pb.SearchResponse:
            image, item_id = query_from_proto(request.query)
            q = SearchQuery(
                image=image,
                item_id=item_id,
                modifications=modifications_from_proto(request.modifications),
                top_k=request.top_k,
                filters={g: list(f.values) for g, f in request.filters.items()},
                return_modified_image=request.return_modified_image,
                include_query_item=request.include_query_item,
            )
            res = await p.search(q)
            groups = p.schema.names
            return pb.SearchResponse(
                hits=[
                    pb.Hit(id=h.id, score=h.score, rank=i + 1, item=item_to_proto(h.id, h.item, groups))
                    for i, h in enumerate(res.hits)
                ],
                modified_image=res.modified_png or b"",
                timings=timings_to_proto(res.timings),
                index_version=res.index_version,
            )

        return await self._call(context, run)

    async def Modify(self, request: pb.ModifyRequest, context: grpc.aio.ServicerContext) -> pb.ModifyResponse:
        async def run(p: Pipeline) -> pb.ModifyResponse:
            image, item_id = query_from_proto(request.query)
            mods = modifications_from_proto(request.modifications)
            if not mods:
                raise InvalidArgument("modifications is empty: Modify needs at least one")
            png, timings = await p.modify(image, item_id, mods)
            return pb.ModifyResponse(image=png, timings=timings_to_proto(timings))

        return await self._call(context, run)

    async def GetItem(self, request: pb.GetItemRequest, context: grpc.aio.ServicerContext) -> pb.GetItemResponse:
        async def run(p: Pipeline) -> pb.GetItemResponse:
            row, data = await p.get_item(request.id, request.include_image)
            return pb.GetItemResponse(item=item_to_proto(request.id, row, p.schema.names), image=data or b"")

        return await self._call(context, run)

    async def ListAttributes(
        self, request: pb.ListAttributesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAttributesResponse:
        async def run(p: Pipeline) -> pb.ListAttributesResponse:
            caps = p.capabilities()
            return pb.ListAttributesResponse(
                groups=[pb.AttributeGroup(name=g, values=v, editable_values=e) for g, v, e in caps["groups"]],
                product_to_model=caps["product_to_model"],
                generators=[
                    pb.GeneratorInfo(name=e.name, kind=e.kind, groups=list(e.groups), product_to_model=e.to_model)
                    for e in caps["generators"]
                ],
                index_size=caps["index_size"],
                index_version=caps["index_version"],
            )

        return await self._call(context, run)

    async def AddItems(self, request: pb.AddItemsRequest, context: grpc.aio.ServicerContext) -> pb.AddItemsResponse:
        await self._require_admin(context)

        async def run(p: Pipeline) -> pb.AddItemsResponse:
            if not request.catalog_dir:
                raise InvalidArgument("catalog_dir is empty")
            counts, skipped, store = await p.add_items(request.catalog_dir, list(request.ids))
            return pb.AddItemsResponse(
                added=counts["added"], replaced=counts["replaced"], index_size=store_size(store),
                index_version=store_version(store), skipped=skipped,
            )

        return await self._call(context, run)

    async def RemoveItems(
        self, request: pb.RemoveItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveItemsResponse:
        await self._require_admin(context)

        async def run(p: Pipeline) -> pb.RemoveItemsResponse:
            removed, missing, store = await p.remove_items(list(request.ids))
            return pb.RemoveItemsResponse(
                removed=removed, not_found=missing, index_size=store_size(store), index_version=store_version(store)
            )

        return await self._call(context, run)

    async def Reload(self, request: pb.ReloadRequest, context: grpc.aio.ServicerContext) -> pb.ReloadResponse:
        await self._require_admin(context)

        async def run(p: Pipeline) -> pb.ReloadResponse:
            store = await p.reload(request.index_dir or None)
            return pb.ReloadResponse(
                index_size=store_size(store), index_version=store_version(store), index_dir=str(p.index_dir)
            )

        return await self._call(context, run)


# --- the server ------------------------------------------------------------------------------
class RetrievalServer:
    """Owns the grpc.aio server, the health state and the pipeline's lifetime."""

    def __init__(self, config: ServerConfig, pipeline_factory: Callable[[], Pipeline] | None = None) -> None:
        self.config = config
        self.servicer = RetrievalServicer(config)
        self.health = HealthServicer()
        self.pipeline_factory = pipeline_factory or (lambda: Pipeline.load(config))
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING); return the bound port."""
        c = self.config
        options = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.aio.server(options=options)
        pb_grpc.add_RetrievalServiceServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{c.host}:{c.port}"
        if c.tls_cert:
            creds = grpc.ssl_server_credentials([(Path(c.tls_key).read_bytes(), Path(c.tls_cert).read_bytes())])
            port = server.add_secure_port(address, creds)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self.server, self.port = server, port
        return port

    async def load(self) -> None:
        """Load index and models off the event loop, then turn SERVING."""
        loop = asyncio.get_running_loop()
        pipeline = await loop.run_in_executor(None, self.pipeline_factory)
        self.servicer.pipeline = pipeline
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("SERVING (batching %s, device %s)", "on" if pipeline.batching else "off", pipeline.device)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait_and_stop(self) -> None:
        await self._stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        """Drain: NOT_SERVING, keep answering for drain_delay_s, then finish in-flight RPCs."""
        await self.health.enter_graceful_shutdown()
        log.info("draining: NOT_SERVING; stopping in %.1f s", self.config.drain_delay_s)
        if self.config.drain_delay_s > 0:
            await asyncio.sleep(self.config.drain_delay_s)
        if self.server is not None:
            await self.server.stop(self.config.grace_s)
        if self.servicer.pipeline is not None:
            await self.servicer.pipeline.close()
        log.info("stopped")


async def serve(config: ServerConfig, ready_line: bool = True) -> None:
    """Run until SIGTERM or SIGINT; print ``LISTENING host:port`` once bound."""
    srv = RetrievalServer(config)
    port = await srv.start()
    if ready_line:
        print(f"LISTENING {config.host}:{port}", flush=True)
    log.info("listening on %s:%d (%s)", config.host, port, "TLS" if config.tls_cert else "plaintext")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, srv.request_stop)
    loader = asyncio.create_task(srv.load())
    stopper = asyncio.create_task(srv.wait_and_stop())
    done, _ = await asyncio.wait({loader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if loader in done and loader.exception() is not None:
        log.error("loading failed: %s", loader.exception())
        srv.request_stop()
        await stopper
        raise SystemExit(f"cannot start: {loader.exception()}")
    await stopper
    if not loader.done():
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loader


def run_server(config: ServerConfig) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(config))
    return 0
