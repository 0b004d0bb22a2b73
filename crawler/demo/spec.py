"""What one demo product is: its labels, its look, its German shop texts and its file names.

Everything is drawn from random streams derived from ``(seed, product index, stream)``, one
stream per concern, and every stream draws the same amount whatever the labels are. That is
what makes a re-render with one attribute changed (``render_variant``) differ from the
original in that attribute only: the colour jitter, the model's hair, the camera jitter and
the sensor noise all come from streams the labels never touch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from catalog import Schema, SchemaError

VOCAB_FILE = Path(__file__).with_name("vocab_de.json")

# Random streams (third element of the seed sequence).
STREAM_LABELS, STREAM_LOOK, STREAM_TEXTURE, STREAM_TEXT, STREAM_FILES = 0, 1, 2, 3, 4
STREAM_VIEW = 10  # + view number: camera jitter, background, noise, JPEG quality

VIEWS = ("product", "front_full", "back_full", "upper_close", "detail")
MODEL_VIEWS = VIEWS[1:]

TOPS = ("blouses", "jackets", "knitwear", "tops")
BOTTOMS = ("pants", "skirts")

# Which groups apply to which category. A group that does not apply is written as an empty
# cell (unknown): trousers have no sleeves and no neckline.
APPLIES: dict[str, tuple[str, ...]] = {
    "sleeve_length": ("blouses", "dresses", "jackets", "knitwear", "tops"),
    "neckline": ("blouses", "dresses", "jackets", "knitwear", "tops"),
}

# Lengths that exist per category: a top is cropped/normal/long, a dress, skirt or pair of
# trousers ends at the thigh, knee, calf or ankle.
LENGTHS: dict[str, tuple[str, ...]] = {
    "blouses": ("short", "normal", "long"),
    "jackets": ("short", "normal", "long"),
    "knitwear": ("short", "normal", "long"),
    "tops": ("short", "normal", "long"),
    "dresses": ("short", "knee", "3-4", "long"),
    "skirts": ("short", "knee", "3-4", "long"),
    "pants": ("short", "knee", "3-4", "long"),
}

# Pattern frequencies roughly like a shop: plain garments dominate.
PATTERN_WEIGHTS = {"unicolors": 0.30, "stripes": 0.14, "floral": 0.16, "polkadots": 0.13, "print": 0.15, "lace": 0.12}


@lru_cache(maxsize=1)
def vocab() -> dict:
    return json.loads(VOCAB_FILE.read_text(encoding="utf-8"))


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), int(stream)]))


def applies(group: str, category: str) -> bool:
    if group == "length":
        return True
    return category in APPLIES.get(group, (category,))


def length_for(category: str, drawn: float) -> str:
    """Map a uniform draw to a length valid for ``category`` (same draw, any category)."""
    options = LENGTHS[category]
    return options[min(int(drawn * len(options)), len(options) - 1)]


@dataclass(frozen=True)
class Look:
    """Everything about a product's appearance that is not an attribute label."""

    shade: int  # which colour wording / RGB of the colour label
    color_jitter: tuple[float, float, float]
    accent: tuple[int, int, int]  # second colour of prints and flowers
    accent2: tuple[int, int, int]
    stripe_angle: float
    stripe_period: float
    stripe_duty: float
    dot_period: float
    dot_radius: float
    shape: tuple[float, ...]  # small silhouette jitters in [-1, 1]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int  # 0 long, 1 bob, 2 bun, 3 ponytail/shoulder
    body_width: float
    arm_angle: float
    shoes: tuple[int, int, int]
    companion: tuple[int, int, int]  # colour of the neutral garment worn with the product
    light_angle: float
    detail_focus: tuple[float, float]


@dataclass(frozen=True)
class ProductSpec:
    """One product: ``labels`` holds a value for every group (including ones that do not
    apply to the category; those are blanked only in the catalog row)."""

    seed: int
    index: int
    id: str
    labels: dict[str, str]
    look: Look
    brand: str
    name: str
    tags: list[str]
    model_files: dict[str, str]  # view -> relative path
    model_order: tuple[str, ...]  # views in the order listed in the catalog row
    jpeg_quality: dict[str, int] = field(default_factory=dict)

    @property
    def category(self) -> str:
        return self.labels["category"]

    def catalog_labels(self, schema: Schema) -> dict[str, str | None]:
        return {g: (self.labels.get(g) if applies(g, self.category) else None) for g in schema.names}

    @property
    def img_path(self) -> str:
        return f"images/{self.id}.jpg"


def _pick(rng: np.random.Generator, options) -> object:
    return options[int(rng.integers(len(options)))]


