"""Bounded work per post: a huge caption is cut before narrative work, so one post cannot take minutes and
gigabytes of an analysis process (a 900 KB caption once took 60 s and 4.9 GB)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.analysis.analyzer import Analyzer
from monitor.bank.matcher import BankMatcher
from monitor.bank.store import Bank
from monitor.models import NarrativeMatch, Post
from monitor.pipeline import build_analyzer
from monitor.settings import Settings


class SpyMatcher:
    """Stands in for NarrativeMatcher and records the captions it is asked about."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def match_many(self, texts: Sequence[str]) -> list[NarrativeMatch | None]:
        self.seen.extend(texts)
        return [None] * len(texts)


def test_a_huge_caption_is_cut_to_the_bound_before_narrative_work() -> None:
    spy = SpyMatcher()
    narratives: Any = spy
    analyzer = Analyzer(BankMatcher(Bank(), 10), narratives, max_caption_chars=2000)
    huge = "Pope Francis in a white puffer coat " * 25_000  # ~900 KB
    short = "a short caption"
    reshares = [Post(f"p{i}", "a", 0.0, text=t, reshare_of="p0") for i, t in enumerate((huge, short), 1)]
    analyzer.analyze(reshares, [[], []])
    assert [len(text) for text in spy.seen] == [2000, len(short)]
    assert spy.seen[0] == huge[:2000]


def test_the_bound_comes_from_the_settings() -> None:
    analyzer = build_analyzer(Settings(max_caption_chars=123), Bank(), encoder=None)
    assert analyzer.max_caption_chars == 123
