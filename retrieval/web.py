"""HTTP next to gRPC: the JSON API under ``/v1/``, the shopper's page at ``/``, ``/healthz``,
``/metrics`` and the OpenAPI page at ``/docs``; FastAPI on uvicorn, in the gRPC server's
process and event loop, over the same :class:`retrieval.api.Api` and pipeline.

The JSON API is a thin translation: a request body is the standard proto3 JSON mapping of the
RPC's request message (field names as in ``retrieval.proto``; bytes as base64), parsed into
that message and handed to the same code the gRPC servicer calls; the response message goes
back through the same mapping. Images may also come as a multipart upload (``image`` file
part, plus the rest of the request as JSON in a ``request`` part). So the two transports
share every check, limit and error message, and a field added to the proto shows on both.
The OpenAPI schemas of the bodies are generated from the proto descriptors for the same reason.

Errors: the gRPC status of the error, as HTTP status (400, 401, 403, 404, 413, 500, 503) and
a body ``{"error": {"code": "INVALID_ARGUMENT", "status": 400, "message": "..."}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from starlette.exceptions import HTTPException as StarletteHTTPException

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from retrieval.api import RPCS, Api, ResourceExhausted, Status, status_of
from retrieval.config import ServerConfig
from retrieval.metrics import Metrics
from retrieval.service import InvalidArgument, RetrievalError

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_ERROR_DETAIL = 300  # parser messages can echo input: keep them short
# the page needs nothing from elsewhere; this also keeps any injected markup from loading anything
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HTTP_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                     405: "UNIMPLEMENTED", 413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}


# --- proto <-> JSON --------------------------------------------------------------------------------
def to_json(message: Message) -> dict[str, Any]:
    """A response message as JSON: proto field names, every field present, int64 as numbers."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True, unquote_int64_if_possible=True)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR_DETAIL else text[: MAX_ERROR_DETAIL - 1] + "…"


def parse_json(body: bytes | str, message: Message, what: str = "request body") -> Message:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{what} is not UTF-8 JSON (byte {exc.start})") from None
    if not body.strip():
        return message
    try:
        json_format.Parse(body, message)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"{what}: {_short(str(exc))} (expected {message.DESCRIPTOR.name} as JSON)") from None
    return message


async def parse_request(request: Request, rpc: str) -> Message:
    """The RPC's request message from a JSON body, or from a multipart form (``image`` + ``request``)."""
    message = RPCS[rpc].request()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        if ctype not in ("", "application/json"):
            raise InvalidArgument(f"content-type {ctype!r}: send application/json or multipart/form-data")
        return parse_json(await request.body(), message)
    if "query" not in message.DESCRIPTOR.fields_by_name:
        raise InvalidArgument(f"{rpc} takes a JSON body, not a multipart form")
    try:
        form = await request.form(max_files=1, max_fields=4)
    except (StarletteHTTPException, ValueError) as exc:
        raise InvalidArgument(f"multipart form: {_short(getattr(exc, 'detail', exc))}") from None
    try:
        unknown = sorted(set(form.keys()) - {"image", "request"})
        if unknown:
            raise InvalidArgument(f"multipart form: unknown part {unknown[0]!r}; send 'image' (file) and 'request' (JSON)")
        spec = form.get("request")
        if spec is not None:
            if not isinstance(spec, str):
                raise InvalidArgument("multipart part 'request' must be a text field holding JSON, not a file")
            parse_json(spec, message, "multipart part 'request'")
        image = form.get("image")
        if image is not None:
            if isinstance(image, str):
                raise InvalidArgument("multipart part 'image' must be a file upload")
            message.query.image = await image.read()
    finally:
        await form.close()
    return message


# --- OpenAPI schemas from the proto descriptors ------------------------------------------------------
_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"}, FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"}, FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
for _t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
           FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
    _SCALARS[_t] = {"type": "integer", "format": "int32"}
for _t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
           FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
    _SCALARS[_t] = {"type": ["integer", "string"], "format": "int64"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _value_schema(f: FieldDescriptor) -> dict[str, Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return _ref(f.message_type.name)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    return dict(_SCALARS[f.type])


def _field_schema(f: FieldDescriptor) -> dict[str, Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _value_schema(f.message_type.fields_by_name["value"])}
    if f.is_repeated:
        return {"type": "array", "items": _value_schema(f)}
    return _value_schema(f)


def _messages(desc: Any) -> Iterator[Descriptor]:
    for m in desc.message_types_by_name.values():
        yield m
        for nested in m.nested_types:
            if not nested.GetOptions().map_entry:
                yield nested


def proto_schemas() -> dict[str, Any]:
    """JSON schemas of every message of ``retrieval.proto``, as the JSON mapping writes them."""
    out: dict[str, Any] = {}
    for m in _messages(pb.DESCRIPTOR):
        schema: dict[str, Any] = {"type": "object", "properties": {f.name: _field_schema(f) for f in m.fields}}
        oneofs = [o for o in m.oneofs if not o.name.startswith("_")]
        if oneofs:
            schema["description"] = "; ".join(
                f"at most one of {', '.join(f.name for f in o.fields)}" for o in oneofs)
        out[m.name] = schema
    return out


def _json_body(name: str, multipart: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(name)}}
    if multipart:
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": {
            "image": {"type": "string", "format": "binary", "description": "the query image (JPEG, PNG, WebP, ...)"},
            "request": {"type": "string", "description": f"the rest of the {name} as JSON"},
        }}}
    return {"requestBody": {"required": False, "content": content}}


