"""AttributeEdit.strength and Search/Modify variants over gRPC, against a real server process
serving the committed MUNIT (multi-modal) and Fader (continuous) demo checkpoints."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from proto.fashion.retrieval.v1 import retrieval_pb2 as pb
from proto.fashion.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
from retrieval.client import RetrievalClient

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "generators" / "demo_checkpoints"
FADER, MUNIT = DEMO / "experimental" / "fader_demo64.pt", DEMO / "experimental" / "munit_demo64.pt"
MAX_VARIANTS = 4


@pytest.fixture(scope="module")
def server(retrieval_index: Path, tmp_path_factory: pytest.TempPathFactory, server_process):
    for ckpt in (FADER, MUNIT):
        if not ckpt.is_file():
            pytest.fail(f"demo checkpoint missing: {ckpt}")
    tmp = tmp_path_factory.mktemp("variants_server")
    cfg = tmp / "server.toml"
    cfg.write_text(f'index_dir = "{retrieval_index}"\nmax_top_k = 50\nmax_variants = {MAX_VARIANTS}\n'
                   "[batching]\nenabled = true\nmax_batch = 4\nmax_wait_ms = 5\n")
    # fader first: it can make pattern edits too, so a variants request must pick the MUNIT on purpose
    srv = server_process(["--config", str(cfg), "--generators", str(FADER), str(MUNIT)], tmp / "server.log")
    with RetrievalClient(srv.address) as c:
        c.wait_until_serving(timeout=180)
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def stub(server):
    ch = grpc.insecure_channel(server.address)
    yield pb_grpc.RetrievalServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def query(demo_catalog_dir: Path) -> tuple[bytes, str]:
    """A plain (unicolors), not black product of the test catalog: its PNG and its id."""
    from catalog import load_catalog

    cat = load_catalog(demo_catalog_dir)
    it = next(i for i in cat.items if i.labels.get("pattern") == "unicolors" and i.labels.get("color") != "black")
    buf = io.BytesIO()
    Image.open(cat.image_path(it)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), it.id


def edit(group: str, value: str, strength: float | None = None) -> pb.Modification:
    e = pb.AttributeEdit(group=group, value=value)
    if strength is not None:
        e.strength = strength
    return pb.Modification(edit=e)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0


def modify(stub, image: bytes, mods, variants: int = 0) -> pb.ModifyResponse:
    return stub.Modify(pb.ModifyRequest(query=pb.Query(image=image), modifications=list(mods), variants=variants),
                       timeout=120)


def test_list_attributes_says_which_generator_is_continuous_or_multi_modal(stub) -> None:
    gens = {g.kind: g for g in stub.ListAttributes(pb.ListAttributesRequest(), timeout=60).generators}
    assert gens["fader"].continuous and not gens["fader"].multi_modal
    assert gens["munit"].multi_modal and list(gens["munit"].groups) == ["pattern"]


def test_strength_zero_returns_the_query_and_strength_grows_the_change(stub, query) -> None:
    image, _ = query
    x = pixels(image)
    dist = []
    for s in (0.0, 0.5, 1.0):
        y = pixels(modify(stub, image, [edit("color", "black", s)]).image)
        assert y.shape == x.shape  # the fader works at the photo's own resolution
        dist.append(float(np.abs(y - x).mean()))
    assert dist[0] < 0.01, dist
    assert dist[0] < dist[1] < dist[2], dist
    # unset strength is the full edit
    assert np.array_equal(pixels(modify(stub, image, [edit("color", "black")]).image),
                          pixels(modify(stub, image, [edit("color", "black", 1.0)]).image))


@pytest.mark.parametrize("bad", [-0.25, 1.5, float("nan")])
def test_strength_outside_0_1_is_invalid_argument(stub, query, bad: float) -> None:
    image, _ = query
    for call in (lambda: modify(stub, image, [edit("color", "red", bad)]),
                 lambda: stub.Search(pb.SearchRequest(query=pb.Query(image=image),
                                                      modifications=[edit("color", "red", bad)]), timeout=60)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "modification 0: strength must be in 0..1" in err.value.details()


def test_modify_variants_returns_n_different_images(stub, query) -> None:
    image, _ = query
    resp = modify(stub, image, [edit("pattern", "floral")], variants=3)
    assert len(resp.images) == 3 and resp.image == resp.images[0]
    ims = [pixels(png) for png in resp.images]
    for i in range(3):
        for j in range(i + 1, 3):
            assert float(np.abs(ims[i] - ims[j]).mean()) > 0.003, (i, j)
    # one variant (0 or 1): one image, in image only, from the first generator that can make the
    # edit (here the fader, loaded first), not the multi-modal one
    for n in (0, 1):
        one = modify(stub, image, [edit("pattern", "floral")], variants=n)
        assert not one.images and pixels(one.image).shape == ims[0].shape


def test_search_with_variants_fuses_the_rankings(stub, query) -> None:
    image, item_id = query
    req = pb.SearchRequest(query=pb.Query(item_id=item_id), modifications=[edit("pattern", "floral")], top_k=8,
                           variants=3, return_modified_image=True)
    resp = stub.Search(req, timeout=120)
    assert len(resp.modified_images) == 3 and resp.modified_image == resp.modified_images[0]
    assert len(resp.hits) == 8 and item_id not in [h.id for h in resp.hits]
    scores = [h.score for h in resp.hits]
    # reciprocal rank fusion: at most 3 / 61 (first in all three), sorted, every hit in some top 2k
    assert all(0 < s <= 3 / 61 + 1e-9 for s in scores) and scores == sorted(scores, reverse=True)
    single = stub.Search(pb.SearchRequest(query=pb.Query(item_id=item_id), modifications=[edit("pattern", "floral")],
                                          top_k=8), timeout=120)
    assert single.hits and single.hits[0].score > 3 / 61  # a cosine similarity, not a fused score


BAD_VARIANTS = {
    "negative": (dict(variants=-1, modifications=[edit("pattern", "floral")]), grpc.StatusCode.INVALID_ARGUMENT,
                 f"variants must be in 0..{MAX_VARIANTS}"),
    "too many": (dict(variants=MAX_VARIANTS + 1, modifications=[edit("pattern", "floral")]),
                 grpc.StatusCode.INVALID_ARGUMENT, f"variants must be in 0..{MAX_VARIANTS}"),
    "no edit": (dict(variants=2), grpc.StatusCode.INVALID_ARGUMENT, "needs an attribute edit"),
    "no multi-modal generator can": (dict(variants=2, modifications=[edit("color", "red")]),
                                     grpc.StatusCode.FAILED_PRECONDITION, "multi-modal generator"),
}


@pytest.mark.parametrize("case", list(BAD_VARIANTS))
def test_bad_variants_get_clear_status(stub, query, case: str) -> None:
    fields, code, needle = BAD_VARIANTS[case]
    image, _ = query
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(pb.SearchRequest(query=pb.Query(image=image), **fields), timeout=60)
    assert err.value.code() == code, err.value.details()
    assert needle in err.value.details()
    if "modifications" in fields:
        with pytest.raises(grpc.RpcError) as err:
            modify(stub, image, fields["modifications"], fields["variants"])
        assert err.value.code() == code and needle in err.value.details()


def test_cli_strength_and_variants(server, query, tmp_path: Path) -> None:
    image, _ = query
    q = tmp_path / "q.png"
    q.write_bytes(image)
    out = tmp_path / "floral.png"
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval", "search", "--server", server.address, "--image", str(q),
         "--edit", "pattern=floral", "--variants", "2", "--strength", "0.5", "-k", "3", "--save-modified", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    saved = [tmp_path / "floral_1.png", tmp_path / "floral_2.png"]
    assert all(Image.open(p).format == "PNG" for p in saved)
    assert "floral_1.png" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval", "search", "--server", server.address, "--image", str(q),
         "--edit", "color=red", "--strength", "2"], capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 1 and "INVALID_ARGUMENT" in proc.stderr and "strength" in proc.stderr
