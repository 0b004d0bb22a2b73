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

For a multi-modal editor (MUNIT) the report adds ``variants`` (diversity of ``--variants``
answers per edit, and success@10 of their fused search against the single edit), and for a
continuous one (Fader, maskedit) ``sliders`` (monotonicity over strengths 0, 0.25, ..., 1);
see :mod:`generators.evaluate.variants`. ``--strip PNG`` writes their picture.

For a translator in either direction on a demo catalog (pix2pix ``to_model`` or
``to_product``): retrieval of the same product with the translated photo, next to the
untranslated photo and the truth (:mod:`generators.evaluate.worn`), and a PNG grid
(input | translation | truth) next to the report.

All images are compared at the generator's working size (64/128/256 px), in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from catalog import Catalog, atomic_write_text, load_catalog
from generators.evaluate.classifier import ClassifierConfig, load_or_fit
from generators.evaluate.common import GROUND_TRUTH_FILE, EvalConfig, EvaluationError
from generators.evaluate.edits import editable_groups, evaluate_edits, image_size_of
from generators.evaluate.metrics import FeatureSpace, frechet_distance, l1, ssim, to_float_tensor
from generators.evaluate.translation import evaluate_to_model

__all__ = ["GROUND_TRUTH_FILE", "EvalConfig", "EvaluationError", "FeatureSpace", "evaluate", "evaluate_edits",
           "evaluate_to_model", "frechet_distance", "l1", "main", "ssim", "to_float_tensor"]


def _run_config(run: Path) -> dict | None:
    for p in ([run / "config.json"] if run.is_dir() else [run.parent / "config.json", run.parent.parent / "config.json"]):
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except json.JSONDecodeError:
                return None
    return None


def search_editors(editor, catalog: Catalog, cfg: EvalConfig, holdout: float) -> dict:
    """The editor under test and, for the groups it edits, the non-learned baselines next to it
    (colour: the LAB mean and palette shifts; length, sleeve length, fit: the silhouette shift)."""
    from catalog.split import holdout_mask
    from generators.evaluate.baselines import non_learned_baselines

    editors = {editor.capabilities().get("model", "editor"): editor}
    groups = (editor.capabilities().get("edit") or {}).get("groups") or {}
    if cfg.baseline:
        held = holdout_mask([it.id for it in catalog.items], holdout)
        train_items = [it for it, h in zip(catalog.items, held, strict=True) if not h]
        editors.update(non_learned_baselines(catalog, train_items, list(groups)))
    return editors


def edited_search_report(editor, catalog: Catalog, cfg: EvalConfig, progress: bool = False):
    """success@10 of edited queries next to the unedited query and the truth (or the oracle filter)."""
    from generators.evaluate.search import SearchEvalConfig, edited_search
    from indexing.encoder import Encoder

    holdout = cfg.holdout
    if holdout is None:
        holdout = getattr(getattr(editor, "cfg", None), "train", None) and editor.cfg.train.holdout or 0.3
    encoder = Encoder.load(cfg.encoder, device=cfg.device)
    scfg = SearchEvalConfig(queries_per_group=cfg.queries_per_group, holdout=holdout, seed=cfg.seed,
                            batch_size=cfg.batch_size, groups=cfg.groups)
    result = edited_search(search_editors(editor, catalog, cfg, holdout), catalog, encoder, scfg,
                           cache_dir=cfg.cache_dir, progress=progress)
    trained = getattr(getattr(editor, "cfg", None), "train", None)
    if trained is not None and not trained.holdout:
        result.report["note"] = "the run held out no products (train.holdout = 0): queries may have been trained on"
    return result


