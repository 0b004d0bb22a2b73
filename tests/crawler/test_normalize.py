"""The German tag vocabulary: the thesis's mappings, and the ambiguities it got wrong."""

from __future__ import annotations

import json

import pytest

from catalog import Schema, SchemaError
from crawler.normalize import DEFAULT_VOCAB, Normalizer, split_tag, tokenize


@pytest.fixture(scope="module")
def norm() -> Normalizer:
    return Normalizer.load(Schema.default())


# The thesis's table (issue 3, item 7), each with the group its tag key names.
THESIS = [
    ("Ärmellänge: Dreiviertelarm", "sleeve_length", "half"),
    ("Ärmellänge: Halbarm", "sleeve_length", "half"),
    ("Ärmellänge: Kurzarm", "sleeve_length", "short"),
    ("Ärmellänge: Viertelarm", "sleeve_length", "short"),
    ("Ärmellänge: Langarm", "sleeve_length", "long"),
    ("Ärmellänge: Spaghettiträger", "sleeve_length", "sleeveless"),
    ("Ärmellänge: Ärmellos", "sleeve_length", "sleeveless"),
    ("Länge: 7/8-Länge", "length", "3-4"),
    ("Länge: 3/4-Länge", "length", "3-4"),
    ("Länge: Wadenlang", "length", "3-4"),
    ("Länge: Knöchellang", "length", "3-4"),
    ("Länge: Knielang", "length", "knee"),
    ("Ausschnitt: Weiter Ausschnitt", "neckline", "wide"),
    ("Ausschnitt: Carmen-Ausschnitt", "neckline", "wide"),
    ("Ausschnitt: U-Boot-Ausschnitt", "neckline", "wide"),
    ("Ausschnitt: V-Ausschnitt", "neckline", "v"),
    ("Ausschnitt: Rundhals", "neckline", "round"),
    ("Muster: Geblümt", "pattern", "floral"),
    ("Muster: Floral", "pattern", "floral"),
    ("Muster: Gestreift", "pattern", "stripes"),
    ("Muster: Punkte", "pattern", "polkadots"),
    ("Muster: Spitze", "pattern", "lace"),
    ("Muster: Print", "pattern", "print"),
    ("Muster: Bedruckt", "pattern", "print"),
    ("Muster: Unifarben", "pattern", "unicolors"),
    ("Passform: Weit", "fit", "loose"),
    ("Passform: Locker", "fit", "loose"),
    ("Passform: Eng", "fit", "tight"),
    ("Passform: Figurbetont", "fit", "tight"),
]


@pytest.mark.parametrize(("tag", "group", "value"), THESIS)
def test_thesis_mappings(norm, tag, group, value):
    assert norm.normalize_tag(tag) == (group, value)


def test_the_tags_group_decides(norm):
    # "kurz" / "lang" / "weit" mean different things in different groups.
    assert norm.normalize_tag("Ärmellänge: Kurz") == ("sleeve_length", "short")
    assert norm.normalize_tag("Länge: Kurz") == ("length", "short")
    assert norm.normalize_tag("Ärmel: Lang") == ("sleeve_length", "long")
    assert norm.normalize_tag("Rocklänge: Lang") == ("length", "long")
    assert norm.normalize_tag("Passform: Weit") == ("fit", "loose")
    assert norm.normalize_tag("Ausschnitt: Weit") == ("neckline", "wide")
    # "Schnittlänge" is a length key although it contains "Schnitt" (a fit key): whole tokens.
    assert norm.normalize_tag("Schnittlänge: Normal") == ("length", "normal")
    assert norm.normalize_tag("Schnitt: Normal") == ("fit", "normal")


def test_flared_is_loose_not_tight(norm):
    assert norm.normalize_tag("Schnitt: Ausgestellt") == ("fit", "loose")
    assert norm.normalize_tag("Passform: Leicht ausgestellt") == ("fit", "loose")


def test_whole_tokens_only(norm):
    # Substring matching would find "lang" in "Langarm" or "rund" in "Hintergrund".
    assert norm.normalize_tag("Länge: Langarm") is None
    assert norm.normalize_tag("Ausschnitt: Hintergrund") is None
    assert norm.normalize_tag("Muster: Spitzenqualität") is None


def test_most_specific_term_wins(norm):
    assert norm.normalize_tag("Ausschnitt: Tiefer V-Ausschnitt") == ("neckline", "deep")
    assert norm.normalize_tag("Ausschnitt: Tiefer Rückenausschnitt") == ("neckline", "back")
    assert norm.normalize_tag("Passform: Slim Fit (eng)") == ("fit", "tight")
    assert norm.normalize_tag("Muster: Blumen-Print") == ("pattern", "floral")


def test_keyless_tags_count_only_when_unambiguous(norm):
    assert norm.normalize_tag("Geblümt") == ("pattern", "floral")
    assert norm.normalize_tag("Kurz") is None  # sleeve or length? undecidable
    assert norm.normalize_tag("Weit") is None  # fit or neckline?


def test_compound_heads_for_categories_and_colours(norm):
    assert norm.normalize_tag("Kategorie: Sommerkleid") == ("category", "dresses")
    assert norm.normalize_tag("Farbe: Tiefschwarz") == ("color", "black")
    assert norm.normalize_tag("Farbe: Reinweiß") == ("color", "white")
    assert norm.normalize_tag("Kategorie: Strickjacke") == ("category", "knitwear")  # listed: not a jacket


def test_normalize_product_tags_context_and_unknown(norm):
    tags = ["Ärmellänge: Kurzarm", "Material: 100% Baumwolle", "Ärmel: Langarm", "Das Model trägt Größe 36"]
    r = norm.normalize(tags, context=["Kategorie: Kleider", "Farbe: Blau", "Ärmellänge: Lang"])
    assert r.labels == {"sleeve_length": "short", "category": "dresses", "color": "blue"}  # own tags first
    assert r.unknown == ["Material: 100% Baumwolle", "Das Model trägt Größe 36"]
    assert r.conflicts == ["Ärmel: Langarm"]


def test_every_vocabulary_value_is_in_the_default_schema():
    vocab = json.loads(DEFAULT_VOCAB.read_text(encoding="utf-8"))
    schema = Schema.default()
    for group, spec in vocab["groups"].items():
        for value in spec["values"]:
            schema.check_value(group, value)


def test_vocabulary_values_outside_the_output_schema_are_an_error():
    narrow = Schema({"sleeve_length": ("long", "short")})
    with pytest.raises(SchemaError, match="half"):
        Normalizer.load(narrow)


def test_groups_missing_from_the_schema_are_left_raw():
    norm = Normalizer.load(Schema({"color": tuple(Schema.default().values("color"))}))
    assert norm.normalize(["Ärmellänge: Kurzarm", "Farbe: Rot"]).labels == {"color": "red"}


def test_tokenize_and_split():
    assert tokenize("3/4-Arm") == ("3/4", "arm")
    assert tokenize("U-Boot-Ausschnitt") == ("u", "boot", "ausschnitt")
    assert tokenize("Weiß") == ("weiss",)
    assert split_tag("Kragen/Ausschnitt: V-Ausschnitt") == ("Kragen/Ausschnitt", "V-Ausschnitt")
    assert split_tag("Das Model trägt Größe S") == ("", "Das Model trägt Größe S")


def test_vocab_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaError, match="v.json"):
        Normalizer.load(Schema.default(), bad)
