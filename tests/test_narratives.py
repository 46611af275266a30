"""Tests for monitor.narratives: the matching logic with deterministic fake encoders, and one check of the
real default model (loaded once, offline) on a paraphrase and an unrelated sentence."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

from monitor.bank import NarrativeExample
from monitor.narratives import DEFAULT_MODEL, NarrativeMatcher, SentenceTransformerEncoder
from monitor.settings import Settings


class TableEncoder:
    """Maps each known text to a fixed vector (normalised); records every call."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {text: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for text, v in table.items()}
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.table[text] for text in texts]) if texts else np.zeros((0, 3), np.float32)

    @property
    def encoded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def examples(*pairs: tuple[str, str]) -> list[NarrativeExample]:
    return [NarrativeExample(narrative_id, text) for narrative_id, text in pairs]


BANK = examples(("pope-fashion", "pope example"), ("trump-arrest", "trump example"))
VECTORS: dict[str, Sequence[float]] = {
    "pope example": (1, 0, 0),
    "trump example": (0, 1, 0),
    "mostly pope": (0.8, 0.6, 0),  # 0.8 to pope, 0.6 to trump
    "unrelated": (0, 0, 1),
    "other": (0.6, 0, 0.8),
    "third": (0, 0.6, 0.8),
}


def matcher(
    threshold: float = 0.7,
    margin: float = 0.0,
    bank: Sequence[NarrativeExample] = BANK,
    cache_size: int = 50_000,
) -> tuple[NarrativeMatcher, TableEncoder]:
    encoder = TableEncoder(VECTORS)
    return NarrativeMatcher(encoder, bank, threshold, margin, cache_size), encoder


def test_a_caption_close_to_a_narrative_matches_it() -> None:
    m, _ = matcher(threshold=0.7)
    match = m.match("mostly pope")
    assert match is not None
    assert match.narrative_id == "pope-fashion"
    assert match.score == pytest.approx(0.8, abs=1e-4)
    exact = m.match("pope example")
    assert exact is not None and exact.score == pytest.approx(1.0, abs=1e-4)


def test_threshold_is_inclusive_and_refuses_weaker_scores() -> None:
    assert matcher(threshold=0.79)[0].match("mostly pope") is not None
    assert matcher(threshold=0.81)[0].match("mostly pope") is None
    assert matcher(threshold=0.5)[0].match("unrelated") is None


def test_margin_to_the_runner_up_narrative() -> None:
    # "mostly pope" scores 0.8 for pope-fashion and 0.6 for trump-arrest: a margin of 0.2.
    assert matcher(threshold=0.5, margin=0.15)[0].match("mostly pope") is not None
    assert matcher(threshold=0.5, margin=0.25)[0].match("mostly pope") is None


def test_margin_compares_narratives_not_examples_of_the_same_narrative() -> None:
    bank = examples(
        ("pope-fashion", "pope example"), ("pope-fashion", "mostly pope"), ("other-story", "unrelated")
    )
    m, _ = matcher(threshold=0.5, margin=0.5, bank=bank)
    match = m.match("pope example")  # 1.0 and 0.8 to pope examples, 0.0 to the other narrative
    assert match is not None and match.narrative_id == "pope-fashion"


def test_the_best_example_of_a_narrative_counts() -> None:
    bank = examples(
        ("pope-fashion", "unrelated"), ("pope-fashion", "pope example"), ("trump-arrest", "trump example")
    )
    m, _ = matcher(threshold=0.9, bank=bank)
    match = m.match("pope example")
    assert match is not None and match.narrative_id == "pope-fashion"
    assert match.score == pytest.approx(1.0, abs=1e-4)


def test_a_single_narrative_bank_has_no_runner_up_to_beat() -> None:
    m, _ = matcher(threshold=0.5, margin=0.9, bank=examples(("pope-fashion", "pope example")))
    assert m.match("mostly pope") is not None


def test_repeated_captions_are_encoded_once() -> None:
    m, encoder = matcher()
    setup_calls = len(encoder.calls)
    assert encoder.encoded == ["pope example", "trump example"]  # the bank, at construction

    first = m.match("mostly pope")
    for _ in range(5):
        assert m.match("mostly pope") == first
    assert m.match("  mostly   pope ") == first  # same caption, other whitespace
    assert encoder.encoded[2:] == ["mostly pope"]
    assert len(encoder.calls) == setup_calls + 1


def test_match_many_encodes_each_new_caption_once_and_keeps_order() -> None:
    m, encoder = matcher(threshold=0.7)
    m.match("unrelated")
    results = m.match_many(["mostly pope", "unrelated", "", "mostly pope", "trump example", "   "])
    assert [r.narrative_id if r else None for r in results] == [
        "pope-fashion",
        None,
        None,
        "pope-fashion",
        "trump-arrest",
        None,
    ]
    assert encoder.calls[-1] == ["mostly pope", "trump example"]
    assert encoder.encoded.count("unrelated") == 1


def test_a_non_match_is_cached_too() -> None:
    m, encoder = matcher()
    assert m.match("unrelated") is None
    assert m.match("unrelated") is None
    assert encoder.encoded.count("unrelated") == 1


def test_cache_is_bounded_and_evicts_the_least_recent() -> None:
    m, encoder = matcher(cache_size=2)
    m.match("mostly pope")
    m.match("unrelated")
    m.match("mostly pope")  # refreshes "mostly pope"
    m.match("other")  # evicts "unrelated"
    m.match("mostly pope")
    m.match("unrelated")
    assert encoder.encoded[2:] == ["mostly pope", "unrelated", "other", "unrelated"]


def test_empty_captions_are_never_encoded() -> None:
    m, encoder = matcher()
    before = len(encoder.calls)
    assert m.match("") is None
    assert m.match(" \n\t ") is None
    assert m.match_many([]) == []
    assert len(encoder.calls) == before


def test_an_empty_bank_matches_nothing_and_never_encodes() -> None:
    m, encoder = matcher(threshold=-1.0, bank=[])
    assert m.empty
    assert m.match("mostly pope") is None
    assert m.match_many(["pope example", "unrelated"]) == [None, None]
    assert encoder.calls == []


def test_ties_are_broken_by_narrative_id() -> None:
    bank = examples(("zeta", "other"), ("alpha", "third"))  # both score 0.8 for "unrelated"
    m, _ = matcher(threshold=0.5, bank=bank)
    match = m.match("unrelated")
    assert match is not None and match.narrative_id == "alpha"


# --- the real default model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_encoder() -> Iterator[SentenceTransformerEncoder]:
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield SentenceTransformerEncoder(DEFAULT_MODEL)
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def test_default_model_matches_a_paraphrase_and_not_an_unrelated_sentence(
    real_encoder: SentenceTransformerEncoder,
) -> None:
    settings = Settings()
    bank = examples(
        ("pope-fashion", "Pope Francis wears a white puffer jacket"),
        ("pope-fashion", "The pope in a Balenciaga puffer coat"),
        ("trump-arrest", "Donald Trump arrested by police in New York"),
    )
    m = NarrativeMatcher(real_encoder, bank, settings.narrative_threshold, settings.narrative_margin)
    pope = m.match("The pope was spotted wearing a stylish white down coat")
    trump = m.match("Police detained Trump in Manhattan this morning")
    assert pope is not None and pope.narrative_id == "pope-fashion"
    assert trump is not None and trump.narrative_id == "trump-arrest"
    assert m.match("Heavy rain expected in Seattle this weekend") is None
    vectors = real_encoder.encode(["Heavy rain expected in Seattle this weekend", "a cat"])
    assert vectors.shape[0] == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
