"""Evaluate a trained generator: does the edit do what was asked, and does it keep the rest?

    python -m generators.evaluate --run RUN_DIR|CHECKPOINT --catalog DIR [--variant-of] --out JSON

For an attribute editor (StarGAN), every evaluated product gets, for each editable group whose
value is known, one edit to a different value (drawn with a fixed seed). Reported:

- **edit success**: share of edits that the independent attribute classifier
  (:mod:`generators.evaluate.classifier`, trained on the catalog's real photos, held-out accuracy in the
  report) reads as the target value, overall and per group; next to it the classifier's
  accuracy on the unedited inputs, the ceiling that success can be read against;
- **kept**: share of the *other* groups that the classifier reads the same before and after;
- **preservation**: L1 and SSIM of the edited image to its input, and with ``--variant-of``
  (demo catalogs only) to the renderer's true re-rendering of the product with the changed
  attribute (``crawler.demo.render.render_variant``), plus the input-to-truth distance as a
  reference (an editor that returns its input unchanged scores exactly that);
- **Fréchet distance** between real product photos and edited images in the project
  encoder's feature space (``indexing.encoder.Encoder``; the built-in EfficientNet-Lite0
  unless ``--encoder`` names a trained one).

For a product→model translator (pix2pix, CycleGAN with ``to_model``): L1 and SSIM of the
generated model photo to the true front full-body model photo of products the run did not
train on (truth from ``ground_truth.json``, else from ``--pairs``), and the Fréchet distance
between real and generated model photos.

All images are compared at the generator's working size (64/128/256 px), in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from catalog import Catalog, atomic_write_text, load_catalog
from catalog.images import square_on_white
from generators.evaluate.classifier import AttributeClassifier, ClassifierConfig, load_or_fit

GROUND_TRUTH_FILE = "ground_truth.json"


class EvaluationError(ValueError):
    """Arguments or artefacts that do not allow an evaluation."""


# --------------------------------------------------------------------------------------------
# image metrics
# --------------------------------------------------------------------------------------------
def to_float_tensor(images: list[Image.Image], size: int) -> torch.Tensor:
    """PIL images → ``[N, 3, size, size]`` in [0, 1] (padded square on white, bicubic)."""
    out = [np.asarray(square_on_white(im, size), dtype=np.float32) / 255.0 for im in images]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in out])


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, images in [0, 1]."""
    return (a - b).abs().flatten(1).mean(1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (Wang et al. 2004): 11×11 Gaussian window σ=1.5, K1=0.01, K2=0.03.

    Computed per colour channel over the 'valid' window positions and averaged, as the
    reference implementation does for grey images.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ssim needs two [N, C, H, W] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    c = a.shape[1]
    w = _gaussian_window(window, sigma).to(a)[None, None].repeat(c, 1, 1, 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a, b = a.double(), b.double()
    w = w.double()
    mu_a = F.conv2d(a, w, groups=c)
    mu_b = F.conv2d(b, w, groups=c)
    saa = F.conv2d(a * a, w, groups=c) - mu_a**2
    sbb = F.conv2d(b * b, w, groups=c) - mu_b**2
    sab = F.conv2d(a * b, w, groups=c) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return (num / den).flatten(1).mean(1).float()


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``tr sqrt(S1 S2)`` is computed without a d×d matrix square root: with centred data
    ``X`` (n1×d) and ``Y`` (n2×d) scaled so that ``S1 = XᵀX`` and ``S2 = YᵀY``, the non-zero
    eigenvalues of ``S1 S2`` are those of ``(X Yᵀ)(X Yᵀ)ᵀ``, so the trace is the sum of the
    singular values of ``X Yᵀ`` (n1×n2) — exact, and ~1000× faster than ``scipy.linalg.sqrtm``
    on 1280-d features. With more samples than dimensions the symmetric form
    ``eig(S1^½ S2 S1^½)`` is used instead.

    With fewer samples than dimensions the covariances are singular and the value carries a
    sample-size bias: compare numbers only at equal sample counts (the report has them).
    """
    if len(x) < 2 or len(y) < 2:
        raise EvaluationError("Fréchet distance needs at least two images on each side")
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mu1, mu2 = x.mean(0), y.mean(0)
    xc = (x - mu1) / np.sqrt(len(x) - 1)
    yc = (y - mu2) / np.sqrt(len(y) - 1)
    tr1, tr2 = float((xc**2).sum()), float((yc**2).sum())
    d = x.shape[1]
    if min(len(x), len(y)) <= d:
        cross = float(np.linalg.svd(xc @ yc.T, compute_uv=False).sum())
    else:
        w, v = np.linalg.eigh(xc.T @ xc)
        root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        ev = np.linalg.eigvalsh(root1 @ (yc.T @ yc) @ root1)
        cross = float(np.sqrt(np.clip(ev, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * cross)


class FeatureSpace:
    """Features for the Fréchet distance: the project encoder, else raw Lite0 pooled features."""

    def __init__(self, encoder: str | None, size: int, device: str) -> None:
        self.size = size
        try:
            from indexing.encoder import Encoder
        except ImportError:
            from generators.evaluate.classifier import FeatureExtractor

            self._fx = FeatureExtractor(size, "cpu")
            self.name = "efficientnet-lite0 avg-pooled (indexing.encoder unavailable)"
            self._enc = None
            return
        self._enc = Encoder.load(encoder, device=device)
        self.name = f"indexing.encoder.Encoder {self._enc.encoder_id}"

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        # Real photos are first brought to the generator's size so both sides are equally sharp.
        imgs = [im.convert("RGB").resize((self.size, self.size), Image.BICUBIC) for im in images]
        if self._enc is not None:
            return self._enc.embed_images(imgs).astype(np.float64)
        return self._fx(imgs).astype(np.float64)


# --------------------------------------------------------------------------------------------
# checkpoint / editor
# --------------------------------------------------------------------------------------------
def editable_groups(caps: dict, catalog: Catalog) -> tuple[dict[str, list[str]], list[dict[str, str]] | None]:
    """``({group: values}, fixed_edits)`` the editor can do, from ``Editor.capabilities()``.

    ``fixed_edits`` is set for editors that do only specific edits (a CycleGAN trained on
    two domains, e.g. ``{"pattern": "stripes"}``); None when any value may be asked for.
    """
    edit = caps.get("edit")
    if not isinstance(edit, dict):
        return {}, None
    groups = edit.get("groups") or {}
    out = {g: list(v) if v else list(catalog.schema.groups.get(g, ())) for g, v in groups.items()}
    fixed = edit.get("edits")
    return out, ([dict(e) for e in fixed] if fixed else None)


def image_size_of(caps: dict, default: int = 64) -> int:
    for key in ("image_size", "size", "resolution"):
        if isinstance(caps.get(key), int):
            return int(caps[key])
    return default


@dataclass
class EvalConfig:
    items: int = 48  # products evaluated (drawn with the seed; classifier held-out ones first)
    seed: int = 0
    batch_size: int = 16
    variant_of: bool = False
    device: str = "auto"
    encoder: str | None = None  # None: the built-in encoder
    classifier_dir: str | None = None  # cache of the classifier (default next to the output)
    pairs: str | None = None  # truth for to_model when there is no ground_truth.json


def _batched(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _summary(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def evaluate_edits(
    editor, catalog: Catalog, clf: AttributeClassifier, groups: dict[str, list[str]], size: int,
    cfg: EvalConfig, features: FeatureSpace | None, fixed_edits: list[dict[str, str]] | None = None,
    pass_labels: bool = True,
) -> dict:
    rng = random.Random(cfg.seed)
    heldout = set(clf.report.get("heldout_ids", []))
    items = sorted(catalog.items, key=lambda it: (it.id not in heldout, it.id))[: cfg.items]
    # One edit per (item, group with a known value): a different value of that group. With
    # --variant-of the value must be one the renderer can draw for this product (a knitted
    # top has no 3/4 length), so candidates are tried in random order until one renders.
    variant_tmp = tempfile.TemporaryDirectory(prefix="variants-") if cfg.variant_of else None
    render_variant = None
    if cfg.variant_of:
        from catalog import SchemaError
        from crawler.demo.render import render_variant
    jobs: dict[tuple[str, str], list] = defaultdict(list)
    truth_paths: dict[tuple[str, str, str], Path] = {}
    skipped_no_truth = 0

    def choose(it, g: str, candidates: list[str]) -> str | None:
        nonlocal skipped_no_truth
        rng.shuffle(candidates)
        if render_variant is None:
            return candidates[0] if candidates else None
        for v in candidates:
            out_path = Path(variant_tmp.name) / f"{it.id}_{g}_{v}.png"
            try:
                render_variant(catalog.root, it.id, {g: v}, out_path)
            except SchemaError:
                continue
            truth_paths[(it.id, g, v)] = out_path
            return v
        skipped_no_truth += 1
        return None

    for it in items:
        if fixed_edits is not None:  # e.g. CycleGAN: each of its edits on items not already there
            for e in fixed_edits:
                ((g, v),) = e.items()
                if it.labels.get(g) not in (None, v) and choose(it, g, [v]) is not None:
                    jobs[(g, v)].append(it)
            continue
        for g, vals in groups.items():
            cur = it.labels.get(g)
            if cur is None:
                continue
            v = choose(it, g, [x for x in vals if x != cur])
            if v is not None:
                jobs[(g, v)].append(it)
    if not jobs:
        raise EvaluationError("no edit to evaluate: no evaluated item has a known value in an editable group")
    inputs_cache: dict[str, Image.Image] = {it.id: _open(catalog.image_path(it)) for it in items}
    # The classifier reads each input once: its value per group before any edit.
    ins = [inputs_cache[it.id] for it in items]
    pred_all = clf.predict(ins)
    pred_by_id = {it.id: {g: pred_all[g][k] for g in pred_all} for k, it in enumerate(items)}
    per_group: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    done: list[tuple[str, str, list, list[Image.Image]]] = []  # (group, value, items, outputs)
    t0 = time.perf_counter()
    for (g, v), its in sorted(jobs.items()):
        for chunk in _batched(its, cfg.batch_size):
            ins = [inputs_cache[it.id] for it in chunk]
            if pass_labels:  # StarGAN keeps unnamed groups; give it the catalog's known labels
                outs = editor.edit(ins, {g: v}, source_labels=[dict(it.labels) for it in chunk])
            else:
                outs = editor.edit(ins, {g: v})
            done.append((g, v, chunk, list(outs)))
    seconds = time.perf_counter() - t0
    generated = [im for *_, outs in done for im in outs]
    n_edits = len(generated)
    # The classifier reads every output in one batched pass (its trunk dominates the cost).
    pred_gen = clf.predict(generated)
    k = 0
    for g, v, chunk, outs in done:
        n = len(outs)
        pred_out = {og: pred_gen[og][k : k + n] for og in pred_gen}
        k += n
        pred_in = {og: [pred_by_id[it.id][og] for it in chunk] for og in pred_all}
        ins = [inputs_cache[it.id] for it in chunk]
        x_in, x_out = to_float_tensor(ins, size), to_float_tensor(outs, size)
        rec = per_group[g]
        rec["l1_input"] += l1(x_out, x_in).tolist()
        rec["ssim_input"] += ssim(x_out, x_in).tolist()
        if g in pred_out:
            rec["success"] += [p == v for p in pred_out[g]]
        for og in pred_out:
            if og != g:
                rec["kept"] += [a == b for a, b in zip(pred_in[og], pred_out[og], strict=True)]
        if render_variant is not None:
            truths = [_open(truth_paths[(it.id, g, v)]) for it in chunk]
            x_true = to_float_tensor(truths, size)
            rec["l1_truth"] += l1(x_out, x_true).tolist()
            rec["ssim_truth"] += ssim(x_out, x_true).tolist()
            rec["l1_input_to_truth"] += l1(x_in, x_true).tolist()
            rec["ssim_input_to_truth"] += ssim(x_in, x_true).tolist()
    if variant_tmp is not None:
        variant_tmp.cleanup()
    # Classifier on the unedited inputs against the catalog labels: the ceiling for success.
    pred = pred_all
    input_acc = {}
    for g in groups:
        if g in pred:
            pairs = [(p, it.labels.get(g)) for p, it in zip(pred[g], items, strict=True) if it.labels.get(g)]
            if pairs:
                input_acc[g] = float(np.mean([p == t for p, t in pairs]))

    def agg(key: str) -> dict:
        vals = [x for rec in per_group.values() for x in rec.get(key, [])]
        return _summary([float(x) for x in vals])

    out = {
        "items": len(items),
        "edits": n_edits,
        "skipped_without_renderable_target": skipped_no_truth,
        "edit_seconds": round(seconds, 3),
        "edit_success": agg("success").get("mean"),
        "kept_other_groups": agg("kept").get("mean"),
        "classifier_accuracy_on_inputs": input_acc,
        "preservation": {"l1_to_input": agg("l1_input"), "ssim_to_input": agg("ssim_input")},
        "per_group": {
            g: {k: _summary([float(x) for x in vals]) for k, vals in rec.items()} for g, rec in sorted(per_group.items())
        },
    }
    if cfg.variant_of:
        out["preservation"].update({
            "l1_to_true_variant": agg("l1_truth"), "ssim_to_true_variant": agg("ssim_truth"),
            "reference_input_to_true_variant": {"l1": agg("l1_input_to_truth"), "ssim": agg("ssim_input_to_truth")},
        })
    if features is not None:
        real = features([inputs_cache[it.id] for it in items])
        fake = features(generated)
        out["frechet_distance"] = {"value": frechet_distance(real, fake), "real": len(real), "generated": len(fake),
                                   "feature_space": features.name}
    return out


def _true_front_photos(catalog: Catalog, pairs_file: str | None) -> dict[str, str]:
    gt_path = catalog.root / GROUND_TRUTH_FILE
    if gt_path.is_file():
        gt = json.loads(gt_path.read_text())
        out = {}
        for it in catalog.items:
            fronts = [p for p in it.model_img_paths if gt.get(p) == "front_full"]
            if fronts:
                out[it.id] = fronts[0]
        return out, "ground_truth.json"
    if pairs_file:
        from generators.pairs import read_pairs

        return {r["id"]: r["model_path"] for r in read_pairs(pairs_file)}, f"pairs file {pairs_file}"
    raise EvaluationError(
        f"{catalog.root}: no {GROUND_TRUTH_FILE}; pass --pairs FILE to say which model photo is the truth"
    )


def _trained_ids(run_config: dict | None) -> set[str] | None:
    """Ids the run trained pix2pix on (first ``max_items`` lines of its pairs file), if known."""
    if not run_config:
        return None
    t = run_config.get("train", {})
    if not t.get("pairs") or not Path(t["pairs"]).is_file():
        return None
    from generators.pairs import read_pairs

    rows = read_pairs(t["pairs"])
    if t.get("max_items"):
        rows = rows[: t["max_items"]]
    return {r["id"] for r in rows}


def evaluate_to_model(editor, catalog: Catalog, size: int, cfg: EvalConfig, features: FeatureSpace | None,
                      run_config: dict | None) -> dict:
    truth, source = _true_front_photos(catalog, cfg.pairs)
    trained = _trained_ids(run_config)
    by_id = catalog.by_id()
    ids = sorted(i for i in truth if i in by_id)
    heldout = [i for i in ids if trained is not None and i not in trained]
    used_heldout = bool(heldout)
    ids = (heldout or ids)[: cfg.items]
    if not ids:
        raise EvaluationError("no product with a true front model photo to compare to_model against")
    l1s, ssims, gen, real = [], [], [], []
    t0 = time.perf_counter()
    for chunk in _batched(ids, cfg.batch_size):
        prods = [_open(catalog.image_path(by_id[i])) for i in chunk]
        trues = [_open(catalog.root / truth[i]) for i in chunk]
        outs = editor.to_model(prods)
        a, b = to_float_tensor(outs, size), to_float_tensor(trues, size)
        l1s += l1(a, b).tolist()
        ssims += ssim(a, b).tolist()
        gen += outs
        real += trues
    out = {
        "products": len(ids),
        "truth": source,
        "heldout": used_heldout,
        "note": None if used_heldout else "the run trained on every product with a true photo (or its training set is unknown); numbers are on training products",
        "seconds": round(time.perf_counter() - t0, 3),
        "l1_to_true_model_photo": _summary(l1s),
        "ssim_to_true_model_photo": _summary(ssims),
    }
    if features is not None and len(gen) >= 2:
        out["frechet_distance"] = {"value": frechet_distance(features(real), features(gen)),
                                   "real": len(real), "generated": len(gen), "feature_space": features.name}
    return out


def _run_config(run: Path) -> dict | None:
    for p in ([run / "config.json"] if run.is_dir() else [run.parent / "config.json", run.parent.parent / "config.json"]):
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except json.JSONDecodeError:
                return None
    return None


def evaluate(run: str | Path, catalog_dir: str | Path, cfg: EvalConfig | None = None, progress: bool = False) -> dict:
    """Evaluate the checkpoint ``run`` (a checkpoint file or a run folder) on ``catalog_dir``."""
    from generators.inference import load_editor

    cfg = cfg or EvalConfig()
    run = Path(run)
    if not run.exists():
        raise EvaluationError(f"--run {run}: no such checkpoint or run folder")
    catalog = load_catalog(catalog_dir, check_images=False)
    if cfg.variant_of and not (catalog.root / GROUND_TRUTH_FILE).is_file():
        raise EvaluationError(f"--variant-of needs a demo catalog rendered by crawler.demo ({catalog.root} has no {GROUND_TRUTH_FILE})")
    t0 = time.perf_counter()
    editor = load_editor(run, device=cfg.device)
    caps = editor.capabilities()
    size = image_size_of(caps)
    all_groups, fixed = editable_groups(caps, catalog)
    groups = {g: v for g, v in all_groups.items() if g in catalog.schema.groups}
    report: dict = {
        "run": str(run),
        "catalog": str(catalog.root),
        "catalog_checksum": catalog.checksum(),
        "image_size": size,
        "capabilities": caps,
        "config": asdict(cfg),
    }
    features = FeatureSpace(cfg.encoder, size, cfg.device)
    report["feature_space"] = features.name
    if groups:
        clf_cfg = ClassifierConfig(resolution=size, seed=cfg.seed)
        clf = load_or_fit(catalog, cfg.classifier_dir, clf_cfg, progress)
        rep = {k: v for k, v in clf.report.items() if k != "heldout_ids"}
        report["classifier"] = {"kind": "frozen EfficientNet-Lite0 (ImageNet) + per-group logistic heads",
                                "resolution": size, **rep}
        report["edits"] = evaluate_edits(editor, catalog, clf, groups, size, cfg, features, fixed,
                                         pass_labels=caps.get("model") == "stargan")
    if caps.get("to_model"):
        run_cfg = editor.cfg.to_dict() if hasattr(editor, "cfg") else _run_config(run)
        report["to_model"] = evaluate_to_model(editor, catalog, size, cfg, features, run_cfg)
    if "edits" not in report and "to_model" not in report:
        raise EvaluationError(f"{run}: the editor can neither edit this catalog's groups nor translate to model photos "
                              f"(capabilities: {caps})")
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generators.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a checkpoint file or a run folder")
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="JSON report to write")
    ap.add_argument("--variant-of", action="store_true", help="demo catalogs: compare with the true re-rendering")
    ap.add_argument("--items", type=int, default=EvalConfig.items)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--encoder", default=None, help="encoder folder for the Fréchet distance (default: built-in)")
    ap.add_argument("--classifier", default=None, help="classifier cache folder (default: OUT's folder/classifier_<size>)")
    ap.add_argument("--pairs", default=None, help="to_model truth when the catalog has no ground_truth.json")
    args = ap.parse_args(argv)
    cfg = EvalConfig(items=args.items, seed=args.seed, batch_size=args.batch_size, variant_of=args.variant_of,
                     device=args.device, encoder=args.encoder, classifier_dir=args.classifier, pairs=args.pairs)
    if cfg.classifier_dir is None:
        cfg.classifier_dir = str(args.out.parent / f".classifier_{args.out.stem}")
    try:
        report = evaluate(args.run, args.catalog, cfg, progress=True)
    except (EvaluationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
    ed = report.get("edits", {})
    tm = report.get("to_model", {})
    if ed:
        print(f"edit success {ed['edit_success']:.3f}  kept {ed['kept_other_groups']}  "
              f"L1 {ed['preservation']['l1_to_input']['mean']:.4f}  SSIM {ed['preservation']['ssim_to_input']['mean']:.4f}")
    if tm:
        print(f"to_model L1 {tm['l1_to_true_model_photo']['mean']:.4f}  SSIM {tm['ssim_to_true_model_photo']['mean']:.4f}")
    print(f"report -> {args.out}")
    return 0


