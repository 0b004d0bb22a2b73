"""Planning of strength and variants, and the fusion of the variants' rankings (no server)."""

from __future__ import annotations

import pytest

from retrieval.service import (
    AttributeEdit,
    FailedPrecondition,
    InvalidArgument,
    LoadedEditor,
    SearchHit,
    ToModel,
    fuse_hits,
    plan_modifications,
)


class _Caps:
    def __init__(self, caps: dict) -> None:
        self.caps = caps

    def capabilities(self) -> dict:
        return self.caps


FADER = LoadedEditor.from_editor("fader", _Caps({"model": "fader", "to_model": False, "continuous": True, "edit": {
    "groups": {"color": ["blue", "red"], "pattern": ["floral", "unicolors"]}, "multi_group": True,
    "continuous": True}}))
MUNIT = LoadedEditor.from_editor("munit", _Caps({"model": "munit", "to_model": False, "multi_modal": True, "edit": {
    "groups": {"pattern": ["floral", "unicolors"]}, "multi_group": False, "multi_modal": True,
    "edits": [{"pattern": "floral"}, {"pattern": "unicolors"}]}}))
P2P = LoadedEditor.from_editor("p2p", _Caps({"model": "pix2pix", "edit": None, "to_model": True}))


def test_capabilities_say_continuous_and_multi_modal() -> None:
    assert (FADER.continuous, FADER.multi_modal) == (True, False)
    assert (MUNIT.continuous, MUNIT.multi_modal) == (False, True)


def test_strength_travels_with_its_edit_and_splits_merges() -> None:
    steps = plan_modifications([AttributeEdit("color", "blue", 0.5), AttributeEdit("pattern", "floral", 0.5)],
                               [FADER], 8)
    assert [(s.edits, s.strength) for s in steps] == [((("color", "blue"), ("pattern", "floral")), 0.5)]
    # different strengths are different calls: one condition cannot hold two strengths
    steps = plan_modifications([AttributeEdit("color", "blue", 0.5), AttributeEdit("pattern", "floral")], [FADER], 8)
    assert [(s.edits, s.strength) for s in steps] == [((("color", "blue"),), 0.5), ((("pattern", "floral"),), 1.0)]
    assert steps[0].label == "color=blue@0.5"


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf")])
def test_strength_outside_0_1_is_invalid_argument(bad: float) -> None:
    with pytest.raises(InvalidArgument, match=r"modification 1: strength must be in 0\.\.1"):
        plan_modifications([AttributeEdit("color", "red"), AttributeEdit("color", "blue", bad)], [FADER], 8)


def test_variants_go_to_the_multi_modal_generator() -> None:
    # FADER can do pattern too and comes first; with variants the MUNIT makes that edit
    steps = plan_modifications([AttributeEdit("color", "red"), AttributeEdit("pattern", "floral")],
                               [FADER, MUNIT], 8, variants=3)
    assert [(s.editor, s.edits, s.variants) for s in steps] == [(0, (("color", "red"),), 1),
                                                                (1, (("pattern", "floral"),), 3)]
    assert steps[1].label == "pattern=floral x3"
    # without variants the first able generator keeps it
    steps = plan_modifications([AttributeEdit("pattern", "floral")], [FADER, MUNIT], 8)
    assert [(s.editor, s.variants) for s in steps] == [(0, 1)]


def test_variants_without_a_multi_modal_generator_fail_the_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="none is loaded"):
        plan_modifications([AttributeEdit("color", "red")], [FADER, P2P], 8, variants=2)
    with pytest.raises(FailedPrecondition, match=r"can make one of the edits \(color=red\).*munit edits pattern"):
        plan_modifications([AttributeEdit("color", "red")], [FADER, MUNIT], 8, variants=2)
    with pytest.raises(InvalidArgument, match="needs an attribute edit"):
        plan_modifications([ToModel()], [MUNIT, P2P], 8, variants=2)


def test_fused_hits_rank_agreement_first_with_rrf_scores() -> None:
    def hits(*ids: str) -> list[SearchHit]:
        return [SearchHit(i, 1.0 - k / 10, {}) for k, i in enumerate(ids)]

    fused = fuse_hits([hits("a", "b", "c"), hits("b", "c", "a"), hits("b", "d")], k=3)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 2 / 61)
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 63)
