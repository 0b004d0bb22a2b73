"""The gRPC server (grpc.aio): the RetrievalService, health, reflection, auth, TLS, shutdown;
with ``http_port`` also the HTTP server (:mod:`retrieval.web`) on the same event loop.

The servicer is a thin gRPC face of :class:`retrieval.api.Api`, which holds the RPCs for both
transports. Start-up order: the ports are bound and the health service answers NOT_SERVING at
once; the index and models load on a thread; only then does health turn SERVING (and RPCs
other than health answer UNAVAILABLE until then). On SIGTERM/SIGINT health turns NOT_SERVING,
both transports keep answering for ``drain_delay_s`` (so load balancers move away first), then
stop taking new requests and give in-flight ones up to ``grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from retrieval.api import RPCS, Api, status_of
from retrieval.config import ServerConfig
from retrieval.metrics import Metrics
from retrieval.service import Pipeline, RetrievalError

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
ADMIN_METHODS = tuple(name for name, rpc in RPCS.items() if rpc.admin)


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

    def status(self, service: str = "") -> int | None:
        """The current status of ``service`` (None: unknown service); the HTTP /healthz reads it."""
        return self._status.get(service)

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
    """The gRPC face of :class:`retrieval.api.Api`: messages pass straight through, errors
    become status codes."""

    def __init__(self, config: ServerConfig, api: Api | None = None) -> None:
        self.config = config
        self.api = api or Api(config)

    @property
    def pipeline(self) -> Pipeline | None:
        return self.api.pipeline

    @pipeline.setter
    def pipeline(self, value: Pipeline | None) -> None:
        self.api.pipeline = value

    async def _call(self, rpc: str, request: Any, context: grpc.aio.ServicerContext) -> Any:
        authorization = ""
        if RPCS[rpc].admin:
            authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        try:
            return await self.api.call("grpc", rpc, request, authorization)
        except RetrievalError as exc:
            await context.abort(status_of(exc).grpc_code, str(exc))

    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        return await self._call("Search", request, context)

    async def Modify(self, request: pb.ModifyRequest, context: grpc.aio.ServicerContext) -> pb.ModifyResponse:
        return await self._call("Modify", request, context)

    async def GetItem(self, request: pb.GetItemRequest, context: grpc.aio.ServicerContext) -> pb.GetItemResponse:
        return await self._call("GetItem", request, context)

    async def ListAttributes(
        self, request: pb.ListAttributesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAttributesResponse:
        return await self._call("ListAttributes", request, context)

    async def SampleItems(
        self, request: pb.SampleItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SampleItemsResponse:
        return await self._call("SampleItems", request, context)

    async def AddItems(self, request: pb.AddItemsRequest, context: grpc.aio.ServicerContext) -> pb.AddItemsResponse:
        return await self._call("AddItems", request, context)

    async def RemoveItems(
        self, request: pb.RemoveItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveItemsResponse:
        return await self._call("RemoveItems", request, context)

    async def Reload(self, request: pb.ReloadRequest, context: grpc.aio.ServicerContext) -> pb.ReloadResponse:
        return await self._call("Reload", request, context)


# --- the server ------------------------------------------------------------------------------
class RetrievalServer:
    """Owns the grpc.aio server, the optional HTTP server, the health state, the metrics and the
    pipeline's lifetime. Both transports answer from the same :class:`Api` and pipeline."""

    def __init__(self, config: ServerConfig, pipeline_factory: Callable[[], Pipeline] | None = None) -> None:
        self.config = config
        self.health = HealthServicer()
        self.metrics = Metrics(pipeline=lambda: self.api.pipeline, serving=self.serving)
        self.api = Api(config, self.metrics)
        self.servicer = RetrievalServicer(config, self.api)
        self.pipeline_factory = pipeline_factory or (lambda: Pipeline.load(config))
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None
        self.http: Any = None  # retrieval.web.HttpServer when config.http_port is set
        self.http_port: int | None = None
        self._stopping = asyncio.Event()

    def serving(self) -> bool:
        return self.health.status(SERVICE_NAME) == health_pb2.HealthCheckResponse.SERVING

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING); return the bound gRPC port.

        With ``http_port`` set, the HTTP server is bound too (its port in ``self.http_port``).
        """
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
        if c.http_port is not None:
            from retrieval.web import HttpServer

            self.http = HttpServer(c, self.api, self.metrics, self.serving)
            self.http_port = await self.http.start()
        return port

    async def load(self) -> None:
        """Load index and models off the event loop, then turn SERVING."""
        loop = asyncio.get_running_loop()
        pipeline = await loop.run_in_executor(None, self.pipeline_factory)
        self.api.pipeline = pipeline
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
        stops = []
        if self.server is not None:
            stops.append(self.server.stop(self.config.grace_s))
        if self.http is not None:
            stops.append(self.http.stop())
        await asyncio.gather(*stops)
        if self.api.pipeline is not None:
            await self.api.pipeline.close()
        log.info("stopped")


def listening_line(config: ServerConfig, srv: RetrievalServer) -> str:
    """``LISTENING host:port`` (gRPC), then the page's URL when HTTP is on: what scripts wait for."""
    line = f"LISTENING {config.host}:{srv.port}"
    if srv.http_port is not None:
        line += f" {'https' if config.tls_cert else 'http'}://{config.host}:{srv.http_port}/"
    return line


async def serve(config: ServerConfig, ready_line: bool = True) -> None:
    """Run until SIGTERM or SIGINT; print :func:`listening_line` once bound."""
    srv = RetrievalServer(config)
    port = await srv.start()
    if ready_line:
        print(listening_line(config, srv), flush=True)
    log.info("listening on %s:%d (%s)%s", config.host, port, "TLS" if config.tls_cert else "plaintext",
             f", HTTP on port {srv.http_port}" if srv.http_port is not None else "")
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
