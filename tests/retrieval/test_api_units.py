"""The transport-neutral API layer, the JSON mapping, batching without idle waits, and the
pipeline's two paths (a lone request in one hop, concurrent ones staged and batched)."""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from retrieval.api import (
    RPCS,
    STATUS,
    Internal,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    check_admin,
    status_of,
)
from retrieval.batching import MicroBatcher
from retrieval.config import BatchingConfig, ConfigError, ServerConfig
from retrieval.service import FailedPrecondition, InvalidArgument, ModelFailure, NotFound


# --- errors and auth ------------------------------------------------------------------------------------
def test_every_error_has_a_grpc_code_and_an_http_status() -> None:
    expected = {InvalidArgument: ("INVALID_ARGUMENT", 400), NotFound: ("NOT_FOUND", 404),
                FailedPrecondition: ("FAILED_PRECONDITION", 409),
                Unauthenticated: ("UNAUTHENTICATED", 401), PermissionDenied: ("PERMISSION_DENIED", 403),
                ResourceExhausted: ("RESOURCE_EXHAUSTED", 413), ModelFailure: ("INTERNAL", 500),
                Internal: ("INTERNAL", 500), Unavailable: ("UNAVAILABLE", 503)}
    assert set(STATUS) == set(expected)
    for cls, (code, http) in expected.items():
        exc = cls("generator") if cls is ModelFailure else cls("x")
        st = status_of(exc)
        assert (st.name, st.http, st.grpc_code) == (code, http, getattr(grpc.StatusCode, code))


@pytest.mark.parametrize(("header", "token", "error", "needle"), [
    ("", "secret", Unauthenticated, "Bearer"),
    ("Bearer secret", None, PermissionDenied, "disabled"),
    ("Basic c2VjcmV0", "secret", Unauthenticated, "must be 'Bearer <token>'"),
    ("Bearer ", "secret", Unauthenticated, "must be 'Bearer <token>'"),
    ("Bearer wrong", "secret", PermissionDenied, "not the admin token"),
])
def test_admin_check(header: str, token: str | None, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle) as err:
        check_admin(header, token)
    assert "secret" not in str(err.value)


def test_admin_check_accepts_the_token() -> None:
    check_admin("Bearer secret", "secret")
    check_admin("bearer   secret ", "secret")


def test_every_rpc_of_the_service_is_in_the_table() -> None:
    service = pb.DESCRIPTOR.services_by_name["RetrievalService"]
    assert {m.name for m in service.methods} == set(RPCS)
    for m in service.methods:
        assert RPCS[m.name].request.DESCRIPTOR.full_name == m.input_type.full_name
    assert {n for n, r in RPCS.items() if r.admin} == {"AddItems", "RemoveItems", "Reload"}


# --- the JSON mapping ------------------------------------------------------------------------------------
def test_openapi_schemas_cover_every_message_and_field() -> None:
    from retrieval.web import proto_schemas

    schemas = proto_schemas()
    for name, desc in pb.DESCRIPTOR.message_types_by_name.items():
        assert set(schemas[name]["properties"]) == {f.name for f in desc.fields}, name
    req = schemas["SearchRequest"]["properties"]
    assert req["modifications"] == {"type": "array", "items": {"$ref": "#/components/schemas/Modification"}}
    assert req["filters"]["additionalProperties"] == {"$ref": "#/components/schemas/FilterValues"}
    assert schemas["Query"]["properties"]["image"]["contentEncoding"] == "base64"
    assert "at most one of image, item_id" in schemas["Query"]["description"]


def test_parse_json_names_the_problem() -> None:
    from retrieval.web import parse_json

    msg = parse_json(b'{"query": {"item_id": "a"}, "top_k": 3, "modifications": [{"product_to_model": {}}]}',
                     pb.SearchRequest())
    assert msg.query.item_id == "a" and msg.top_k == 3 and msg.modifications[0].HasField("product_to_model")
    assert parse_json(b"  ", pb.SearchRequest()) == pb.SearchRequest()  # empty body: all defaults
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        parse_json(b"\xff\xfe", pb.SearchRequest())
    with pytest.raises(InvalidArgument, match="topk") as err:
        parse_json(b'{"topk": 3}', pb.SearchRequest())
    assert "SearchRequest" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        parse_json(b'{"query": {"item_id": "' + b"x" * 5000 + b'"}, "top_k": "x"}', pb.SearchRequest())
    assert len(str(err.value)) < 400  # parser messages that echo input are cut short


