"""How every command loads a catalog: which schema it gets, and when a loss is too large to go on.

One rule, used by ``catalog validate``, ``indexing build/add/train-encoder/export-encoder``,
``generators.pairs``, ``generators.train`` and the server's ``AddItems``:

1. **The schema.** ``--schema FILE`` wins, then ``--infer-schema GROUPS`` (inferred from those
   columns), then the catalog's own ``schema.json``. A catalog with none of these keeps the
   *default vocabulary* (the thesis vocabulary; when adding to an index, the index's schema)
   only when it **fits** it: every value that occurs at least ``min_count`` times in the
   catalog's attribute columns (the columns named like the default's groups) is in the default.
   Rarer strays (typos, one-off labels) do not decide the vocabulary; they skip their row, as
   before. A catalog that does not fit gets a schema **inferred** from those same columns, with
   values seen fewer than ``min_count`` times kept as unknown; a column in which no value
   reaches ``min_count`` is left out and kept as an extra column. Columns not named like a
   default group stay extra columns; name them in ``--infer-schema`` to make them groups.
2. **The loss.** When more than ``max_skipped`` of the rows would be skipped (for any reason),
   the command stops with :class:`TooManySkippedError`, whose message names the top reasons and
   the flags that fix or accept the loss. Below it, skipped rows are reported as before.

Why: a real shop's catalog without ``schema.json`` used to be judged against the thesis
vocabulary, so 97 % of its rows were skipped, each correctly reported, by a command that
still exited 0.

The one-call API for a command (see :func:`add_catalog_options`)::

    add_catalog_options(parser)                                   # the shared flags
    cat = open_catalog(args.catalog, options_from_args(args))     # raises TooManySkippedError
    print(cat.counts_line())                                      # kept / skipped / total
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from catalog.format import VALUE_OUTSIDE_SCHEMA, Catalog, CatalogError, load_catalog
from catalog.images import DEFAULT_LIMITS, ImageLimits
from catalog.schema import SCHEMA_FILE, Schema, SchemaError, infer_schema

DEFAULT_MIN_COUNT = 5  # values seen fewer times do not become classes of an inferred schema
DEFAULT_MAX_SKIPPED = 0.05  # a larger share of skipped rows stops a command
UNKNOWN_VALUES = ("skip", "unknown")


@dataclass(frozen=True)
class LoadOptions:
    """How a command loads its catalog (the shared flags, see :func:`add_catalog_options`).

    ``schema_file``: ``--schema``. ``infer_groups``: ``--infer-schema`` columns. ``min_count``:
    values seen fewer times are left out of an inferred schema. ``max_skipped``: the largest
    share of rows that may be skipped (0..1). ``unknown_values``: what a value outside the
    schema does, ``"skip"`` its row or keep it as ``"unknown"``; ``None`` means ``"unknown"``
    for an inferred schema (its rare values were left out on purpose) and ``"skip"`` otherwise.
    ``default_schema``: the vocabulary a catalog without ``schema.json`` keeps when it fits
    (``None``: the thesis vocabulary).
    """

    schema_file: Path | None = None
    infer_groups: tuple[str, ...] = ()
    min_count: int = DEFAULT_MIN_COUNT
    max_skipped: float = DEFAULT_MAX_SKIPPED
    unknown_values: str | None = None
    default_schema: Schema | None = None

    def __post_init__(self) -> None:
        if self.schema_file is not None and self.infer_groups:
            raise CatalogError("--schema and --infer-schema exclude each other: give one")
        if self.min_count < 1:
            raise CatalogError(f"--min-count must be at least 1, got {self.min_count}")
        if not 0.0 <= self.max_skipped <= 1.0:
            raise CatalogError(f"--max-skipped must be a share between 0 and 1, got {self.max_skipped}")
        if self.unknown_values is not None and self.unknown_values not in UNKNOWN_VALUES:
            raise CatalogError(f"--unknown-values must be one of {UNKNOWN_VALUES}, got {self.unknown_values!r}")


@dataclass(frozen=True)
class SchemaChoice:
    """The schema a catalog is loaded with, where it came from (for summaries and manifests),
    and whether it was inferred (then rare values are kept as unknown by default)."""

    schema: Schema
    source: str
    inferred: bool = False


def choose_schema(root: Path, header: list[str], rows: Sequence[tuple[int, list[str]]],
                  options: LoadOptions) -> SchemaChoice:
    """Rule 1 of the module docstring, on the catalog's raw header and rows."""
    if options.schema_file is not None:
        return SchemaChoice(Schema.load(options.schema_file), f"{options.schema_file} (--schema)")
    if options.infer_groups:
        groups = list(options.infer_groups)
        missing = [g for g in groups if g not in header]
        if missing:
            raise CatalogError(f"--infer-schema names columns not in {root}/catalog.csv: {missing}; "
                               f"columns: {', '.join(header)}")
        try:
            schema, _ = infer_schema(_dict_rows(header, rows, groups), groups, options.min_count)
        except SchemaError as exc:
            raise SchemaError(f"--infer-schema: {exc}; lower --min-count (now {options.min_count})") from None
        return SchemaChoice(schema, f"inferred from {', '.join(groups)} (--infer-schema, values seen at least "
                                    f"{options.min_count} times)", inferred=True)
    own = Path(root) / SCHEMA_FILE
    if own.is_file():
        return SchemaChoice(Schema.load(own), f"{own}")
    given = options.default_schema if options.default_schema is not None and options.default_schema.names else None
    default = given or Schema.default()
    name = "the index's schema" if given else "the thesis vocabulary"
    groups = [g for g in default.names if g in header]
    counts = _value_counts(header, rows, groups)
    foreign = {g: [v for v, n in counts[g].most_common() if n >= options.min_count and v not in default.groups[g]]
               for g in groups}
    foreign = {g: vals for g, vals in foreign.items() if vals}
    if not foreign:
        return SchemaChoice(default, f"{name} (no {SCHEMA_FILE}; every value seen at least {options.min_count} "
                                     f"times fits it)")
    kept = {g: tuple(sorted(v for v, n in counts[g].items() if n >= options.min_count)) for g in groups}
    left_out = [g for g, vals in kept.items() if not vals]
    schema = Schema({g: vals for g, vals in kept.items() if vals})
    g0, vals0 = next(iter(foreign.items()))
    n_foreign = sum(len(vals) for vals in foreign.values())
    why = f"{vals0[0]!r} in {g0}" + (f" and {n_foreign - 1} more values" if n_foreign > 1 else "")
    source = (f"inferred from {', '.join(schema.names)} (no {SCHEMA_FILE}; {why} not in {name}; values seen at "
              f"least {options.min_count} times)")
    if left_out:
        source += f"; left out (no value seen {options.min_count} times): {', '.join(left_out)}"
    return SchemaChoice(schema, source, inferred=True)