def diverse_and_sliders(editor, catalog: Catalog, cfg: EvalConfig, size: int, progress: bool = False) -> dict:
    """``variants`` for a multi-modal editor, ``sliders`` for a continuous one (and the strip)."""
    from generators.evaluate.variants import STRENGTHS, slider_report, strip, variants_report
    from indexing.encoder import Encoder

    caps = editor.capabilities()
    holdout = cfg.holdout if cfg.holdout is not None else (editor.cfg.train.holdout or 0.3)
    out: dict = {}
    rows = []
    if caps.get("multi_modal"):
        encoder = Encoder.load(cfg.encoder, device=cfg.device)
        out["variants"], shown = variants_report(editor, catalog, encoder, cfg.variants, cfg.queries_per_group,
                                                 holdout, seed=cfg.seed, progress=progress)
        rows = [(f"{s['edit']}\n{s['id']}", s["input"], s["variants"]) for s in shown]
        captions = [f"variant {i + 1}" for i in range(cfg.variants)]
    elif caps.get("continuous"):
        clf = load_or_fit(catalog, cfg.classifier_dir, ClassifierConfig(resolution=size, seed=cfg.seed), progress)
        out["sliders"], shown = slider_report(editor, catalog, clf, cfg.groups, min(cfg.queries_per_group, 20),
                                              holdout, seed=cfg.seed, pass_labels=caps.get("model") != "maskedit")
        rows = [(f"{s['edit']}\n{s['id']}", s["input"], s["outputs"]) for s in shown]
        captions = [f"strength {s:g}" for s in STRENGTHS]
    if cfg.strip and rows:
        strip(rows, captions).save(cfg.strip)
        out["strip"] = str(cfg.strip)
    return out


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
    if groups and cfg.search:
        report["edited_search"] = edited_search_report(editor, catalog, cfg, progress).report
    if groups and cfg.classifier_report:
        clf_cfg = ClassifierConfig(resolution=size, seed=cfg.seed)
        clf = load_or_fit(catalog, cfg.classifier_dir, clf_cfg, progress)
        rep = {k: v for k, v in clf.report.items() if k != "heldout_ids"}
        report["classifier"] = {"kind": "frozen EfficientNet-Lite0 (ImageNet) + per-group logistic heads",
                                "resolution": size, **rep}
        report["edits"] = evaluate_edits(editor, catalog, clf, groups, size, cfg, features, fixed,
                                         pass_labels=caps.get("model") == "stargan")
    if caps.get("multi_modal") or (caps.get("continuous") and groups):
        report.update(diverse_and_sliders(editor, catalog, cfg, size, progress))
    if caps.get("to_model"):
        run_cfg = editor.cfg.to_dict() if hasattr(editor, "cfg") else _run_config(run)
        report["to_model"] = evaluate_to_model(editor, catalog, size, cfg, features, run_cfg)
    if (caps.get("to_model") or caps.get("to_product")) and cfg.worn \
            and (catalog.root / GROUND_TRUTH_FILE).is_file():
        from generators.evaluate.worn import worn_search
        from indexing.encoder import Encoder

        grid = Path(cfg.classifier_dir or ".").parent / f"worn_{Path(run).stem}.png" if cfg.classifier_dir else None
        report["worn_search"] = worn_search(
            catalog, Encoder.load(cfg.encoder, device=cfg.device), to_model=editor if caps.get("to_model") else None,
            to_product=editor if caps.get("to_product") else None, grid_path=grid, progress=progress)
    if not {"edits", "to_model", "edited_search", "worn_search"} & set(report):
        raise EvaluationError(f"{run}: the editor can neither edit this catalog's groups nor translate between product "
                              f"and model photos (capabilities: {caps})")
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
    ap.add_argument("--encoder", default=None,
                    help="encoder folder for the edited search and the Fréchet distance (default: built-in); "
                         "use the index's encoder")
    ap.add_argument("--classifier", default=None, help="classifier cache folder (default: OUT's folder/classifier_<size>)")
    ap.add_argument("--pairs", default=None, help="to_model truth when the catalog has no ground_truth.json")
    ap.add_argument("--queries", type=int, default=EvalConfig.queries_per_group,
                    help="edited search: held-out queries per group")
    ap.add_argument("--holdout", type=float, default=None,
                    help="edited search: the hash split of held-out products (default: the run's train.holdout)")
    ap.add_argument("--no-search", action="store_true", help="skip the edited-search report")
    ap.add_argument("--groups", help="edited search: comma-separated groups (default: every editable one)")
    ap.add_argument("--no-baseline", action="store_true", help="edited search without the LAB colour shift")
    ap.add_argument("--no-classifier", action="store_true", help="skip the classifier-judged edit report")
    ap.add_argument("--variants", type=int, default=EvalConfig.variants,
                    help="multi-modal editors: variants per edit for diversity and fused search")
    ap.add_argument("--strip", type=Path, help="write a PNG strip: input, then the variants or the strengths")
    ap.add_argument("--no-worn", action="store_true", help="translators: skip the search with translated photos")
    args = ap.parse_args(argv)
    cfg = EvalConfig(items=args.items, seed=args.seed, batch_size=args.batch_size, variant_of=args.variant_of,
                     device=args.device, encoder=args.encoder, classifier_dir=args.classifier, pairs=args.pairs,
                     search=not args.no_search, queries_per_group=args.queries, holdout=args.holdout,
                     baseline=not args.no_baseline, classifier_report=not args.no_classifier, worn=not args.no_worn,
                     groups=args.groups.split(",") if args.groups else None, variants=args.variants,
                     strip=str(args.strip) if args.strip else None)
    if cfg.classifier_dir is None:
        cfg.classifier_dir = str(args.out.parent / f".classifier_{args.out.stem}")
    cfg.cache_dir = str(args.out.parent / ".eval_cache")
    try:
        report = evaluate(args.run, args.catalog, cfg, progress=True)
    except (EvaluationError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
    ed = report.get("edits", {})
    tm = report.get("to_model", {})
    es = report.get("edited_search")
    if es:
        k = es["k"]
        for scope in ("headline", "overall"):
            sc = es[scope]
            row = "  ".join(f"{n} {v:.3f}" for n, v in sc[f"success@{k}"].items() if v is not None)
            print(f"edited search, {scope} ({', '.join(sc['groups'])}): success@{k} {row}")
    if ed:
        print(f"edit success {ed['edit_success']:.3f}  kept {ed['kept_other_groups']}  "
              f"L1 {ed['preservation']['l1_to_input']['mean']:.4f}  SSIM {ed['preservation']['ssim_to_input']['mean']:.4f}")
    if report.get("variants"):
        ov = report["variants"]["overall"]
        print(f"variants: pairwise L1 {ov['pairwise_l1_pixels']:.4f}  encoder cosine distance "
              f"{ov['pairwise_cosine_distance_encoder']:.4f}  success@{report['variants']['k']} "
              + "  ".join(f"{n} {v:.3f}" for n, v in ov[f"success@{report['variants']['k']}"].items()))
    if report.get("sliders"):
        ov = report["sliders"]["overall"]
        print(f"sliders: monotone probability {ov['monotone_probability']}  monotone distance "
              f"{ov['monotone_distance']}  strength-0 L1 {ov['strength0_l1_to_input'].get('mean')}")
    if tm:
        print(f"to_model L1 {tm['l1_to_true_model_photo']['mean']:.4f}  SSIM {tm['ssim_to_true_model_photo']['mean']:.4f}")
    ws = report.get("worn_search")
    if ws:
        for direction in ("product_to_model", "model_to_product"):
            row = "  ".join(f"{n} {v:.3f}" for n, v in ws[direction].items() if isinstance(v, float))
            print(f"worn search {direction} (recall@{ws['k']}): {row}")
    print(f"report -> {args.out}")
    return 0
