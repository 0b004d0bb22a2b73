"""German shop tags -> the schema's English attribute values, driven by a vocabulary file.

The thesis mapped tags by the first substring that matched, so "lang" in "Langarm" set the
dress *length*, and "weit" meant loose or wide depending on which rule came first. Here:

* a tag ``"Key: Value"`` is routed to one attribute group by its key ("Ärmellänge" is
  sleeve_length, "Länge" is length), so "kurz" means short sleeves in one and a short dress
  in the other;
* terms match whole tokens only ("rock" never matches inside "Pullover"), and the longest
  term wins ("tiefer V-Ausschnitt" is deep, not v);
* a tag without a key counts only when exactly one group recognises its value;
* every value the vocabulary can produce is checked against the output schema.

The vocabulary (``crawler/vocab/de.json``) is data: a shop with other words needs a new file,
not new code.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from catalog.schema import Schema, SchemaError

DEFAULT_VOCAB = Path(__file__).with_name("vocab") / "de.json"

# "3/4" and "7/8" stay one token; everything else splits on non-letters ("V-Ausschnitt" -> v, ausschnitt).
_TOKEN = re.compile(r"\d+/\d+|[^\W_]+")


def tokenize(text: str) -> tuple[str, ...]:
    text = unicodedata.normalize("NFC", text).casefold().replace("ß", "ss")
    return tuple(_TOKEN.findall(text))


def split_tag(tag: str) -> tuple[str, str]:
    """``"Ärmellänge: Kurzarm"`` -> ``("Ärmellänge", "Kurzarm")``; no colon -> ``("", tag)``."""
    key, sep, value = tag.partition(":")
    if not sep:
        return "", tag.strip()
    return key.strip(), value.strip()


def _contains(tokens: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class _Term:
    tokens: tuple[str, ...]
    value: str

    @property
    def specificity(self) -> tuple[int, int]:
        return (len(self.tokens), sum(len(t) for t in self.tokens))


@dataclass
class _Group:
    name: str
    keys: list[tuple[str, ...]]
    terms: list[_Term]  # most specific first
    compound_heads: bool

    def match(self, value: str) -> str | None:
        tokens = tokenize(value)
        for term in self.terms:
            if _contains(tokens, term.tokens):
                return term.value
        if self.compound_heads:
            # German compounds carry their meaning in the last part: "Sommerkleid" is a Kleid.
            for term in self.terms:
                single = len(term.tokens) == 1 and len(term.tokens[0]) >= 3
                if single and any(t.endswith(term.tokens[0]) for t in tokens):
                    return term.value
        return None


@dataclass
class Normalized:
    """Labels read from one product's tags, and the tags that said nothing usable."""

    labels: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


class Normalizer:
    """Maps tags to ``{group: value}`` for the groups that both the vocabulary and schema have."""

    def __init__(self, vocab: dict, schema: Schema) -> None:
        self.schema = schema
        self.groups: list[_Group] = []
        problems = []
        for name, spec in vocab.get("groups", {}).items():
            if name not in schema.groups:
                continue  # the output schema does not use this group; its tags stay raw
            terms = []
            for value, words in spec.get("values", {}).items():
                try:
                    schema.check_value(name, value)
                except SchemaError as exc:
                    problems.append(str(exc))
                    continue
                terms += [_Term(tokenize(w), value) for w in words if tokenize(w)]
            terms.sort(key=lambda t: t.specificity, reverse=True)
            keys = sorted({tokenize(k) for k in spec.get("keys", []) if tokenize(k)}, key=len, reverse=True)
            self.groups.append(_Group(name, keys, terms, bool(spec.get("compound_heads", False))))
        if problems:
            raise SchemaError("vocabulary maps to values outside the output schema: " + "; ".join(problems))

    @classmethod
    def load(cls, schema: Schema, path: str | Path | None = None) -> Normalizer:
        path = Path(path) if path else DEFAULT_VOCAB
        try:
            vocab = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: vocabulary is not valid JSON: {exc}") from exc
        if not isinstance(vocab.get("groups"), dict):
            raise SchemaError(f"{path}: vocabulary needs a 'groups' object")
        return cls(vocab, schema)

    def group_for_key(self, key: str) -> _Group | None:
        tokens = tokenize(key)
        if not tokens:
            return None
        best: tuple[int, _Group] | None = None
        for g in self.groups:
            for k in g.keys:
                if _contains(tokens, k) and (best is None or len(k) > best[0]):
                    best = (len(k), g)
        return best[1] if best else None

    def normalize_tag(self, tag: str) -> tuple[str, str] | None:
        """``(group, value)`` that ``tag`` states, or None when it states nothing usable."""
        key, value = split_tag(tag)
        if key:
            group = self.group_for_key(key)
            if group is not None:
                v = group.match(value)
                return (group.name, v) if v else None
        hits = {(g.name, v) for g in self.groups if (v := g.match(value))}
        return hits.pop() if len(hits) == 1 else None

    def normalize(self, tags: list[str], context: list[str] = ()) -> Normalized:
        """Labels from the product's own ``tags`` first, then from the listing ``context``.

        The first tag that sets a group wins; a later tag saying otherwise is a conflict.
        """
        out = Normalized()
        for tag in tags:
            hit = self.normalize_tag(tag)
            if hit is None:
                out.unknown.append(tag)
                continue
            group, value = hit
            if group not in out.labels:
                out.labels[group] = value
            elif out.labels[group] != value:
                out.conflicts.append(tag)
        for tag in context:
            hit = self.normalize_tag(tag)
            if hit and hit[0] not in out.labels:
                out.labels[hit[0]] = hit[1]
        return out


@dataclass
class TagStats:
    """Counts over a crawl for the summary: which tags the vocabulary did not know."""

    unknown: Counter = field(default_factory=Counter)
    conflicts: int = 0

    def add(self, n: Normalized) -> None:
        self.unknown.update(n.unknown)
        self.conflicts += len(n.conflicts)
