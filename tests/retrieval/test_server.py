"""The gRPC server as a process on a real socket, driven by the generated client."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from retrieval.client import RetrievalClient

SERVICE = "fashion.retrieval.v1.RetrievalService"
MAX_MESSAGE = 2 * 1024 * 1024  # the test server's configured limit (default is 16 MiB)


@pytest.fixture(scope="module")
def server(retrieval_index: Path, generator_ckpts: list[Path], tmp_path_factory: pytest.TempPathFactory,
           server_process, admin_token: str):
    tmp = tmp_path_factory.mktemp("server")
    (tmp / "token").write_text(admin_token + "\n")
    cfg = tmp / "server.toml"
    cfg.write_text(
        f'index_dir = "{retrieval_index}"\n'
        f"max_message_bytes = {MAX_MESSAGE}\n"
        "max_image_pixels = 4000000\n"
        "max_top_k = 50\n"
        "[batching]\nenabled = true\nmax_batch = 4\nmax_wait_ms = 5\n"
    )
    srv = server_process(
        ["--config", str(cfg), "--generators", *map(str, generator_ckpts), "--admin-token-file", str(tmp / "token")],
        tmp / "server.log",
    )
    with RetrievalClient(srv.address) as c:
        c.wait_until_serving(timeout=120)
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def channel(server: object):
    ch = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def stub(channel) -> pb_grpc.RetrievalServiceStub:
    return pb_grpc.RetrievalServiceStub(channel)


@pytest.fixture(scope="module")
def attrs(stub) -> pb.ListAttributesResponse:
    return stub.ListAttributes(pb.ListAttributesRequest(), timeout=30)


@pytest.fixture(scope="module")
def an_edit(attrs) -> tuple[str, str]:
    g = next(g for g in attrs.groups if g.editable_values)
    return g.name, g.editable_values[-1]


@pytest.fixture(scope="module")
def item_ids(demo_catalog_dir: Path) -> list[str]:
    from catalog import load_catalog

    return [it.id for it in load_catalog(demo_catalog_dir).items]


@pytest.fixture(scope="module")
def query_jpeg(demo_catalog_dir: Path, item_ids: list[str]) -> bytes:
    from catalog import load_catalog

    cat = load_catalog(demo_catalog_dir)
    buf = io.BytesIO()
    Image.open(cat.image_path(cat.items[0])).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def edit(group: str, value: str) -> pb.Modification:
    return pb.Modification(edit=pb.AttributeEdit(group=group, value=value))


def search(stub, image: bytes | None = None, mods=(), *, item_id: str | None = None, **kw) -> pb.SearchResponse:
    q = pb.Query(image=image) if image is not None else pb.Query(item_id=item_id)
    return stub.Search(pb.SearchRequest(query=q, modifications=list(mods), **kw), timeout=60)


def still_serving(stub, image: bytes) -> None:
    assert len(search(stub, image, top_k=3).hits) == 3


# --- each RPC -------------------------------------------------------------------------------------
def test_list_attributes_reports_schema_and_generators(attrs, demo_catalog_dir: Path) -> None:
    from catalog import Schema

    schema = Schema.for_catalog(demo_catalog_dir)
    assert [g.name for g in attrs.groups][: len(schema.names)] == schema.names
    assert all(list(g.values) == list(schema.groups[g.name]) for g in attrs.groups if g.name in schema.groups)
    assert any(g.editable_values for g in attrs.groups)
    assert attrs.generators and attrs.index_size == 24 and attrs.index_version


def test_search_by_image_returns_ranked_hits_with_metadata(
    stub, query_jpeg: bytes, item_ids: list[str], demo_catalog_dir: Path
) -> None:
    from catalog import load_catalog

    resp = search(stub, query_jpeg, top_k=5)
    assert [h.rank for h in resp.hits] == [1, 2, 3, 4, 5]
    scores = [h.score for h in resp.hits]
    assert scores == sorted(scores, reverse=True)
    # the query is item 0's own photo (re-encoded as JPEG): it is the nearest item
    assert resp.hits[0].id == item_ids[0] and scores[0] > 0.9
    # the metadata is the catalog's row
    row = load_catalog(demo_catalog_dir).items[0]
    item = resp.hits[0].item
    assert (item.id, item.name, item.brand, item.product_url, item.image_url, item.image_path) == (
        row.id, row.name, row.brand, row.product_url, row.img_url, row.img_path)
    assert dict(item.attributes) == {g: v for g, v in row.labels.items() if v}
    assert list(item.tags) == row.attributes and item.name
    stages = [t.stage for t in resp.timings]
    # a lone request waits for the model thread first, then decodes there (one hop, see service.py)
    assert "decode" in stages[:2]
    assert "encode" in stages and "search" in stages and stages[-1] == "total"
    assert not resp.modified_image


def test_search_with_edit_returns_modified_png_and_changes_the_query(stub, query_jpeg: bytes, an_edit, attrs) -> None:
    k = min(attrs.index_size, 50)  # the whole (small) index: both searches score every item
    plain = search(stub, query_jpeg, top_k=k)
    resp = search(stub, query_jpeg, [edit(*an_edit)], top_k=k, return_modified_image=True)
    png = Image.open(io.BytesIO(resp.modified_image))
    assert png.format == "PNG" and png.size[0] > 16
    assert "modify" in [t.stage for t in resp.timings]
    # the edited query embeds differently: the scores over the whole catalog change
    a = {h.id: h.score for h in plain.hits}
    b = {h.id: h.score for h in resp.hits}
    assert set(a) == set(b) and any(abs(a[i] - b[i]) > 1e-3 for i in a)


def test_search_by_item_id_excludes_the_item_unless_asked(stub, item_ids: list[str], an_edit) -> None:
    resp = search(stub, item_id=item_ids[3], top_k=4)
    assert len(resp.hits) == 4 and item_ids[3] not in [h.id for h in resp.hits]
    resp = search(stub, item_id=item_ids[3], top_k=4, include_query_item=True)
    assert resp.hits[0].id == item_ids[3]
    # an edit of a catalog item starts from the item's known labels
    resp = search(stub, None, [edit(*an_edit)], item_id=item_ids[3], top_k=4, return_modified_image=True)
    assert len(resp.hits) == 4 and resp.modified_image and "modify" in [t.stage for t in resp.timings]


def test_search_filters(stub, query_jpeg: bytes, attrs) -> None:
    group = next(g for g in attrs.groups if len(g.values) > 1)
    value = group.values[0]
    resp = search(stub, query_jpeg, top_k=24, filters={group.name: pb.FilterValues(values=[value])})
    assert all(h.item.attributes.get(group.name) == value for h in resp.hits)


def test_modify_returns_the_image_only(stub, query_jpeg: bytes, an_edit) -> None:
    resp = stub.Modify(pb.ModifyRequest(query=pb.Query(image=query_jpeg), modifications=[edit(*an_edit)]), timeout=60)
    assert Image.open(io.BytesIO(resp.image)).format == "PNG"


def test_product_to_model_when_a_generator_supports_it(stub, query_jpeg: bytes, attrs) -> None:
    req = pb.ModifyRequest(query=pb.Query(image=query_jpeg),
                           modifications=[pb.Modification(product_to_model=pb.ProductToModel())])
    if attrs.product_to_model:
        assert Image.open(io.BytesIO(stub.Modify(req, timeout=60).image)).format == "PNG"
    else:
        with pytest.raises(grpc.RpcError) as err:
            stub.Modify(req, timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_item(stub, item_ids: list[str], demo_catalog_dir: Path) -> None:
    resp = stub.GetItem(pb.GetItemRequest(id=item_ids[1], include_image=True), timeout=30)
    assert resp.item.id == item_ids[1]
    assert resp.image == (demo_catalog_dir / resp.item.image_path).read_bytes()
    assert not stub.GetItem(pb.GetItemRequest(id=item_ids[1]), timeout=30).image


# --- bad input: clear status, and the server keeps serving ------------------------------------------
def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (3000, 3000)).save(buf, format="PNG")  # 9 MP (limit 4 MP), a few KiB on the wire
    return buf.getvalue()


BAD_SEARCHES = {
    "empty image": (dict(query=pb.Query(image=b"")), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "garbage image": (dict(query=pb.Query(image=b"\x89PNG garbage")), grpc.StatusCode.INVALID_ARGUMENT, "decod"),
    "no query": (dict(query=None), grpc.StatusCode.INVALID_ARGUMENT, "query is empty"),
    "bomb": (dict(query=pb.Query(image=_bomb())), grpc.StatusCode.INVALID_ARGUMENT, "3000x3000 = 9000000 pixels"),
    "unknown item": (dict(query=pb.Query(item_id="no-such-item")), grpc.StatusCode.NOT_FOUND, "no-such-item"),
    "top_k < 0": (dict(top_k=-1), grpc.StatusCode.INVALID_ARGUMENT, "top_k must be in 1..50"),
    "top_k too big": (dict(top_k=51), grpc.StatusCode.INVALID_ARGUMENT, "top_k must be in 1..50"),
    "unknown group": (dict(modifications=[edit("colour", "blue")]), grpc.StatusCode.INVALID_ARGUMENT,
                      "unknown attribute group 'colour'"),
    "unknown value": (dict(modifications=[edit("color", "plaid-ish")]), grpc.StatusCode.INVALID_ARGUMENT,
                      "unknown value 'plaid-ish'"),
    "empty modification": (dict(modifications=[pb.Modification()]), grpc.StatusCode.INVALID_ARGUMENT,
                           "modification 0 is empty"),
    "unknown filter group": (dict(filters={"colour": pb.FilterValues(values=["red"])}),
                             grpc.StatusCode.INVALID_ARGUMENT, "colour"),
    "unknown filter value": (dict(filters={"color": pb.FilterValues(values=["plaid-ish"])}),
                             grpc.StatusCode.INVALID_ARGUMENT, "plaid-ish"),
}


@pytest.mark.parametrize("case", list(BAD_SEARCHES))
def test_bad_search_input_gets_clear_status(stub, query_jpeg: bytes, case: str) -> None:
    fields, code, needle = BAD_SEARCHES[case]
    fields = dict(fields)
    fields.setdefault("query", pb.Query(image=query_jpeg))
    if fields["query"] is None:
        del fields["query"]
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(pb.SearchRequest(**fields), timeout=30)
    assert err.value.code() == code, err.value.details()
    assert needle in err.value.details()
    still_serving(stub, query_jpeg)


def test_unknown_item_in_get_item_and_modify(stub, query_jpeg: bytes, an_edit) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GetItem(pb.GetItemRequest(id="nope"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Modify(pb.ModifyRequest(query=pb.Query(item_id="nope"), modifications=[edit(*an_edit)]), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.Modify(pb.ModifyRequest(query=pb.Query(image=query_jpeg)), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    still_serving(stub, query_jpeg)


def test_message_over_the_configured_limit(stub, query_jpeg: bytes) -> None:
    big = query_jpeg + b"\0" * (MAX_MESSAGE + 1024)
    with pytest.raises(grpc.RpcError) as err:
        search(stub, big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    still_serving(stub, query_jpeg)


def test_deadline_exceeded_then_still_serving(stub, query_jpeg: bytes, an_edit) -> None:
    req = pb.SearchRequest(query=pb.Query(image=query_jpeg), modifications=[edit(*an_edit)] * 2)
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(req, timeout=0.001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    still_serving(stub, query_jpeg)


# --- auth -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong-token"),), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_admin_rpcs_need_the_token(stub, metadata, code, item_ids: list[str], admin_token: str) -> None:
    calls = [
        lambda: stub.Reload(pb.ReloadRequest(), timeout=30, metadata=metadata),
        lambda: stub.RemoveItems(pb.RemoveItemsRequest(ids=[item_ids[0]]), timeout=30, metadata=metadata),
        lambda: stub.AddItems(pb.AddItemsRequest(catalog_dir="/tmp"), timeout=30, metadata=metadata),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code
        assert admin_token not in err.value.details()
    assert stub.ListAttributes(pb.ListAttributesRequest(), timeout=30).index_size == 24  # nothing removed


# --- health and reflection ------------------------------------------------------------------------------
def test_health_serving_for_server_and_service(channel) -> None:
    h = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        assert h.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    assert SERVICE in services and "grpc.health.v1.Health" in services
    from google.protobuf.descriptor_pool import DescriptorPool

    desc = DescriptorPool(db).FindServiceByName(SERVICE)
    assert {m.name for m in desc.methods} == {
        "Search", "Modify", "GetItem", "ListAttributes", "SampleItems", "AddItems", "RemoveItems", "Reload"}


# --- admin: reload, remove, add while searching -----------------------------------------------------------
def test_admin_changes_during_searches_never_fail_a_search(
    stub, query_jpeg: bytes, an_edit, item_ids: list[str], demo_catalog_dir: Path, admin_token: str
) -> None:
    md = (("authorization", f"Bearer {admin_token}"),)
    stop = threading.Event()
    results: list[int] = []
    errors: list[BaseException] = []

    def searcher(i: int) -> None:
        mods = [edit(*an_edit)] if i % 2 else []
        while not stop.is_set():
            try:
                results.append(len(search(stub, query_jpeg, mods, top_k=5).hits))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(searcher, i) for i in range(4)]
        try:
            for _ in range(2):
                r = stub.Reload(pb.ReloadRequest(), timeout=60, metadata=md)
                assert r.index_size == 24
            r = stub.RemoveItems(pb.RemoveItemsRequest(ids=item_ids[:2] + ["not-there"]), timeout=60, metadata=md)
            assert (r.removed, list(r.not_found), r.index_size) == (2, ["not-there"], 22)
            got = stub.Search(pb.SearchRequest(query=pb.Query(image=query_jpeg), top_k=50), timeout=60)
            assert not {h.id for h in got.hits} & set(item_ids[:2])
            r = stub.AddItems(pb.AddItemsRequest(catalog_dir=str(demo_catalog_dir), ids=item_ids[:3]),
                              timeout=120, metadata=md)
            assert (r.added, r.replaced, r.index_size) == (2, 1, 24)  # item 2 was still there: replaced
            r = stub.Reload(pb.ReloadRequest(), timeout=60, metadata=md)
            assert r.index_size == 24  # the additions were saved: a reload from disk keeps them
        finally:
            stop.set()
            for f in futs:
                f.result()
    assert not errors, errors[:3]
    assert len(results) >= 4 and all(n == 5 for n in results)
    resp = search(stub, query_jpeg, top_k=1)
    assert resp.hits[0].id == item_ids[0]  # re-added and findable again


def test_reload_of_a_missing_folder_keeps_the_old_index(stub, query_jpeg: bytes, admin_token: str) -> None:
    md = (("authorization", f"Bearer {admin_token}"),)
    with pytest.raises(grpc.RpcError) as err:
        stub.Reload(pb.ReloadRequest(index_dir="/no/such/index"), timeout=30, metadata=md)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    still_serving(stub, query_jpeg)


def test_add_items_refuses_a_large_loss_until_the_threshold_is_raised(
    stub, item_ids: list[str], demo_catalog_dir: Path, admin_token: str, tmp_path: Path
) -> None:
    import csv
    import shutil

    from catalog.format import read_rows

    md = (("authorization", f"Bearer {admin_token}"),)
    copy = tmp_path / "catalog"
    shutil.copytree(demo_catalog_dir, copy)
    header, _ = read_rows(copy / "catalog.csv")
    with open(copy / "catalog.csv", "a", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        for i in range(2):
            w.writerow([f"gone-{i}" if c == "id" else f"images/gone-{i}.jpg" if c == "img_path" else "" for c in header])
    wanted = [*item_ids[:3], "gone-0", "gone-1"]  # 2 of the 5 requested rows are broken: 40 %
    with pytest.raises(grpc.RpcError) as err:
        stub.AddItems(pb.AddItemsRequest(catalog_dir=str(copy), ids=wanted), timeout=60, metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = err.value.details()
    assert "2 of 5 rows (40.0%) would be skipped" in details and "missing image: 2 rows" in details
    assert "max_skipped = 0.4" in details and "--max-skipped 0.4" in details
    assert stub.ListAttributes(pb.ListAttributesRequest(), timeout=30).index_size == 24  # nothing was added

    with pytest.raises(grpc.RpcError) as err:
        stub.AddItems(pb.AddItemsRequest(catalog_dir=str(copy), max_skipped=1.5), timeout=60, metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_skipped" in err.value.details()

    r = stub.AddItems(pb.AddItemsRequest(catalog_dir=str(copy), ids=wanted, max_skipped=0.4), timeout=120, metadata=md)
    assert (r.added, r.replaced, r.index_size) == (0, 3, 24)
    assert len(r.skipped) == 2 and all("missing image" in s for s in r.skipped)


# --- the CLI client -------------------------------------------------------------------------------------
def test_cli_search_prints_a_table_and_saves_the_modified_image(
    server: object, tmp_path: Path, query_jpeg: bytes, an_edit
) -> None:
    import subprocess
    import sys

    q = tmp_path / "q.jpg"
    q.write_bytes(query_jpeg)
    out = tmp_path / "mod.png"
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval", "search", "--server", server.address, "--image", str(q),
         "--edit", f"{an_edit[0]}={an_edit[1]}", "-k", "3", "--save-modified", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "id", "score"] and len([x for x in lines if x[:2] in ("1 ", "2 ", "3 ")]) == 3
    assert Image.open(out).format == "PNG"
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval", "search", "--server", server.address, "--image", str(q),
         "--edit", "colour=blue"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "INVALID_ARGUMENT" in proc.stderr and "colour" in proc.stderr