def _responses(name: str, *extra: int) -> dict[int | str, Any]:
    out: dict[int | str, Any] = {200: {"description": "OK", "content": {"application/json": {"schema": _ref(name)}}}}
    for code in (400, *extra, 500, 503):
        out[code] = {"description": HTTP_STATUS_NAMES.get(code, "INTERNAL"),
                     "content": {"application/json": {"schema": _ref("Error")}}}
    return out


ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "code": {"type": "string", "description": "the gRPC status code name"},
    "status": {"type": "integer"}, "message": {"type": "string"}}}}}


# --- errors -------------------------------------------------------------------------------------------
def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="retrieval admin"'} if status == 401 else None
    return JSONResponse({"error": {"code": code, "status": status, "message": message}}, status_code=status,
                        headers=headers)


def rpc_error(exc: RetrievalError) -> JSONResponse:
    st: Status = status_of(exc)
    return error_response(st.http, st.name, str(exc))


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_message_bytes`` with 413, as gRPC does.

    The body is read here (it is read whole by every endpoint anyway) and handed on; an
    oversized one is drained up to a bound before the answer, so that the client reads the
    413 instead of a connection reset.
    """

    def __init__(self, app: Any, max_bytes: int, on_refused: Callable[[str], None] = lambda path: None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_limit = 4 * max_bytes
        self.on_refused = on_refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size <= self.max_bytes:
                chunks.append(body)
            if not message.get("more_body") or size > self.drain_limit:
                break
        if size > self.max_bytes:
            self.on_refused(scope.get("path", ""))
            response = error_response(
                413, "RESOURCE_EXHAUSTED",
                f"request body of {size}{'+' if size > self.drain_limit else ''} bytes is over the server's "
                f"limit of {self.max_bytes} bytes (max_message_bytes)")
            await response(scope, receive, send)
            return
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


# --- the app ----------------------------------------------------------------------------------------------
def create_app(config: ServerConfig, api: Api, serving: Callable[[], bool],
               metrics: Metrics | None = None) -> FastAPI:
    """The FastAPI app of one server (no module-level app: each server builds its own)."""
    app = FastAPIOffline(
        title="Fashion retrieval API", version="v1", static_url="/docs-static",
        description="The HTTP/JSON face of the gRPC service `fashion.retrieval.v1.RetrievalService`. "
                    "Bodies are the proto3 JSON mapping of the RPC messages (field names as in the .proto, "
                    "bytes as base64). Admin endpoints need `Authorization: Bearer <admin token>`.",
    )
    paths = {"/v1/search": "Search", "/v1/modify": "Modify", "/v1/admin/add-items": "AddItems",
             "/v1/admin/remove-items": "RemoveItems", "/v1/admin/reload": "Reload"}
    app.add_middleware(BodyLimit, max_bytes=config.max_message_bytes,
                       on_refused=lambda path: api.observe("http", paths.get(path, "other"), "RESOURCE_EXHAUSTED", 0.0))

    async def run(request: Request, rpc: str, message: Message | None = None) -> Message | JSONResponse:
        """Parse (unless given), call, check the response size; a JSONResponse on error."""
        t0 = time.perf_counter()
        try:
            if message is None:
                message = await parse_request(request, rpc)
        except RetrievalError as exc:
            api.observe("http", rpc, status_of(exc).name, time.perf_counter() - t0)
            return rpc_error(exc)
        try:
            response = await api.call("http", rpc, message, request.headers.get("authorization", ""))
        except RetrievalError as exc:
            return rpc_error(exc)
        size = response.ByteSize()
        if size > config.max_message_bytes:
            return rpc_error(ResourceExhausted(
                f"the response would be {size} bytes, over the server's limit of {config.max_message_bytes} bytes"))
        return response

    async def json_rpc(request: Request, rpc: str, message: Message | None = None) -> Response:
        out = await run(request, rpc, message)
        return out if isinstance(out, Response) else JSONResponse(to_json(out))

    # -- the RPCs -----------------------------------------------------------------------------------------
    @app.post("/v1/search", tags=["search"], summary="Search (image or item id; optional modifications)",
              openapi_extra=_json_body("SearchRequest", multipart=True), responses=_responses("SearchResponse", 404, 413))
    async def search(request: Request) -> Response:
        return await json_rpc(request, "Search")

    @app.post("/v1/modify", tags=["search"], summary="Modify: the modified query image only",
              description="JSON with the PNG as base64, or the PNG itself with `Accept: image/png`.",
              openapi_extra=_json_body("ModifyRequest", multipart=True), responses=_responses("ModifyResponse", 404, 413))
    async def modify(request: Request) -> Response:
        out = await run(request, "Modify")
        if isinstance(out, Response):
            return out
        if request.headers.get("accept", "").split(",")[0].strip().lower() == "image/png":
            return Response(out.image, media_type="image/png")
        return JSONResponse(to_json(out))

    @app.get("/v1/items/{item_id}", tags=["catalog"], summary="GetItem: one item's metadata",
             responses=_responses("GetItemResponse", 404))
    async def get_item(request: Request, item_id: str, include_image: bool = False) -> Response:
        return await json_rpc(request, "GetItem", pb.GetItemRequest(id=item_id, include_image=include_image))

    @app.get("/v1/items/{item_id}/image", tags=["catalog"], summary="An item's product image (the file itself)",
             responses={200: {"description": "the image", "content": {"image/*": {}}}})
    async def item_image(request: Request, item_id: str) -> Response:
        out = await run(request, "GetItem", pb.GetItemRequest(id=item_id, include_image=True))
        if isinstance(out, Response):
            return out
        media = mimetypes.guess_type(out.item.image_path)[0] or "application/octet-stream"
        return Response(out.image, media_type=media, headers={"Cache-Control": "max-age=60"})

    @app.get("/v1/attributes", tags=["catalog"], summary="ListAttributes: schema and what the generators can edit",
             responses=_responses("ListAttributesResponse"))
    async def list_attributes(request: Request) -> Response:
        return await json_rpc(request, "ListAttributes", pb.ListAttributesRequest())

    @app.get("/v1/sample", tags=["catalog"], summary="SampleItems: random catalog items",
             responses=_responses("SampleItemsResponse"))
    async def sample_items(request: Request, count: int = 0, seed: int = 0) -> Response:
        return await json_rpc(request, "SampleItems", pb.SampleItemsRequest(count=count, seed=seed))

    admin = {"security": [{"adminToken": []}]}
    for path, rpc, summary in (("/v1/admin/add-items", "AddItems", "AddItems: add a catalog folder's items"),
                               ("/v1/admin/remove-items", "RemoveItems", "RemoveItems: remove items by id"),
                               ("/v1/admin/reload", "Reload", "Reload: re-open the index from disk")):
        request_name = RPCS[rpc].request.DESCRIPTOR.name
        response_name = request_name.replace("Request", "Response")

        async def endpoint(request: Request, _rpc: str = rpc) -> Response:
            return await json_rpc(request, _rpc)

        app.add_api_route(path, endpoint, methods=["POST"], tags=["admin"], summary=summary, name=rpc,
                          openapi_extra={**_json_body(request_name), **admin},
                          responses=_responses(response_name, 401, 403, 404))

    # -- operations --------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"], summary="200 while the gRPC health status is SERVING, else 503")
    async def healthz() -> Response:
        ok = serving()
        return JSONResponse({"status": "SERVING" if ok else "NOT_SERVING"}, status_code=200 if ok else 503)

    if metrics is not None:
        @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
        async def prometheus() -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST

            return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- the page ----------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- errors: one JSON shape for everything -------------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, HTTP_STATUS_NAMES.get(exc.status_code, "UNKNOWN"),
                              f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(400, "INVALID_ARGUMENT", _short(problems))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update({**proto_schemas(), "Error": ERROR_SCHEMA})
            components["securitySchemes"] = {"adminToken": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# --- the server ---------------------------------------------------------------------------------------------
class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the gRPC server's handlers decide when both
    transports drain and stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn serving :func:`create_app` on ``config.http_port``, on the running event loop."""

    def __init__(self, config: ServerConfig, api: Api, metrics: Metrics | None, serving: Callable[[], bool]) -> None:
        self.config = config
        self.app = create_app(config, api, serving, metrics)
        self.uvicorn_config = uvicorn.Config(
            self.app, host=config.host, port=int(config.http_port or 0), lifespan="off", log_config=None,
            access_log=False, server_header=False, timeout_graceful_shutdown=int(max(1, config.grace_s)),
            ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key,
        )
        self.server = _QuietServer(self.uvicorn_config)
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port (``http_port`` 0 picks a free one)."""
        sock = self.uvicorn_config.bind_socket()
        port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="http-server")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError(f"the HTTP server on port {port} stopped while starting")
            await asyncio.sleep(0.01)
        log.info("HTTP on %s:%d (page /, API /v1/, docs /docs, /metrics, /healthz)", self.config.host, port)
        return port

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace_s``), close."""
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None


def openapi_json(config: ServerConfig | None = None) -> str:
    """The OpenAPI document, without a running server (for docs and tests)."""
    cfg = config or ServerConfig(index_dir=".")
    return json.dumps(create_app(cfg, Api(cfg), lambda: False).openapi(), indent=2)
