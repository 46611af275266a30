"""The choice of multilingual-e5's runtime (monitor.narratives.encoders.choose_e5_runtime, the
`e5_runtime` setting). Each runtime's vectors against the engine: tests/test_e5_numpy.py."""

from __future__ import annotations

import pytest

from monitor.narratives.encoders import E5Encoder, choose_e5_runtime, views_of
from monitor.pipeline import make_encoder
from monitor.settings import load_settings


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