def _dict_rows(header: list[str], rows: Sequence[tuple[int, list[str]]], groups: list[str]) -> list[dict[str, str]]:
    pos = {g: header.index(g) for g in groups}
    return [{g: (r[i] if i < len(r) else "") for g, i in pos.items()} for _, r in rows]


def _value_counts(header: list[str], rows: Sequence[tuple[int, list[str]]], groups: list[str]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {g: Counter() for g in groups}
    for row in _dict_rows(header, rows, groups):
        for g, v in row.items():
            if v.strip():
                counts[g][v.strip()] += 1
    return counts


# --- rule 2: the skipped share ---------------------------------------------------------------------
class TooManySkippedError(CatalogError):
    """More than the allowed share of a catalog's rows would be skipped; the message says why
    (top reasons, with an example row each) and which flags fix or accept it."""

    def __init__(self, message: str, catalog: Catalog, share: float, max_skipped: float) -> None:
        super().__init__(message)
        self.catalog = catalog
        self.share = share
        self.max_skipped = max_skipped


Advice = Callable[[Catalog, float], list[tuple[str, str]]]  # (what to do, what it does)


def accepting_share(share: float) -> float:
    """The smallest two-decimal ``--max-skipped`` that accepts ``share`` (0.3 -> 0.3, 0.301 -> 0.31)."""
    return min(1.0, math.ceil(share * 100 - 1e-9) / 100)


def schema_columns(cat: Catalog) -> list[str]:
    """The catalog's attribute columns, in header order: its schema's groups and the thesis group names."""
    names = set(cat.schema.names) | set(Schema.default().names)
    return [c for c in cat.columns if c in names]


def cli_advice(cat: Catalog, share: float) -> list[tuple[str, str]]:
    """The flags of :func:`add_catalog_options` that fix or accept the loss."""
    reasons = cat.skipped_by_reason()
    out = []
    if VALUE_OUTSIDE_SCHEMA in reasons:
        groups = ",".join(schema_columns(cat)) or "GROUPS"
        out += [(f"--infer-schema {groups}", "a schema from the catalog's own values (rarer than --min-count: unknown)"),
                ("--schema FILE", f"a schema.json that lists these values (python -m catalog infer-schema {cat.root} "
                                  f"--groups {groups} writes one)"),
                ("--unknown-values unknown", "keep these rows, with the values outside the schema as unknown")]
    if set(reasons) - {VALUE_OUTSIDE_SCHEMA}:
        out.append(("fix the rows", f"python -m catalog validate {cat.root} --verbose lists every one"))
    if cat.items:
        out.append((f"--max-skipped {accepting_share(share):g}",
                    f"accept the loss: go on with the {len(cat.items):,} rows that load"))
    return out


def check_skipped(cat: Catalog, max_skipped: float, advice: Advice = cli_advice) -> None:
    """Rule 2: raise :class:`TooManySkippedError` when more than ``max_skipped`` of the rows are skipped.

    ``advice`` words the fixes for the caller (CLI flags by default; the server names its
    request field instead).
    """
    total = cat.total_rows
    if total == 0:
        return
    share = len(cat.issues) / total
    if share <= max_skipped:
        return
    lines = [f"catalog {cat.root}: {len(cat.issues):,} of {total:,} rows ({share:.1%}) would be skipped, more than "
             f"the allowed {max_skipped:.1%}",
             f"  schema: {cat.schema_source}",
             "  top reasons:"]
    for reason, n in list(cat.skipped_by_reason().items())[:3]:
        first = next(i for i in cat.issues if i.reason == reason)
        lines.append(f"    {reason}: {n:,} rows, e.g. {_clip(str(first), 160)}")
        if reason == VALUE_OUTSIDE_SCHEMA:
            lines.append(f"      most frequent: {_outside_values(cat)}")
    lines.append("  to fix or accept it:")
    advice_lines = advice(cat, share)
    width = max(len(what) for what, _ in advice_lines)
    lines += [f"    {what.ljust(width)}  {why}" for what, why in advice_lines]
    raise TooManySkippedError("\n".join(lines), cat, share, max_skipped)


def _outside_values(cat: Catalog, top: int = 6) -> str:
    c = Counter((i.field, i.value) for i in cat.issues if i.reason == VALUE_OUTSIDE_SCHEMA)
    return ", ".join(f"{g} {v!r} x{n:,}" for (g, v), n in c.most_common(top))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# --- the one call a command makes ---------------------------------------------------------------------
def open_catalog(root: str | Path, options: LoadOptions | None = None, check_images: bool = True,
                 image_limits: ImageLimits = DEFAULT_LIMITS) -> Catalog:
    """Load ``root`` for a command: the schema by rule 1, then the skipped-share check of rule 2.

    ``image_limits``: rows whose image header declares a size outside them are skipped (and
    count towards the loss), as in :func:`catalog.format.load_catalog`.
    Raises :class:`CatalogError` (a :class:`TooManySkippedError` for a large loss) or
    :class:`SchemaError`; the returned catalog's ``schema_source`` says which schema was used.
    """
    options = options or LoadOptions()
    cat = load_catalog(root, check_images=check_images, options=options, image_limits=image_limits)
    check_skipped(cat, options.max_skipped)
    return cat


# --- argparse --------------------------------------------------------------------------------------------
def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """Add the shared catalog-loading flags: ``--schema``, ``--infer-schema GROUPS``,
    ``--min-count N``, ``--max-skipped FRACTION``, ``--unknown-values skip|unknown``."""
    g = parser.add_argument_group("catalog loading (a catalog without schema.json keeps the thesis vocabulary "
                                  "only if it fits it, else its schema is inferred)")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--schema", type=Path, metavar="FILE", help="schema.json to load the catalog with")
    which.add_argument("--infer-schema", metavar="GROUPS",
                       help="comma-separated columns to infer the schema from (instead of schema.json or the rule)")
    g.add_argument("--min-count", type=_positive_int, default=DEFAULT_MIN_COUNT,
                   help=f"an inferred schema leaves out values seen fewer times (default {DEFAULT_MIN_COUNT})")
    g.add_argument("--max-skipped", type=_share, default=DEFAULT_MAX_SKIPPED, metavar="FRACTION",
                   help=f"stop when more than this share of rows would be skipped (default {DEFAULT_MAX_SKIPPED})")
    g.add_argument("--unknown-values", choices=UNKNOWN_VALUES, default=None,
                   help="a value outside the schema skips its row or is kept as unknown "
                        "(default: unknown for an inferred schema, else skip)")


def options_from_args(args: argparse.Namespace, default_schema: Schema | None = None) -> LoadOptions:
    """The :class:`LoadOptions` of the flags :func:`add_catalog_options` added."""
    groups = tuple(g.strip() for g in (args.infer_schema or "").split(",") if g.strip())
    if args.infer_schema is not None and not groups:
        raise CatalogError("--infer-schema: give comma-separated column names, e.g. category,color")
    return LoadOptions(schema_file=args.schema, infer_groups=groups, min_count=args.min_count,
                       max_skipped=args.max_skipped, unknown_values=args.unknown_values,
                       default_schema=default_schema)