def _draw_labels(seed: int, index: int) -> dict[str, str]:
    schema = Schema.default()
    rng = rng_for(seed, index, STREAM_LABELS)
    u = rng.random(8)
    cats = schema.values("category")
    category = cats[min(int(u[0] * len(cats)), len(cats) - 1)]
    colors = schema.values("color")
    pats = list(PATTERN_WEIGHTS)
    cum = np.cumsum([PATTERN_WEIGHTS[p] for p in pats])
    pattern = pats[int(np.searchsorted(cum, u[5] * cum[-1]))]

    def uni(group: str, x: float) -> str:
        vals = schema.values(group)
        return vals[min(int(x * len(vals)), len(vals) - 1)]

    return {
        "category": category,
        "color": colors[min(int(u[1] * len(colors)), len(colors) - 1)],
        "length": length_for(category, u[2]),
        "sleeve_length": uni("sleeve_length", u[3]),
        "fit": uni("fit", u[4]),
        "pattern": pattern,
        "neckline": uni("neckline", u[6]),
        "_length_draw": f"{u[2]:.6f}",
    }


def _draw_look(seed: int, index: int) -> Look:
    r = rng_for(seed, index, STREAM_LOOK)
    skins = [(240, 205, 180), (226, 182, 150), (205, 160, 120), (176, 126, 88), (140, 96, 64), (98, 66, 44)]
    hairs = [(30, 24, 20), (62, 40, 26), (104, 70, 40), (196, 160, 100), (150, 70, 36), (20, 18, 18), (225, 200, 150)]
    accents = [(250, 250, 248), (30, 30, 34), (220, 60, 70), (240, 200, 60), (60, 120, 200), (60, 150, 90), (240, 150, 180),
               (120, 70, 150), (240, 130, 40)]
    shoe_cols = [(30, 30, 32), (120, 80, 50), (235, 235, 230), (190, 160, 130)]
    skin = _pick(r, skins)
    hair_i = int(r.integers(len(hairs)))
    # hair the colour of the skin would make the head one blob (no face, no back of head)
    while max(abs(a - b) for a, b in zip(hairs[hair_i], skin, strict=True)) < 60:
        hair_i = (hair_i + 1) % len(hairs)
    return Look(
        shade=int(r.integers(1000)),
        color_jitter=tuple(float(x) for x in r.uniform(-1, 1, 3)),
        accent=_pick(r, accents),
        accent2=_pick(r, accents),
        stripe_angle=float(_pick(r, [0.0, 0.0, 0.0, 90.0, 45.0])),
        stripe_period=float(r.uniform(26, 48)),
        stripe_duty=float(r.uniform(0.3, 0.5)),
        dot_period=float(r.uniform(34, 56)),
        dot_radius=float(r.uniform(0.16, 0.26)),
        shape=tuple(float(x) for x in r.uniform(-1, 1, 8)),
        skin=skin,
        hair=hairs[hair_i],
        hair_style=int(r.integers(4)),
        body_width=float(r.uniform(0.93, 1.07)),
        arm_angle=float(r.uniform(11, 17)),
        shoes=_pick(r, shoe_cols),
        companion=_pick(r, [(40, 52, 90), (30, 30, 34), (235, 235, 232), (150, 150, 150), (70, 90, 130)]),
        light_angle=float(r.uniform(0, 2 * np.pi)),
        detail_focus=(float(r.uniform(-1, 1)), float(r.uniform(-1, 1))),
    )


def color_wording(color: str, shade: int) -> tuple[str, tuple[int, int, int]]:
    options = vocab()["colors"][color]
    word, rgb = options[shade % len(options)]
    return word, tuple(rgb)


