"""Tilted copies of a smooth render that the region search placed only as painted: two of the fresh tag
final26's three rotate misses (sixteenth pass), and look-alikes that must stay unmatched.

The renders are final26's own (render i of a kind drawn from seed f"evalfinal26{i}"; 0 and 1 banked, 2 and
on its look-alikes) and so are the changes' seeds (475861-475863); the tag is spent. A blurred-background
figure's tilted copies got masks of 3 % (`inset.covered`: a sharp edge taken for something pasted on) and
were placed only as painted, a view that was never turned back (`evidence.TILTS`) as a tilted copy.
"""

from __future__ import annotations

import pytest

from monitor.bank.matcher import BankMatcher
from monitor.imaging import evidence
from tests.support.banking import banked_renders, draw, found
from tests.support.renders import flat_negative
from tests.support.viral_edits import apply_edit

SEEDS = (475861, 475862, 475863)

render = draw("final26")


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> BankMatcher:
    return banked_renders(tmp_path_factory.mktemp("renders26"), render)


def test_tilted_copies_taken_for_covered_ones_are_turned_back_too(
    renders: BankMatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [apply_edit("rotate", render("blurred-background", 0), seed) for seed in (475861, 475863)]
    for data in copies:
        hit = found(renders, data)
        assert hit is not None and hit.bank_cluster == "blurred-background-0", hit
    # Placed only as painted, and a painted view was not turned back: both were missed.
    monkeypatch.setattr(evidence, "TILT_PAINTED", False)
    for data in copies:
        assert found(renders, data) is None


def test_look_alikes_tilted_or_under_stickers_are_not_matched(renders: BankMatcher) -> None:
    # final26's look-alike renders of the kinds and flat pictures like them (hills, blurred backgrounds,
    # soft figures, skies), tilted and under stickers: none is a banked render.
    pictures = [
        render(kind, index)
        for kind in ("pastel-hills", "blurred-background", "gradient-subject", "soft-sky")
        for index in (2, 3)
    ]
    pictures += [
        flat_negative(kind, f"evalfinal26{index}")
        for kind in ("pastel-hills", "blurred-background", "gradient-subject", "sky")
        for index in (0, 1)
    ]
    for number, picture in enumerate(pictures):
        for edit in ("rotate", "stickers"):
            assert found(renders, apply_edit(edit, picture, SEEDS[number % 3])) is None, (number, edit)
