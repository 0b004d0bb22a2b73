"""Worn photos over gRPC: ``SearchRequest.views``, hits that name the matched photo, and the
``model_to_product`` modification, against a real server process on a real socket."""

from __future__ import annotations

import io
import json
from pathlib import Path

import grpc
import pytest
from PIL import Image

from retrieval.client import RetrievalClient

ROOT = Path(__file__).resolve().parents[2]


def _front_pairs(catalog_dir: Path, out: Path) -> Path:
    """A pairs file from the renderer's ground truth (the test's stand-in for generators.pairs)."""
    truth = json.loads((catalog_dir / "ground_truth.json").read_text())
    from catalog import load_catalog

    with open(out, "w", encoding="utf-8") as fh:
        for it in load_catalog(catalog_dir).items:
            front = next(p for p in it.model_img_paths if truth[p] == "front_full")
            fh.write(json.dumps({"id": it.id, "product_path": it.img_path, "model_path": front}) + "\n")
    return out


@pytest.fixture(scope="module")
def worn(make_demo_catalog, tmp_path_factory, server_process, admin_token):
    """A server over an index with product and model photos, with a model->product cut-out (its
    region picker trained for two steps here) and the committed product->model demo checkpoint."""
    from catalog import load_catalog
    from generators.options import defaults_for
    from generators.train import train
    from indexing.build import BuildConfig, build
    from indexing.encoder import Encoder

    tmp = tmp_path_factory.mktemp("worn")
    demo = make_demo_catalog(8, 0)
    encoder = Encoder.load(None, "cpu")
    cat = load_catalog(demo)
    build(cat, tmp / "both", encoder, BuildConfig(index="flat", num_workers=0, progress=False, views=("product", "model")))
    build(cat, tmp / "product", encoder, BuildConfig(index="flat", num_workers=0, progress=False))

    cfg = defaults_for("cutout")
    cfg.train.image_size, cfg.train.steps, cfg.train.threads = 64, 2, 1
    cfg.train.pairs = str(_front_pairs(demo, tmp / "pairs.jsonl"))
    cfg.train.sample_every = cfg.train.checkpoint_every = 2
    cfg.cutout.pose_models = str(ROOT / "models" / "pose")
    run = train(cfg, demo, tmp / "m2p", progress=False, tensorboard=False)

    (tmp / "token").write_text(admin_token + "\n")
    # the cut-out translates both ways: model -> product by cutting out, product -> model by dressing
    srv = server_process(["--index", str(tmp / "both"), "--generators", str(run.last_checkpoint),
                          "--admin-token-file", str(tmp / "token")], tmp / "server.log")
    with RetrievalClient(srv.address, admin_token=admin_token) as c:
        c.wait_until_serving(timeout=180)
    yield srv, cat, tmp
    assert srv.stop(timeout=180) == 0, srv.log()  # a loaded machine can take long to exit


@pytest.fixture()
def client(worn):
    with RetrievalClient(worn[0].address, admin_token=(worn[2] / "token").read_text().strip()) as c:
        yield c


def test_list_attributes_reports_views_and_both_translations(client):
    attrs = client.list_attributes()
    assert list(attrs.views) == ["product", "model"]
    assert attrs.model_to_product and attrs.product_to_model
    kinds = {(g.model_to_product, g.product_to_model) for g in attrs.generators}
    assert kinds == {(True, True)}


def test_search_views_over_grpc(client, worn):
    _, cat, _ = worn
    item = cat.items[2]
    photo = item.model_img_paths[0]
    data = (cat.root / photo).read_bytes()
    model = client.search(data, views=["model"], top_k=3)
    assert model.hits[0].id == item.id and model.hits[0].view == "model"
    assert model.hits[0].matched_image_path == photo and model.hits[0].score > 0.99
    both = client.search(data, views=["product", "model"], top_k=8)
    assert len(both.hits) == 8 and len({h.id for h in both.hits}) == 8 and both.hits[0].matched_image_path == photo
    plain = client.search(data, top_k=8)  # empty views: the product shots
    assert {h.view for h in plain.hits} == {"product"}
    assert all(h.matched_image_path == h.item.image_path for h in plain.hits)


def test_a_bad_view_is_invalid_argument_naming_the_views(client):
    with pytest.raises(grpc.RpcError) as err:
        client.search(item_id="x", views=["worn"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown view 'worn'; views: product, model" in err.value.details()
    assert client.health() == "SERVING"


def test_product_to_model_searches_the_model_photos_by_default(client, worn):
    _, cat, _ = worn
    resp = client.search(item_id=cat.items[0].id, modifications=["to_model"], top_k=5)
    assert resp.hits and {h.view for h in resp.hits} == {"model"}
    assert all(h.matched_image_path.startswith("model_images/") for h in resp.hits)
    asked = client.search(item_id=cat.items[0].id, modifications=["to_model"], views=["product"], top_k=5)
    assert {h.view for h in asked.hits} == {"product"}


def test_model_to_product_round_trip(client, worn):
    _, cat, _ = worn
    item = cat.items[5]
    data = (cat.root / item.model_img_paths[0]).read_bytes()
    png = client.modify(data, modifications=["to_product"])
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"
    resp = client.search(data, modifications=["to_product"], top_k=4, return_modified_image=True)
    assert resp.modified_image == png  # the same translation, then a search over the product shots
    assert len(resp.hits) == 4 and {h.view for h in resp.hits} == {"product"}
    assert [t.stage for t in resp.timings][:3] == ["model_queue", "decode", "modify"]


def test_cli_search_views_and_to_product(worn, capsys):
    from retrieval.__main__ import main

    srv, cat, _ = worn
    photo = cat.root / cat.items[1].model_img_paths[0]
    assert main(["search", "--server", srv.address, "--image", str(photo), "--views", "model", "-k", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["id"] == cat.items[1].id and out["hits"][0]["view"] == "model"
    assert main(["search", "--server", srv.address, "--image", str(photo), "--to-product", "-k", "2"]) == 0
    assert " product " in capsys.readouterr().out
    assert main(["search", "--server", srv.address, "--image", str(photo), "--views", "back"]) == 1
    assert "INVALID_ARGUMENT: views: unknown view 'back'" in capsys.readouterr().err


def test_index_without_model_photos_is_failed_precondition(client, worn):
    _, cat, tmp = worn
    client.reload(tmp / "product")
    try:
        assert list(client.list_attributes().views) == ["product"]
        with pytest.raises(grpc.RpcError) as err:
            client.search(item_id=cat.items[0].id, views=["model"])
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "this index has no model photos (indexed views: product)" in err.value.details()
        assert "--views product,model" in err.value.details()
        # product_to_model without views falls back to the product shots there
        resp = client.search(item_id=cat.items[0].id, modifications=["to_model"], top_k=3)
        assert {h.view for h in resp.hits} == {"product"}
    finally:
        client.reload(tmp / "both")
    assert list(client.list_attributes().views) == ["product", "model"]
