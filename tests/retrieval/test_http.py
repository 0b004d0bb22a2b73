"""The HTTP/JSON API, /healthz, /metrics and the OpenAPI page of a real server process, over a
real socket, checked against the gRPC answers of the same process."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from PIL import Image
from web_helpers import WEB_MAX_MESSAGE, WEB_MAX_TOP_K

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def error(self) -> dict:
        return self.json()["error"]


def http(base: str, method: str, path: str, body: bytes | dict | None = None,
         headers: dict[str, str] | None = None) -> Reply:
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(base.rstrip("/") + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def multipart(image: bytes, request: dict | None = None, filename: str = "q.jpg") -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n".encode() + image + b"\r\n"]
    if request is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{json.dumps(request)}\r\n'
                     .encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def base(web_server) -> str:
    return web_server.http_url


@pytest.fixture(scope="module")
def stub(web_server):
    ch = grpc.insecure_channel(web_server.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    yield pb_grpc.RetrievalServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def catalog(demo_catalog_dir: Path):
    from catalog import load_catalog

    return load_catalog(demo_catalog_dir)


@pytest.fixture(scope="module")
def query_jpeg(catalog) -> bytes:
    buf = io.BytesIO()
    Image.open(catalog.image_path(catalog.items[0])).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def an_edit(stub) -> tuple[str, str]:
    attrs = stub.ListAttributes(pb.ListAttributesRequest(), timeout=30)
    g = next(g for g in attrs.groups if g.editable_values)
    return g.name, g.editable_values[-1]


def hits_of(resp: dict) -> list[tuple[str, float]]:
    return [(h["id"], h["score"]) for h in resp["hits"]]


# --- the RPCs as JSON ------------------------------------------------------------------------------------
def test_attributes_is_the_grpc_answer_as_json(base: str, stub) -> None:
    reply = http(base, "GET", "/v1/attributes")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    grpc_answer = stub.ListAttributes(pb.ListAttributesRequest(), timeout=30)
    assert reply.json() == json_format.MessageToDict(
        grpc_answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True)
    assert reply.json()["index_size"] == 24  # int64 as a JSON number


def test_search_json_multipart_and_grpc_give_the_same_hits(base: str, stub, query_jpeg: bytes, an_edit) -> None:
    g, v = an_edit
    request = {"modifications": [{"edit": {"group": g, "value": v}}], "top_k": 5, "return_modified_image": True}
    as_json = http(base, "POST", "/v1/search", {**request, "query": {"image": b64(query_jpeg)}})
    assert as_json.status == 200, as_json.body
    body, headers = multipart(query_jpeg, request)
    as_form = http(base, "POST", "/v1/search", body, headers)
    assert as_form.status == 200, as_form.body
    over_grpc = stub.Search(pb.SearchRequest(
        query=pb.Query(image=query_jpeg), top_k=5, return_modified_image=True,
        modifications=[pb.Modification(edit=pb.AttributeEdit(group=g, value=v))]), timeout=60)
    expected = [(h.id, h.score) for h in over_grpc.hits]
    for reply in (as_json.json(), as_form.json()):
        assert [i for i, _ in hits_of(reply)] == [i for i, _ in expected]
        assert [s for _, s in hits_of(reply)] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert [h["rank"] for h in reply["hits"]] == [1, 2, 3, 4, 5]
        png = base64.b64decode(reply["modified_image"])
        assert Image.open(io.BytesIO(png)).format == "PNG"
        stages = [t["stage"] for t in reply["timings"]]
        assert "modify" in stages and stages[-1] == "total"
        assert reply["index_version"] == over_grpc.index_version


def test_search_by_item_id_returns_catalog_metadata(base: str, catalog) -> None:
    item = catalog.items[3]
    reply = http(base, "POST", "/v1/search", {"query": {"item_id": item.id}, "top_k": 3})
    assert reply.status == 200
    hits = reply.json()["hits"]
    assert len(hits) == 3 and item.id not in [h["id"] for h in hits]  # the query item is left out
    first = catalog.items[[it.id for it in catalog.items].index(hits[0]["id"])]
    meta = hits[0]["item"]
    assert (meta["name"], meta["brand"], meta["image_path"]) == (first.name, first.brand, first.img_path)
    assert meta["attributes"] == {k: v for k, v in first.labels.items() if v}
    assert reply.json()["modified_image"] == ""  # not asked for


def test_modify_as_json_and_as_png(base: str, query_jpeg: bytes, an_edit) -> None:
    g, v = an_edit
    body, headers = multipart(query_jpeg, {"modifications": [{"edit": {"group": g, "value": v}}]})
    as_json = http(base, "POST", "/v1/modify", body, headers)
    assert as_json.status == 200, as_json.body
    png = base64.b64decode(as_json.json()["image"])
    as_png = http(base, "POST", "/v1/modify", body, {**headers, "Accept": "image/png"})
    assert as_png.status == 200 and as_png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(as_png.body)).size == Image.open(io.BytesIO(png)).size


def test_item_metadata_and_image(base: str, catalog, demo_catalog_dir: Path) -> None:
    item = catalog.items[1]
    reply = http(base, "GET", f"/v1/items/{item.id}")
    assert reply.status == 200 and reply.json()["item"]["id"] == item.id and reply.json()["image"] == ""
    with_image = http(base, "GET", f"/v1/items/{item.id}?include_image=true").json()
    assert base64.b64decode(with_image["image"]) == (demo_catalog_dir / item.img_path).read_bytes()
    image = http(base, "GET", f"/v1/items/{item.id}/image")
    assert image.status == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.body == (demo_catalog_dir / item.img_path).read_bytes()


def test_sample_items(base: str, catalog) -> None:
    ids = {it.id for it in catalog.items}
    first = http(base, "GET", "/v1/sample?count=6&seed=7").json()
    again = http(base, "GET", "/v1/sample?count=6&seed=7").json()
    assert len(first["items"]) == 6 and first == again  # a seed repeats the sample
    assert {i["id"] for i in first["items"]} <= ids and len({i["id"] for i in first["items"]}) == 6
    everything = http(base, "GET", f"/v1/sample?count={WEB_MAX_TOP_K}").json()["items"]
    assert {i["id"] for i in everything} == ids  # count above the index size: every item once
    assert http(base, "GET", f"/v1/sample?count={WEB_MAX_TOP_K + 1}").status == 400


# --- the same errors as gRPC -------------------------------------------------------------------------------
def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buf, format="PNG")  # 9 MP (limit 4 MP), a few KiB on the wire
    return buf.getvalue()


BAD = {  # case -> (SearchRequest as JSON, HTTP status, gRPC code, text in the message)
    "not an image": ({"query": {"image": b64(b"just some text, not a picture")}}, 400,
                     grpc.StatusCode.INVALID_ARGUMENT, "not a decodable image"),
    "empty image": ({"query": {"image": ""}}, 400, grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "bomb": ({"query": {"image": b64(_bomb())}}, 400, grpc.StatusCode.INVALID_ARGUMENT, "3000x3000 = 9000000 pixels"),
    "no query": ({}, 400, grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
    "unknown item": ({"query": {"item_id": "no-such-item"}}, 404, grpc.StatusCode.NOT_FOUND, "no-such-item"),
    "top_k too big": ({"query": {"item_id": "X"}, "top_k": WEB_MAX_TOP_K + 1}, 400, grpc.StatusCode.INVALID_ARGUMENT,
                      f"top_k must be in 1..{WEB_MAX_TOP_K}"),
    "unknown group": ({"query": {"item_id": "X"}, "modifications": [{"edit": {"group": "colour", "value": "blue"}}]},
                      400, grpc.StatusCode.INVALID_ARGUMENT, "unknown attribute group 'colour'"),
    "empty modification": ({"query": {"item_id": "X"}, "modifications": [{}]}, 400,
                           grpc.StatusCode.INVALID_ARGUMENT, "modification 0 is empty"),
    "unknown filter": ({"query": {"item_id": "X"}, "filters": {"colour": {"values": ["red"]}}}, 400,
                       grpc.StatusCode.INVALID_ARGUMENT, "colour"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_search_same_status_and_message_as_grpc(base: str, stub, catalog, query_jpeg: bytes, case: str) -> None:
    body, status, code, needle = BAD[case]
    body = json.loads(json.dumps(body).replace('"X"', json.dumps(catalog.items[0].id)))
    reply = http(base, "POST", "/v1/search", body)
    assert reply.status == status, reply.body
    assert reply.error["code"] == code.name and reply.error["status"] == status
    assert needle in reply.error["message"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(json_format.ParseDict(body, pb.SearchRequest()), timeout=30)
    assert err.value.code() == code and err.value.details() == reply.error["message"]
    assert http(base, "POST", "/v1/search", {"query": {"image": b64(query_jpeg)}, "top_k": 2}).status == 200


@pytest.mark.parametrize(("body", "needle"), [
    (b"{not json", "request body"),
    (b'{"query": {"item_id": "a"}, "colour": 1}', "colour"),
    (b'{"top_k": "many"}', "top_k"),
    (b'["a list"]', "SearchRequest"),
])
def test_malformed_json_is_400_naming_the_problem(base: str, body: bytes, needle: str) -> None:
    reply = http(base, "POST", "/v1/search", body, {"Content-Type": "application/json"})
    assert reply.status == 400 and reply.error["code"] == "INVALID_ARGUMENT"
    assert needle in reply.error["message"] and len(reply.error["message"]) < 400


def test_other_content_types_and_forms_are_refused_clearly(base: str, query_jpeg: bytes) -> None:
    reply = http(base, "POST", "/v1/search", b"top_k=3", {"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 400 and "multipart/form-data" in reply.error["message"]
    body, headers = multipart(query_jpeg)
    reply = http(base, "POST", "/v1/search", body.replace(b'name="image"', b'name="picture"'), headers)
    assert reply.status == 400 and "'picture'" in reply.error["message"]
    reply = http(base, "POST", "/v1/admin/reload", body, headers)
    assert reply.status in (400, 401)  # admin endpoints take JSON only (and need the token)


def test_over_the_message_limit_is_413_like_grpc_resource_exhausted(base: str, stub, query_jpeg: bytes) -> None:
    big = query_jpeg + b"\0" * (WEB_MAX_MESSAGE + 1024)
    body, headers = multipart(big)
    reply = http(base, "POST", "/v1/search", body, headers)
    assert reply.status == 413 and reply.error["code"] == "RESOURCE_EXHAUSTED"
    assert str(WEB_MAX_MESSAGE) in reply.error["message"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(pb.SearchRequest(query=pb.Query(image=big)), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert http(base, "POST", "/v1/search", {"query": {"image": b64(query_jpeg)}, "top_k": 1}).status == 200


def test_unknown_paths_and_parameters(base: str) -> None:
    reply = http(base, "GET", "/v1/nothing-here")
    assert reply.status == 404 and reply.error["code"] == "NOT_FOUND"
    reply = http(base, "GET", "/v1/items/x?include_image=perhaps")
    assert reply.status == 400 and "include_image" in reply.error["message"]
    reply = http(base, "GET", "/v1/items/no-such-item")
    assert reply.status == 404 and "no-such-item" in reply.error["message"]
    assert http(base, "GET", "/v1/search").status == 405


# --- admin ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": "Basic abc"}, 401), ({"Authorization": "Bearer wrong-token"}, 403)])
def test_admin_endpoints_need_the_token(base: str, headers: dict, status: int, admin_token: str, catalog) -> None:
    for path, body in (("/v1/admin/reload", {}), ("/v1/admin/remove-items", {"ids": [catalog.items[0].id]}),
                       ("/v1/admin/add-items", {"catalog_dir": "/tmp"})):
        reply = http(base, "POST", path, body, headers)
        assert reply.status == status, (path, reply.body)
        assert admin_token not in reply.body.decode()
        if status == 401:
            assert reply.headers["www-authenticate"].startswith("Bearer")
    assert http(base, "GET", "/v1/attributes").json()["index_size"] == 24  # nothing removed


def test_admin_reload_with_the_token(base: str, admin_token: str) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    reply = http(base, "POST", "/v1/admin/reload", {}, auth)
    assert reply.status == 200 and reply.json()["index_size"] == 24
    reply = http(base, "POST", "/v1/admin/reload", {"index_dir": "/no/such/index"}, auth)
    assert reply.status == 404 and reply.error["code"] == "NOT_FOUND"


# --- operations ----------------------------------------------------------------------------------------------------
def test_healthz(base: str) -> None:
    reply = http(base, "GET", "/healthz")
    assert reply.status == 200 and reply.json() == {"status": "SERVING"}


def test_metrics_count_both_transports(base: str, stub, query_jpeg: bytes, an_edit) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[tuple, float]:
        reply = http(base, "GET", "/metrics")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(reply.body.decode()) for s in fam.samples}

    def requests(transport: str, rpc: str, code: str) -> float:
        key = ("retrieval_requests_total", (("code", code), ("rpc", rpc), ("transport", transport)))
        return before.get(key, 0.0), after.get(key, 0.0)

    before = samples()
    g, v = an_edit
    mods = [{"edit": {"group": g, "value": v}}]
    for _ in range(2):
        assert http(base, "POST", "/v1/search", {"query": {"image": b64(query_jpeg)}, "modifications": mods}).status == 200
    assert http(base, "POST", "/v1/search", {"query": {"item_id": "no-such-item"}}).status == 404
    stub.Search(pb.SearchRequest(query=pb.Query(image=query_jpeg)), timeout=60)
    after = samples()
    for (transport, rpc, code), n in {("http", "Search", "OK"): 2, ("http", "Search", "NOT_FOUND"): 1,
                                      ("grpc", "Search", "OK"): 1}.items():
        was, now = requests(transport, rpc, code)
        assert now - was == n, (transport, rpc, code)
    stage = ("retrieval_stage_duration_seconds_count", (("rpc", "Search"), ("stage", "modify")))
    assert after[stage] - before.get(stage, 0.0) == 2
    assert after[("retrieval_request_duration_seconds_count", (("rpc", "Search"), ("transport", "grpc")))] >= 1
    assert after[("retrieval_index_items", ())] == 24
    (info,) = [dict(labels) for name, labels in after if name == "retrieval_index_info"]
    assert info["version"] == http(base, "GET", "/v1/attributes").json()["index_version"]
    assert after[("retrieval_batch_size_count", (("model", "encoder"),))] >= 0
    assert after[("retrieval_serving", ())] == 1
    assert any(name.startswith("process_") for name, _ in after)


def test_openapi_and_docs_work_offline(base: str) -> None:
    spec = http(base, "GET", "/openapi.json").json()
    assert {"/v1/search", "/v1/modify", "/v1/items/{item_id}", "/v1/attributes", "/v1/sample",
            "/v1/admin/reload", "/healthz", "/metrics"} <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert set(schemas["SearchRequest"]["properties"]) == {f.name for f in pb.SearchRequest.DESCRIPTOR.fields}
    assert spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SearchRequest"}
    docs = http(base, "GET", "/docs")
    assert docs.status == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.body.decode())
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from a CDN
    for a in assets:
        assert http(base, "GET", a).status == 200, a


def test_page_is_self_contained(base: str) -> None:
    page = http(base, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.body.decode()
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        reply = http(base, "GET", asset)
        assert reply.status == 200, asset
        assert not re.search(r"https?://", reply.body.decode()), f"{asset} loads something from elsewhere"
    assert not re.search(r"https?://", html)
