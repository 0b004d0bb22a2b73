"""The neckline step: openings found, exemplars banked, the target's opening painted, abstentions."""

from __future__ import annotations

import numpy as np
import torch

from generators.models.neckline import fit_neckline_bank, neckline_shift, opening_maps

SIZE = 128
CLOTH = (200, 120, 60)


def _shirt(neck: str, dx: int = 0, dy: int = 0, cloth: tuple[int, int, int] = CLOTH) -> np.ndarray:
    """A garment on white with a round or V opening at its top edge, showing the darker inside."""
    a = np.full((SIZE, SIZE, 3), 255, np.uint8)
    x0, x1, y0, y1 = 30 + dx, 98 + dx, 16 + dy, 120 + dy
    a[y0:y1, x0:x1] = cloth
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cx = (x0 + x1) / 2
    if neck == "round":
        hole = (((xx - cx) / 14.0) ** 2 + ((yy - y0) / 14.0) ** 2 <= 1) & (yy >= y0)
    else:
        hole = (yy >= y0) & (yy <= y0 + 40) & (np.abs(xx - cx) <= 16 * (1 - (yy - y0) / 40.0))
    a[hole] = (np.array(cloth) * 0.6).astype(np.uint8)
    return a


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)[None]


def _bank() -> dict[str, torch.Tensor]:
    imgs, values = [], []
    for v, neck in enumerate(("round", "v")):
        for dx, dy in ((0, 0), (2, 1), (-2, 0), (1, -1), (-1, 2), (0, 1)):
            imgs.append(_t(_shirt(neck, dx, dy)))
            values.append(v)
    x = torch.cat(imgs)
    return fit_neckline_bank(x, torch.zeros(len(x), dtype=torch.long), torch.tensor(values), 1, 2, 8)


def _signed(a: np.ndarray) -> torch.Tensor:
    return _t(a).float() / 127.5 - 1


def test_openings_are_found_at_the_top_edge_and_not_in_the_cloth() -> None:
    openings, garment, _ = opening_maps(_signed(_shirt("v")).add(1).div(2))
    assert bool(garment[0, 60, 48]) and float(openings.sum()) > 20
    ys = torch.nonzero(openings[0])[:, 0].float()
    assert float(ys.max()) < 96 * 0.5, "the opening is in the garment's top half"
    plain = _signed(_shirt("v"))
    plain[..., 60:70, 55:65] = plain[..., 60:70, 55:65] * 0.5  # a dark patch away from the top edge
    assert float(opening_maps((plain + 1) / 2)[0][0, 44:, :].sum()) == 0, "print away from the top is cloth"


def test_the_bank_keeps_exemplars_and_learns_the_inside_shade() -> None:
    bank = _bank()
    assert bank["counts"].tolist() == [[6, 6]]
    assert 0.5 < float(bank["shade"]) < 0.7, "the inside is 0.6 of the cloth"
    assert int(bank["windows"][0, 0, 0].sum()) < int(bank["windows"][0, 1, 0].sum()), "a V is larger than a round"


def test_round_to_v_moves_toward_the_true_v_and_leaves_the_rest_bit_exact() -> None:
    bank = _bank()
    x, truth = _signed(_shirt("round", 1, 0)), _signed(_shirt("v", 1, 0))
    y = neckline_shift(x, bank, torch.tensor([1]), torch.tensor([0]))
    assert float((y - truth).abs().mean()) < 0.5 * float((x - truth).abs().mean())
    assert torch.equal(y[..., 80:, :], x[..., 80:, :]), "below the opening nothing changes"
    assert torch.equal(neckline_shift(x, bank, torch.tensor([1]), torch.tensor([0]), strength=0.0), x)
    assert torch.equal(neckline_shift(x, bank, torch.tensor([-1]), torch.tensor([0])), x), "-1: not named"
    # an unknown anchor (-1) searches every anchor's exemplars
    assert torch.equal(neckline_shift(x, bank, torch.tensor([1]), torch.tensor([-1])), y)
    # a batch edits each row as alone; a row not named stays as it is
    both = neckline_shift(torch.cat([x, x]), bank, torch.tensor([1, -1]), torch.tensor([0, 0]))
    assert torch.allclose(both[:1], y, atol=1e-6) and torch.equal(both[1:], x)


