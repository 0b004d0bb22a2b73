"""Attribute schema: which attribute groups a catalog has and which values each may take.

The schema is data (``schema.json``), not code, so a catalog from another shop with another
vocabulary (e.g. ``myntra-a``) works without code changes. Without a ``schema.json`` the
thesis vocabulary applies only to a catalog that fits it; otherwise the schema is inferred
from the catalog's values (the rule is in :mod:`catalog.loading`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from catalog.atomic import atomic_write_text

SCHEMA_FILE = "schema.json"

# The vocabulary of the thesis's scraped dataset (92,200 women's-clothing product photos).
THESIS_GROUPS: dict[str, list[str]] = {
    "category": ["blouses", "dresses", "jackets", "knitwear", "pants", "skirts", "tops"],
    "color": ["beige", "black", "blue", "gray", "green", "pink", "red", "white", "yellow"],
    "length": ["3-4", "knee", "long", "normal", "short"],
    "sleeve_length": ["half", "long", "short", "sleeveless"],
    "fit": ["loose", "normal", "tight"],
    "pattern": ["floral", "lace", "polkadots", "print", "stripes", "unicolors"],
    "neckline": ["back", "deep", "lines", "round", "v", "wide"],
}


class SchemaError(ValueError):
    """A schema file or an attribute value that does not fit the schema."""


@dataclass(frozen=True)
class Schema:
    """Ordered attribute groups, each with its ordered allowed values.

    Order matters: it fixes the one-hot column order and the label layout that the GAN
    generators and the encoder's attribute heads are trained with.
    """

    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {}
        for name, values in self.groups.items():
            if not name or not isinstance(name, str):
                raise SchemaError(f"group name must be a non-empty string, got {name!r}")
            vals = tuple(str(v) for v in values)
            if not vals:
                raise SchemaError(f"group {name!r} has no values")
            dupes = [v for v, c in Counter(vals).items() if c > 1]
            if dupes:
                raise SchemaError(f"group {name!r} lists values more than once: {dupes}")
            if any(v == "" for v in vals):
                raise SchemaError(f"group {name!r} has an empty value; empty means unknown")
            frozen[name] = vals
        object.__setattr__(self, "groups", frozen)

    # --- construction -------------------------------------------------------------------
    @classmethod
    def default(cls) -> Schema:
        return cls({k: tuple(v) for k, v in THESIS_GROUPS.items()})

    @classmethod
    def from_dict(cls, data: Mapping) -> Schema:
        groups = data.get("groups")
        if not isinstance(groups, Mapping):
            raise SchemaError("schema must be an object with a 'groups' object: {group: [values]}")
        for name, values in groups.items():
            if not isinstance(values, list):
                raise SchemaError(f"schema group {name!r}: values must be a list, got {type(values).__name__}")
        return cls({str(k): tuple(v) for k, v in groups.items()})

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def for_catalog(cls, root: str | Path) -> Schema:
        """The catalog's own ``schema.json`` if it has one, else the thesis default.

        For catalogs this project renders (which always carry a ``schema.json``). Loading a
        catalog applies the fuller rule of :mod:`catalog.loading` instead.
        """
        path = Path(root) / SCHEMA_FILE
        return cls.load(path) if path.exists() else cls.default()

    def to_dict(self) -> dict:
        return {"groups": {k: list(v) for k, v in self.groups.items()}}

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    # --- queries ------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.groups)

    def values(self, group: str) -> tuple[str, ...]:
        self.check_group(group)
        return self.groups[group]

    def check_group(self, group: str) -> None:
        if group not in self.groups:
            raise SchemaError(f"unknown attribute group {group!r}; groups are: {', '.join(self.groups)}")

    def check_value(self, group: str, value: str) -> None:
        self.check_group(group)
        if value not in self.groups[group]:
            raise SchemaError(
                f"value {value!r} is not allowed for group {group!r}; allowed: {', '.join(self.groups[group])}"
            )

    def index(self, group: str, value: str) -> int:
        """Class index of ``value`` within ``group`` (for classifiers and label vectors)."""
        self.check_value(group, value)
        return self.groups[group].index(value)

    def one_hot_columns(self) -> list[str]:
        """Column names of the thesis's ``img_attr.csv``: ``group_value`` for every value."""
        return [f"{g}_{v}" for g, vals in self.groups.items() for v in vals]

    @property
    def num_values(self) -> int:
        return sum(len(v) for v in self.groups.values())

    def offsets(self) -> dict[str, tuple[int, int]]:
        """Slice ``[start, end)`` of each group inside a concatenated one-hot vector."""
        out, start = {}, 0
        for g, vals in self.groups.items():
            out[g] = (start, start + len(vals))
            start += len(vals)
        return out

    def subset(self, groups: Iterable[str]) -> Schema:
        groups = list(groups)
        for g in groups:
            self.check_group(g)
        return Schema({g: self.groups[g] for g in groups})

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def infer_schema(
    rows: Iterable[Mapping[str, str]], groups: Iterable[str], min_count: int = 1
) -> tuple[Schema, dict[str, dict[str, int]]]:
    """Build a schema from the values present in ``rows``.

    Values seen fewer than ``min_count`` times are left out (they become "outside the
    schema" when validating), so rare typos and one-off labels do not become classes.
    Returns the schema and the full value counts, dropped values included.
    """
    groups = list(groups)
    counts: dict[str, Counter] = {g: Counter() for g in groups}
    for row in rows:
        for g in groups:
            v = (row.get(g) or "").strip()
            if v:
                counts[g][v] += 1
    kept = {}
    for g in groups:
        vals = sorted(v for v, c in counts[g].items() if c >= min_count)
        if not vals:
            raise SchemaError(f"group {g!r}: no value occurs at least {min_count} times")
        kept[g] = tuple(vals)
    return Schema(kept), {g: dict(counts[g].most_common()) for g in groups}
