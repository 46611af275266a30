"""Stance decoys: a caption that retells a banked claim to deny it is not flagged for it, one that asserts
it still is (monitor.narratives.stance, matcher.STANCE_LEAD), with deterministic fake encoders."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monitor.bank.store import NarrativeExample
from monitor.narratives.matcher import SCORE_SCALE, STANCE_LEAD, NarrativeMatcher, derive
from monitor.narratives.stance import DEBUNK_TEMPLATES, stance_decoys

CLAIM = "The finance minister gambling at a casino table in Monaco"
ASSERTION = "finance minister caught gambling in Monaco!!"
DENIAL = "Fact check: the casino photo of the finance minister is AI-generated"
OTHER = "my cat sleeping on the sofa"
BACKGROUND = ("bg one", "bg two", "bg three", "bg four")
# Dimensions: the claim, a denial frame, two unrelated topics. Every stance decoy is the claim in a denial
# frame: (1, 1, 0, 0); the denial shares the frame, the assertion does not.
VECTORS: dict[str, Sequence[float]] = {
    "bg one": (0, 0, 1, 0),
    "bg two": (0, 0, 0, 1),
    "bg three": (0, 0, 1, 1),
    "bg four": (0, 0, 1, -1),
    CLAIM: (1, 0, 0, 0),
    ASSERTION: (1, 0.1, 0.1, 0),  # cosine 0.99 to the claim, 0.77 to its denials
    DENIAL: (1, 1.2, 0, 0),  # 0.64 to the claim, 0.996 to its denials
    OTHER: (0, 0, 1, 0.2),
}
FRAMED: Sequence[float] = (1, 1, 0, 0)


class Table:
    """Maps known texts to fixed unit vectors, any other text (a stance decoy) to FRAMED; records calls."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in table.items()}
        self.framed = np.asarray(FRAMED, dtype=np.float32) / np.linalg.norm(FRAMED)
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        return np.stack([self.table.get(t, self.framed) for t in texts]).reshape(len(texts), 4)


class Asymmetric(Table):
    """A model read asymmetrically (like EmbeddingGemma's retrieval prompts): the bank through `documents`."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        super().__init__(table)
        self.documents = Table(table)


BANK = [NarrativeExample("minister-casino", CLAIM)]
#: Below the assertion's and the denial's scores without stance decoys (0.24 and 0.13 in this space).
THRESHOLD = 0.1


def matcher(encoder: Table, stance_lead: float | None = STANCE_LEAD) -> NarrativeMatcher:
    return NarrativeMatcher(
        encoder, BANK, THRESHOLD, background=BACKGROUND, retrieval_story_weight=0.0, stance_lead=stance_lead
    )


def test_every_example_is_wrapped_in_each_denial_frame_and_the_frames_name_nothing() -> None:
    examples = [CLAIM, "Photo of the finance minister betting piles of chips at a Monte Carlo roulette table"]
    wrapped = stance_decoys(examples)
    assert len(wrapped) == len(examples) * len(DEBUNK_TEMPLATES)
    assert all(sum(example in w for w in wrapped) == len(DEBUNK_TEMPLATES) for example in examples)
    assert all(t.count("{}") == 1 for t in DEBUNK_TEMPLATES)
    # the six languages of the monitor, each with its own denial words
    for word in ("Fact check", "Faux", "imagen", "Faktencheck", "intelligenza", "imagem"):
        assert any(word in t for t in DEBUNK_TEMPLATES), word
    assert derive([CLAIM])["stances"] == stance_decoys([CLAIM])


def test_a_caption_denying_the_claim_is_refused_and_one_asserting_it_is_matched() -> None:
    m = matcher(Asymmetric(VECTORS))
    asserted = m.match(ASSERTION)
    assert asserted is not None and asserted.narrative_id == "minister-casino"
    assert m.match(DENIAL) is None
    assert m.match(OTHER) is None
    # without stance decoys the denial passes the same threshold: they are what refuses it
    plain = matcher(Asymmetric(VECTORS), stance_lead=None)
    denied = plain.match(DENIAL)
    assert denied is not None and denied.narrative_id == "minister-casino"
    assert plain.match(ASSERTION) == asserted


def test_a_refused_denial_scores_below_zero_by_its_lead_and_an_assertion_keeps_its_score() -> None:
    encoder = Asymmetric(VECTORS)
    m, plain = matcher(encoder), matcher(Asymmetric(VECTORS), stance_lead=None)
    calibration = m._views[0].calibration
    denial = np.asarray(VECTORS[DENIAL], dtype=float) / np.linalg.norm(VECTORS[DENIAL])
    framed = np.asarray(FRAMED, dtype=float) / np.linalg.norm(FRAMED)
    nearest = float(calibration.z(np.array(denial[0])))
    lead = float(calibration.z(np.array(denial @ framed))) - nearest
    assert STANCE_LEAD is not None and lead >= STANCE_LEAD
    found = m.best(DENIAL)
    assert found is not None and math.isclose(found.score, math.tanh(-lead / SCORE_SCALE), abs_tol=1e-4)
    assert m.best(ASSERTION) == plain.best(ASSERTION)


def test_stance_decoys_are_built_for_a_model_read_asymmetrically_only_and_embedded_once(
    tmp_path: Path,
) -> None:
    encoder = Asymmetric(VECTORS)
    matcher(encoder)
    assert set(stance_decoys([CLAIM])) <= set(encoder.documents.encoded)
    assert not set(stance_decoys([CLAIM])) & set(encoder.encoded)  # the bank's side only
    symmetric = Table(VECTORS)
    NarrativeMatcher(symmetric, BANK, THRESHOLD, background=BACKGROUND)
    assert not set(stance_decoys([CLAIM])) & set(symmetric.encoded)

    class Cached(Asymmetric):
        def __init__(self) -> None:
            super().__init__(VECTORS)
            self.documents.cache_key = "test-table@1"  # type: ignore[attr-defined]

    first = Cached()
    NarrativeMatcher(
        first, BANK, THRESHOLD, background=BACKGROUND, cache_dir=tmp_path, retrieval_story_weight=0.0
    )
    assert set(stance_decoys([CLAIM])) <= set(first.documents.encoded)
    again = Cached()
    m = NarrativeMatcher(
        again, BANK, THRESHOLD, background=BACKGROUND, cache_dir=tmp_path, retrieval_story_weight=0.0
    )
    assert again.documents.encoded == []  # examples, decoys and stance decoys all from the bank's cache
    assert m.match(DENIAL) is None and m.match(ASSERTION) is not None