def test_dark_or_busy_garments_are_left_alone() -> None:
    bank = _bank()
    dark = _signed(_shirt("round", cloth=(30, 30, 40)))
    assert torch.equal(neckline_shift(dark, bank, torch.tensor([1]), torch.tensor([0])), dark)
    busy = _shirt("round")
    busy[30:118:6, 32:96] = (60, 40, 20)  # dark stripes over the whole garment
    b = _signed(busy)
    assert torch.equal(neckline_shift(b, bank, torch.tensor([1]), torch.tensor([0])), b)


def test_on_a_rendered_catalog_the_edits_it_makes_land_closer_to_the_true_rerendering(make_demo_catalog,
                                                                                      tmp_path) -> None:
    """Bank fitted on the training split; each held-out neckline photo asked for another value
    its category has; the renderer's re-rendering is the truth."""
    from PIL import Image

    from catalog import load_catalog
    from catalog.split import holdout_mask
    from crawler.demo.render import render_variant

    cat = load_catalog(make_demo_catalog(160, 4), check_images=False)
    schema = cat.schema
    held = holdout_mask([it.id for it in cat.items], 0.3)

    def load(path, size: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB").resize((size, size)), np.uint8).copy()
                                ).permute(2, 0, 1)

    def idx(it, g: str) -> int:
        return schema.values(g).index(it.labels[g]) if it.labels.get(g) else -1

    train = [it for it, h in zip(cat.items, held, strict=True) if not h]
    bank = fit_neckline_bank(torch.stack([load(cat.image_path(it), 96) for it in train]),
                             torch.tensor([idx(it, "category") for it in train]),
                             torch.tensor([idx(it, "neckline") for it in train]),
                             len(schema.values("category")), len(schema.values("neckline")), 24)
    seen = {(it.labels["category"], it.labels["neckline"]) for it in train if it.labels.get("neckline")}
    gains, applied = [], 0
    for it in [it for it, h in zip(cat.items, held, strict=True) if h and it.labels.get("neckline")]:
        v = next((v for v in schema.values("neckline") if v != it.labels["neckline"]
                  and (it.labels["category"], v) in seen), None)
        if v is None:
            continue
        render_variant(cat.root, it.id, {"neckline": v}, tmp_path / f"{it.id}.png")
        x = load(cat.image_path(it), 256).float()[None] / 127.5 - 1
        truth = load(tmp_path / f"{it.id}.png", 256).float()[None] / 127.5 - 1
        y = neckline_shift(x, bank, torch.tensor([schema.values("neckline").index(v)]),
                           torch.tensor([idx(it, "category")]))
        if torch.equal(y, x):
            continue
        applied += 1
        gains.append(float((x - truth).abs().mean() - (y - truth).abs().mean()))
    assert applied >= 3, "the step edits some of the held-out photos"
    assert float(np.mean(gains)) > 0, f"closer to the truth on average: {gains}"


def test_maskedit_ships_the_bank_and_old_checkpoints_load_without_it(make_demo_catalog, tmp_path) -> None:
    """Two training steps on a rendered catalog fit the bank into the generator; a checkpoint
    from before the step loads and edits without it."""
    from generators.checkpoint import load_checkpoint, save_checkpoint
    from generators.inference import load_editor
    from generators.train import main as train_main

    run = tmp_path / "run"
    assert train_main(["--model", "maskedit", "--catalog", str(make_demo_catalog(160, 4)), "--out", str(run), "--steps", "2",
                       "--batch-size", "2", "--image-size", "64", "--quiet", "--no-tensorboard", "--threads", "1",
                       "--set", "maskedit.judge_steps=2", "--set", "maskedit.palette_tune=false"]) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    g = ckpt["nets"]["G"]
    assert int(g["neck_counts"].sum()) > 20 and 0.3 < float(g["neck_shade"]) < 0.9
    editor = load_editor(run, device="cpu")
    assert editor.impl.neck is not None
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    assert editor.edit(x, {"neckline": "v"}).shape == x.shape
    for key in ("neck_keys", "neck_windows", "neck_counts", "neck_shade"):
        del g[key]
    old = load_editor(save_checkpoint(tmp_path / "before_neckline.pt", ckpt), device="cpu")
    assert old.impl.neck is None and old.impl.G.neck_keys is None
    assert old.edit(x, {"neckline": "v"}).shape == x.shape
