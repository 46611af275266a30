"""Stance decoys: a caption that retells a banked claim to deny it is not flagged for it, one that asserts
it still is (monitor.narratives.stance, matcher.STANCE_LEAD), with deterministic fake encoders."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monitor.bank.store import NarrativeExample
from monitor.narratives.matcher import SCORE_SCALE, STANCE_LEAD, NarrativeMatcher, derive
from monitor.narratives.stance import ASSERTION_TEMPLATES, DEBUNK_TEMPLATES, assertion_decoys, stance_decoys

CLAIM = "The finance minister gambling at a casino table in Monaco"
ASSERTION = "finance minister caught gambling in Monaco!!"
DENIAL = "Fact check: the casino photo of the finance minister is AI-generated"
ITALIAN = "Il ministro delle finanze al tavolo della roulette a Montecarlo"
OTHER = "my cat sleeping on the sofa"
BACKGROUND = ("bg one", "bg two", "bg three", "bg four")
# Dimensions: the claim, a denial frame, another language than the example's, two unrelated topics. Every
# denial is the claim in a denial frame, in that language for the sake of the space: (1, 1, 1, 0, 0); every
# assertion the claim in a spreading frame in that language: (1, 0, 1, 0, 0).
VECTORS: dict[str, Sequence[float]] = {
    "bg one": (0, 0, 0, 1, 0),
    "bg two": (0, 0, 0, 0, 1),
    "bg three": (0, 0, 0, 1, 1),
    "bg four": (0, 0, 0, 1, -1),
    CLAIM: (1, 0, 0, 0, 0),
    ASSERTION: (1, 0.1, 0, 0.1, 0),  # z 0.72 to the claim, 0.37 to the denials
    DENIAL: (1, 1.5, 0.5, 0, 0),  # z 0.28 to the claim, 0.65 to the denials, 0.31 to the assertions
    ITALIAN: (1, 0.4, 1.5, 0, 0),  # z 0.29 to the claim, 0.64 to the denials, 0.68 to the assertions
    OTHER: (0, 0, 0, 1, 0.2),
}
DENIED: Sequence[float] = (1, 1, 1, 0, 0)
SPREAD: Sequence[float] = (1, 0, 1, 0, 0)


def unit(vector: Sequence[float]) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32) / np.linalg.norm(vector)


class Table:
    """Maps known texts to fixed unit vectors, a denial to DENIED, an assertion to SPREAD, any other text
    (a symmetric model's name and story decoys) to an unrelated topic; records calls."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {t: unit(v) for t, v in table.items()}
        self.table.update({t: unit(DENIED) for t in stance_decoys([CLAIM])})
        self.table.update({t: unit(SPREAD) for t in assertion_decoys([CLAIM])})
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        other = unit((0, 0, 0, 1, 1))
        return np.stack([self.table.get(t, other) for t in texts]).reshape(len(texts), 5)


class Asymmetric(Table):
    """A model read asymmetrically (like EmbeddingGemma's retrieval prompts): the bank through `documents`."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        super().__init__(table)
        self.documents = Table(table)


BANK = [NarrativeExample("minister-casino", CLAIM)]
#: Below the scores of the assertion, the denial and the Italian caption without stance decoys (0.21,
#: 0.085 and 0.087 in this space).
THRESHOLD = 0.05


def matcher(
    encoder: Table, stance_lead: float | None = STANCE_LEAD, debunk_cues: bool = True
) -> NarrativeMatcher:
    return NarrativeMatcher(
        encoder,
        BANK,
        THRESHOLD,
        background=BACKGROUND,
        retrieval_story_weight=0.0,
        stance_lead=stance_lead,
        debunk_cues=debunk_cues,
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
    # each denial frame has a spreading frame in its language, and "is this real??" is spreading
    spread = assertion_decoys(examples)
    assert len(spread) == len(examples) * len(ASSERTION_TEMPLATES) and len(ASSERTION_TEMPLATES) == 7
    assert any("Is this real??" in t for t in ASSERTION_TEMPLATES)
    assert derive([CLAIM])["assertions"] == assertion_decoys([CLAIM])


def test_a_caption_denying_the_claim_is_refused_and_one_asserting_it_is_matched() -> None:
    m = matcher(Asymmetric(VECTORS))
    asserted = m.match(ASSERTION)
    assert asserted is not None and asserted.narrative_id == "minister-casino"
    assert m.match(DENIAL) is None
    assert m.match(OTHER) is None
    # a caption in the language of the frames, spreading the claim: as near the denials as the denial is,
    # but nearer the assertions, so it is matched
    italian = m.match(ITALIAN)
    assert italian is not None and italian.narrative_id == "minister-casino"
    # without stance decoys the denial passes the same threshold: they are what refuses it
    plain = matcher(Asymmetric(VECTORS), stance_lead=None)
    denied = plain.match(DENIAL)
    assert denied is not None and denied.narrative_id == "minister-casino"
    assert plain.match(ASSERTION) == asserted


def test_a_refused_denial_scores_below_zero_by_its_lead_and_other_captions_keep_their_score() -> None:
    # the stance decoys alone (the denial also says "fact check": tests/test_narrative_cues.py)
    m = matcher(Asymmetric(VECTORS), debunk_cues=False)
    plain = matcher(Asymmetric(VECTORS), stance_lead=None)
    calibration = m._views[0].calibration

    def z(text: str, direction: Sequence[float]) -> float:
        return float(calibration.z(np.array(float(unit(VECTORS[text]) @ unit(direction)))))

    claimed = max(z(DENIAL, VECTORS[CLAIM]), z(DENIAL, SPREAD))
    lead = z(DENIAL, DENIED) - claimed
    assert STANCE_LEAD is not None and lead >= STANCE_LEAD
    found = m.best(DENIAL)
    assert found is not None and math.isclose(found.score, math.tanh(-lead / SCORE_SCALE), abs_tol=1e-4)
    # without the assertions the Italian caption would be refused too: its lead over the claim alone
    assert z(ITALIAN, DENIED) - z(ITALIAN, VECTORS[CLAIM]) >= STANCE_LEAD
    assert z(ITALIAN, DENIED) < z(ITALIAN, SPREAD)
    for caption in (ASSERTION, ITALIAN, OTHER):
        assert m.best(caption) == plain.best(caption)


def test_stance_decoys_are_built_for_a_model_read_asymmetrically_only_and_embedded_once(
    tmp_path: Path,
) -> None:
    encoder = Asymmetric(VECTORS)
    matcher(encoder)
    stance = set(stance_decoys([CLAIM]) + assertion_decoys([CLAIM]))
    assert stance <= set(encoder.documents.encoded)
    assert not stance & set(encoder.encoded)  # the bank's side only
    symmetric = Table(VECTORS)
    NarrativeMatcher(symmetric, BANK, THRESHOLD, background=BACKGROUND)
    assert not stance & set(symmetric.encoded)

    class Cached(Asymmetric):
        def __init__(self) -> None:
            super().__init__(VECTORS)
            self.documents.cache_key = "test-table@1"  # type: ignore[attr-defined]

    first = Cached()
    NarrativeMatcher(
        first, BANK, THRESHOLD, background=BACKGROUND, cache_dir=tmp_path, retrieval_story_weight=0.0
    )
    assert stance <= set(first.documents.encoded)
    again = Cached()
    m = NarrativeMatcher(
        again, BANK, THRESHOLD, background=BACKGROUND, cache_dir=tmp_path, retrieval_story_weight=0.0
    )
    assert again.documents.encoded == []  # examples, decoys and stance decoys all from the bank's cache
    assert m.match(DENIAL) is None and m.match(ASSERTION) is not None
