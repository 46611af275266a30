"""The stance gate: does a caption that reaches a narrative assert its claim, or only talk about it?

A topic embedding places a caption by its subject and event, so a question whether the picture is real
("Is that photo of ballot boxes going off the Aran ferry real?"), news of the same event ("Storm Zelda: all
trains cancelled") and a debunk in words no cue names ("Not in handcuffs, not in Dubai") sit as near a
narrative's examples as the captions that spread it: on the blind v14, 31 of 180 such captions were flagged
with EmbeddingGemma. No stance reader (NLI, cross-encoder) ships in a package this project can use
(docs/stance-reader-search.md), and a probe trained on the tuning sets themselves learnt each set's style,
not stance (docs/stance-gate-experiment.md).

This gate is a logistic regression on features of the pair (u: the caption's query vector, v: the document
vector of the narrative's example nearest to it): [u, u*v, |u-v|]. It was fitted only on a hand-written
corpus of 68 invented claims, none on a tuning set's subject, with captions that spread them and on-topic
captions that do not (debunks, honest questions, same-event news, related true stories) in the six
languages the monitor reads (benchmarks/data/stance-train.json), and its cut refuses at most 1 % of the
corpus's spreading captions out of fold (claims held out). Every tuning set is therefore held out for it:
on the 15 (dev..v14) the shipped matcher's flags fell 74 -> 32 for 18 true matches of 1,368, and on the
blind v15 it held 6 of 180 flags at 90.7% recall (docs/stance-corpus-experiment.md, README). It needs
no model pass of its own (the vectors are the matcher's) and
costs a dot product per caption near a narrative.

The weights belong to the model whose vectors they read (EmbeddingGemma read with its retrieval prompts):
`benchmarks/stance_gate_fit.py` refits them from the corpus and writes `stance_gate_<model>.json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from monitor.narratives.encoders import GEMMA

#: The models a shipped gate reads, by the first part of their calibration key.
SHIPPED_GATES = (GEMMA,)


@dataclass(frozen=True)
class StanceGate:
    """Logistic regression over [u, u*v, |u-v|] of unit vectors u (caption) and v (nearest example)."""

    weights: np.ndarray
    bias: float
    cut: float

    @property
    def dimensions(self) -> int:
        return len(self.weights) // 3

    def probability(self, captions: np.ndarray, examples: np.ndarray) -> np.ndarray:
        """(n,): the probability that each caption asserts the claim of the example paired with it (rows of
        `captions` and `examples` are pairs)."""
        d = self.dimensions
        u = captions.astype(np.float64, copy=False)
        v = examples.astype(np.float64, copy=False)
        w = self.weights
        logit = u @ w[:d] + (u * v) @ w[d : 2 * d] + np.abs(u - v) @ w[2 * d :] + self.bias
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logit))
        return out

    def asserts(self, captions: np.ndarray, examples: np.ndarray) -> np.ndarray:
        """(n,) bool: whether each caption is taken to assert its paired example's claim."""
        passed: np.ndarray = self.probability(captions, examples) >= self.cut
        return passed

    @staticmethod
    def read(path: Path) -> StanceGate:
        document = json.loads(path.read_text(encoding="utf-8"))
        weights = np.asarray(document["weights"], dtype=np.float64)
        if weights.ndim != 1 or len(weights) % 3:
            raise ValueError(f"{path}: a stance gate holds 3 x dimensions weights, not {weights.shape}")
        return StanceGate(weights, float(document["bias"]), float(document["cut"]))


def gate_path(model: str) -> Path:
    return Path(__file__).with_name(f"stance_gate_{model}.json")


@cache
def shipped_gate(model: str) -> StanceGate | None:
    """The gate shipped for a model (by its name, e.g. `embeddinggemma`), or None."""
    path = gate_path(model)
    return StanceGate.read(path) if model in SHIPPED_GATES and path.is_file() else None


def gate_for(calibration_key: str, dimensions: int) -> StanceGate | None:
    """The shipped gate for an encoder read asymmetrically, by its calibration key
    (`embeddinggemma/bf16/retrieval`: the model is the first part), where its vectors have the gate's size."""
    model = calibration_key.split("/", 1)[0]
    gate = shipped_gate(model) if calibration_key.endswith("/retrieval") else None
    return gate if gate is not None and gate.dimensions == dimensions else None