def test_http_port_config() -> None:
    idx = str(Path(__file__).parent)
    assert ServerConfig(index_dir=idx, http_port=0).validate().http_port == 0
    with pytest.raises(ConfigError, match="http_port must be 0..65535"):
        ServerConfig(index_dir=idx, http_port=70000).validate()
    with pytest.raises(ConfigError, match="two ports"):
        ServerConfig(index_dir=idx, port=8080, http_port=8080).validate()


# --- batching waits only for partners that can come --------------------------------------------------------
def test_batcher_does_not_wait_when_no_partner_can_come() -> None:
    async def main() -> int:
        with ThreadPoolExecutor(1) as ex:
            # a minute of max_wait: without the partners check this would time out below
            b = MicroBatcher(lambda xs: xs, ex, enabled=True, max_batch=8, max_wait_ms=60_000, partners=lambda: 1)
            out = await asyncio.wait_for(b.submit(7), 20)
            await b.close()
            return out

    assert asyncio.run(main()) == 7


def test_batcher_waits_for_partners_in_flight() -> None:
    calls: list[list[int]] = []

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(lambda xs: (calls.append(list(xs)), xs)[1], ex, enabled=True, max_batch=8,
                             max_wait_ms=60_000, partners=lambda: 2)
            first = asyncio.ensure_future(b.submit(1))
            await asyncio.sleep(0.05)  # the first is gathering; its partner comes later
            out = await asyncio.wait_for(asyncio.gather(first, b.submit(2)), 20)
            await b.close()
            return out

    assert asyncio.run(main()) == [1, 2]
    assert calls == [[1, 2]]


# --- the pipeline: one hop alone, staged and batched together -----------------------------------------------
def test_lone_and_concurrent_requests_get_the_same_answer(
    retrieval_index: Path, generator_ckpts: list[Path], demo_catalog_dir: Path
) -> None:
    from catalog import load_catalog
    from retrieval.service import AttributeEdit, Pipeline, SearchQuery

    cat = load_catalog(demo_catalog_dir)
    buf = io.BytesIO()
    Image.open(cat.image_path(cat.items[5])).convert("RGB").save(buf, format="JPEG", quality=90)
    cfg = ServerConfig(index_dir=str(retrieval_index), generators=[str(p) for p in generator_ckpts], device="cpu",
                       batching=BatchingConfig(enabled=True, max_batch=4, max_wait_ms=200)).validate()
    pipeline = Pipeline.load(cfg)
    editor = next(e for e in pipeline.editors if e.groups)
    group = next(iter(editor.groups))
    q = SearchQuery(image=buf.getvalue(), modifications=[AttributeEdit(group, editor.groups[group][-1])], top_k=6,
                    return_modified_image=True)

    async def main():
        alone = await pipeline.search(q)
        together = await asyncio.gather(*(pipeline.search(q) for _ in range(3)))
        stats = pipeline.batch_stats()
        await pipeline.close()
        return alone, together, stats

    alone, together, stats = asyncio.run(main())
    stages = [s for s, _ in alone.timings]
    assert stages[:2] == ["model_queue", "decode"]  # the lone path: one visit to the model thread
    # in a gather the first request is alone when it starts; the other two go staged and share forwards
    assert "model_queue" not in [s for s, _ in together[1].timings]
    assert stats["generator"]["max_size"] == 2 and stats["encoder"]["max_size"] == 2
    ref = np.asarray(Image.open(io.BytesIO(alone.modified_png)), dtype=np.int16)
    for res in together:
        assert [h.id for h in res.hits] == [h.id for h in alone.hits]
        assert [h.score for h in res.hits] == pytest.approx([h.score for h in alone.hits], abs=1e-4)
        img = np.asarray(Image.open(io.BytesIO(res.modified_png)), dtype=np.int16)
        assert img.shape == ref.shape and np.abs(img - ref).max() <= 2  # batched forwards: rounding only
