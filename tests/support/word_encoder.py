"""A deterministic bag-of-words caption encoder and a small background, for narrative matcher tests.

Each word is a fixed random direction (seeded by its sha256), so captions that share words are near each
other and any test can reason about which decoys or examples a caption is close to, without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

#: everyday captions the matcher calibrates its scores against
BACKGROUND = (
    "lovely sunset over the harbour",
    "my cat sleeping on the sofa",
    "traffic jam on the motorway this morning",
    "new recipe for banana bread",
    "the football match ended in a draw",
)


class WordEncoder:
    """A deterministic bag-of-words encoder (each word a fixed random direction) that counts its work."""

    cache_key = "test-words@1"

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        rows = []
        for text in texts:
            vector = np.zeros(64, np.float64)
            for word in text.lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
                vector += np.random.default_rng(seed).standard_normal(64)
            rows.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return np.array(rows, dtype=np.float32).reshape(len(texts), 64)