def _text(labels: dict[str, str], look: Look, seed: int, index: int, sku: str) -> tuple[str, str, list[str]]:
    """Brand, product name and the raw German attribute tags (shuffled, with extras)."""
    v = vocab()
    r = rng_for(seed, index, STREAM_TEXT)
    u = r.random(32)  # fixed amount of randomness, whatever the labels
    cat = labels["category"]
    brand = v["brands"][int(u[0] * len(v["brands"])) % len(v["brands"])][0]

    def choose(options: list, x: float):
        return options[min(int(x * len(options)), len(options) - 1)]

    # --- tags -------------------------------------------------------------------------
    tags = []
    keys = v["tag_keys"]
    values = v["values"]
    tags.append(f"{choose(keys['category'], u[1])}: {choose(values['category'][cat], u[2])}")
    color_word, _ = color_wording(labels["color"], look.shade)
    tags.append(f"{choose(keys['color'], u[3])}: {color_word}")
    if applies("sleeve_length", cat):
        tags.append(f"{choose(keys['sleeve_length'], u[4])}: {choose(values['sleeve_length'][labels['sleeve_length']], u[5])}")
    len_keys = keys["length"].get(cat, keys["length"]["default"])
    len_words = values["length"][labels["length"]]
    kind = cat if cat in len_words else ("tops" if cat in TOPS and "tops" in len_words else "default")
    tags.append(f"{choose(len_keys, u[6])}: {choose(len_words[kind], u[7])}")
    tags.append(f"{choose(keys['fit'], u[8])}: {choose(values['fit'][labels['fit']], u[9])}")
    tags.append(f"{choose(keys['pattern'], u[10])}: {choose(values['pattern'][labels['pattern']], u[11])}")
    if applies("neckline", cat):
        tags.append(f"{choose(keys['neckline'], u[12])}: {choose(values['neckline'][labels['neckline']], u[13])}")
    n_extra = 1 + int(u[14] * 3)
    groups = v["extra_tags"]
    start = int(u[15] * len(groups))
    for k in range(n_extra):
        group = groups[(start + k) % len(groups)]
        tags.append(choose(group, u[16 + k]).replace("{sku}", sku))
    # last draw of this stream, so its length varying with the labels shifts nothing else
    tags = [tags[i] for i in r.permutation(len(tags))]

    # --- name -------------------------------------------------------------------------
    names = v["names"]
    noun = choose(names["nouns"][cat], u[20])
    style = int(u[21] * 4)
    if cat == "pants":
        noun = names["pants_length_prefix"][labels["length"]] + noun
    elif cat in ("dresses", "skirts"):
        noun = names["dress_length_prefix"][labels["length"]] + noun
    if applies("sleeve_length", cat) and style in (0, 1):
        noun = names["sleeve_prefix"][labels["sleeve_length"]] + noun
    parts = [noun]
    if applies("neckline", cat) and style in (0, 2):
        parts.append(names["neck_phrase"][labels["neckline"]])
    else:
        parts.append(choose(names["pattern_phrase"][labels["pattern"]], u[22]))
    if style == 1:
        parts.append(names["fit_suffix"][labels["fit"]])
    if style == 3:
        parts.append(f"„{choose(names['given'], u[23])}“")
    return brand, " ".join(parts), tags


def make_spec(seed: int, index: int, changes: dict[str, str] | None = None) -> ProductSpec:
    """The product at ``index`` of the catalog rendered with ``seed``, optionally with some
    attribute values replaced (see :func:`check_changes`)."""
    labels = _draw_labels(seed, index)
    length_draw = float(labels.pop("_length_draw"))
    if changes:
        labels = {**labels, **changes}
        # a new category may not have the original length (a top is never knee-long): map the
        # same random draw onto the new category's lengths
        if "length" not in changes and labels["length"] not in LENGTHS[labels["category"]]:
            labels["length"] = length_for(labels["category"], length_draw)
    look = _draw_look(seed, index)
    fr = rng_for(seed, index, STREAM_FILES)
    sku_code = "".join(_pick(fr, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(5))
    v = vocab()
    tr = rng_for(seed, index, STREAM_TEXT)
    brand_code = v["brands"][int(tr.random() * len(v["brands"])) % len(v["brands"])][1]
    pid = f"{brand_code}{sku_code}-{index:05d}"
    brand, name, tags = _text(labels, look, seed, index, pid)
    files = {view: f"model_images/{pid}_{fr.integers(16**8):08x}.jpg" for view in MODEL_VIEWS}
    order = tuple(MODEL_VIEWS[i] for i in fr.permutation(len(MODEL_VIEWS)))
    quality = {view: int(q) for view, q in zip(VIEWS, fr.integers(82, 96, len(VIEWS)), strict=True)}
    return ProductSpec(seed, index, pid, labels, look, brand, name, tags, files, order, quality)


def check_changes(spec: ProductSpec, changes: dict[str, str], schema: Schema | None = None) -> None:
    """Raise :class:`SchemaError` naming what is allowed when a change cannot be drawn."""
    schema = schema or Schema.default()
    for group, value in changes.items():
        schema.check_value(group, value)
    category = changes.get("category", spec.category)
    for group, value in changes.items():
        if group == "category":
            continue
        if not applies(group, category):
            cats = ", ".join(APPLIES[group])
            raise SchemaError(
                f"group {group!r} does not apply to category {category!r} (product {spec.id}); "
                f"it applies to: {cats}"
            )
        if group == "length" and value not in LENGTHS[category]:
            raise SchemaError(
                f"length {value!r} does not exist for category {category!r} (product {spec.id}); "
                f"allowed: {', '.join(LENGTHS[category])}"
            )


def with_labels(spec: ProductSpec, labels: dict[str, str]) -> ProductSpec:
    return replace(spec, labels=labels)
