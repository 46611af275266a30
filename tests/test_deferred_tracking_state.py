"""Deferred evidence in the Kafka tracker's partition state (monitor/runtime/deferral.py), without a broker.

The tracker counts round-1 sightings in phases A to C (the in-process pipeline's `DeferredTracking`) and
runs round 2 inside the batch; what the held posts are lives in the partition's store, so a new owner
that restores the partition from the changelog records earlier batches committed carries on exactly. On
generated records (many reasons per cluster, ties, out-of-order reshares, redeliveries, expiry, a
dismissed picture), its alerts are the eager tracker's, whole and in order, with or without restarts, for
several K and a tiny budget. A post whose round 2 cannot run (gone from `posts`, or failing alone) is
counted with its round-1 record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

import pytest

from monitor.analysis.deferred import DEFAULT_BUDGET_BYTES, HELD_PREFIX, PENDING_PREFIX, has_deferred
from monitor.ingest.events import EventLimits
from monitor.models import AnalyzedPost, LoadedImage, NarrativeMatch, Post
from monitor.pipeline import virality_policy
from monitor.runtime.deferral import At, PostsReader, WorkerResolver, complete, with_place
from monitor.runtime.metrics import Metrics
from monitor.runtime.tracking_loop import PartitionState
from monitor.settings import Settings
from monitor.tracking.tracker import ClusterTracker
from tests.support.synthetic import post_event
from tests.test_deferred_evidence import recorded_stream, review_of

THRESHOLD = 5
SETTINGS = Settings(threshold=THRESHOLD, window_seconds=3600, state_retention_seconds=7200)
Stream = list[tuple[Post, AnalyzedPost, AnalyzedPost]]


def sightings(stream: Stream) -> list[dict[str, Any]]:
    """Each post's round-1 sighting as the deferring analysis loop writes it: with its place in `posts`
    (partition 0, its position) where it has deferred parts."""
    return [
        with_place(first.to_json(), 0, offset) if has_deferred(first) else first.to_json()
        for offset, (_, first, _) in enumerate(stream)
    ]


class Lookup:
    """Round 2 as a lookup of each post's full record (what the eager analysis made), by its place."""

    def __init__(self, stream: Stream, failing: frozenset[str] = frozenset()) -> None:
        self.full = {offset: full for offset, (_, _, full) in enumerate(stream)}
        self.failing = failing
        self.calls = 0

    async def __call__(self, analyzed: list[AnalyzedPost], sources: list[Any]) -> list[AnalyzedPost]:
        self.calls += 1
        resolved = []
        for one, place in zip(analyzed, sources, strict=True):
            assert isinstance(place, At) and place.partition == 0
            full = self.full[place.offset]
            assert full.post_id == one.post_id
            resolved.append(complete(one) if one.post_id in self.failing else full)
        return resolved


def eager_alerts(
    stream: Stream, seed: int, records: list[AnalyzedPost] | None = None
) -> list[dict[str, Any]]:
    tracker = ClusterTracker({}, virality_policy(SETTINGS), SETTINGS.cluster_distance, review=review_of(seed))
    counted = records if records is not None else [full for _, _, full in stream]
    return [alert.to_json() for record in counted for alert in tracker.observe(record)]


def held_state(state: PartitionState) -> tuple[Any, ...]:
    assert state.deferrer is not None
    held = state.deferrer.held
    return list(held._posts.items()), dict(held._pending), held.bytes  # the order counter: only relative


def run(
    stream: Stream, seed: int, settings: Settings, resolve: Lookup, restart_every: int = 0, size: int = 7
) -> tuple[list[dict[str, Any]], int]:
    """The sightings tracked in batches of `size`; every `restart_every` batches a new owner restores the
    partition from the changelog records committed so far. Returns the alerts and the restarts that
    found posts held."""
    items = sightings(stream)
    committed: list[tuple[bytes, bytes | None]] = []
    state = PartitionState(settings, review_of(seed), resolve=resolve)
    assert state.deferrer is not None
    alerts: list[dict[str, Any]] = []
    restarts_holding = 0
    for number, at in enumerate(range(0, len(items), size)):
        alerts += [alert.to_json() for alert in asyncio.run(state.track(items[at : at + size]))]
        committed += state.changes()
        if restart_every and number % restart_every == restart_every - 1:
            before = held_state(state)
            state = PartitionState.restored(settings, review_of(seed), committed, resolve=resolve)
            assert held_state(state) == before  # held posts (in order), pending shares, bytes
            restarts_holding += bool(before[0])
    return alerts, restarts_holding


@pytest.mark.parametrize("seed", range(4))
def test_deferring_tracker_alerts_as_the_eager_one_with_and_without_restarts(seed: int) -> None:
    stream = recorded_stream(seed)
    expected = eager_alerts(stream, seed)
    assert expected
    for live_shares in (2, 3, THRESHOLD):
        for budget in (DEFAULT_BUDGET_BYTES, 400):
            settings = SETTINGS.replace(deferred_live_shares=live_shares, deferred_budget_bytes=budget)
            lookup = Lookup(stream)
            alerts, _ = run(stream, seed, settings, lookup)
            assert alerts == expected, (live_shares, budget)
            assert lookup.calls
            restarted, holding = run(stream, seed, settings, Lookup(stream), restart_every=2)
            assert restarted == expected, (live_shares, budget, "restarted")
            if budget == DEFAULT_BUDGET_BYTES:
                assert holding, "some restarts happen while posts are held"


def test_the_held_posts_records_are_compact_atoms() -> None:
    """What the changelog carries for held posts and pending clusters: tuples of strings and numbers."""
    stream = recorded_stream(0)
    state = PartitionState(SETTINGS, review_of(0), resolve=Lookup(stream))
    asyncio.run(state.track(sightings(stream)[:40]))
    held = {k: v for k, v in state.store.data.items() if k.startswith((HELD_PREFIX, PENDING_PREFIX))}
    assert any(k.startswith(HELD_PREFIX) for k in held) and any(k.startswith(PENDING_PREFIX) for k in held)
    for value in held.values():
        assert isinstance(value, tuple)
        assert all(isinstance(part, str | int) for part in value)


def test_a_post_whose_round_two_fails_is_counted_with_its_round_one_record() -> None:
    seed = 1
    stream = recorded_stream(seed)
    # uploads whose full record differs from round 1's, counted for a cluster that comes alive
    differing = [
        first.post_id for _, first, full in stream if has_deferred(first) and complete(first) != full
    ]
    failing = frozenset(differing[::2])  # every other one
    records = [complete(first) if first.post_id in failing else full for _, first, full in stream]
    expected = eager_alerts(stream, seed, records)
    alerts, _ = run(stream, seed, SETTINGS.replace(deferred_live_shares=2), Lookup(stream, failing))
    assert alerts == expected
    assert expected != eager_alerts(stream, seed), "the failed posts' evidence shows in the alerts"


def test_sightings_of_an_earlier_version_are_counted_as_they_are() -> None:
    stream = recorded_stream(2)
    fulls = [full.to_json() for _, _, full in stream]  # no deferred part, no place
    state = PartitionState(SETTINGS, review_of(2), resolve=Lookup(stream))
    alerts = [alert.to_json() for alert in asyncio.run(state.track(fulls))]
    assert alerts == eager_alerts(stream, 2)


# --- round 2 in the worker: read back from `posts`, decoded, loaded, resolved ----------------------------


class Topic(PostsReader):
    """`posts` as a dict of places; a place missing is gone (retention)."""

    def __init__(self, values: dict[tuple[int, int], bytes]) -> None:
        self.values = values

    async def read(self, places: Any) -> dict[tuple[int, int], bytes | None]:
        return {(p.partition, p.offset): self.values.get((p.partition, p.offset)) for p in places}


class Loader:
    async def load_many(self, posts: list[Post]) -> list[list[LoadedImage]]:
        return [[LoadedImage(b"bytes", None) for _ in post.images] for post in posts]


FOUND = NarrativeMatch("a-narrative", 0.9)


class Analysis:
    """Round 2 that finds a narrative; a post named `breaks` kills its batch and fails alone."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]:
        self.batches.append([one.post_id for one in analyzed])
        assert [post.post_id for post in posts] == [one.post_id for one in analyzed]
        if any(one.post_id == "breaks" for one in analyzed):
            raise RuntimeError("a hostile post")
        return [dataclasses.replace(one, narrative_deferred=False, narrative=FOUND) for one in analyzed]

    def alone(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def test_the_worker_resolver_counts_gone_and_failing_posts_with_their_round_one_records() -> None:
    ids = ["kept", "gone", "breaks", "elsewhere"]
    firsts = [AnalyzedPost(post_id, 1.0e9, None, (), None, narrative_deferred=True) for post_id in ids]
    events = {
        (0, 0): json.dumps(post_event("kept", 1.0e9, "a caption")).encode(),
        (0, 2): json.dumps(post_event("breaks", 1.0e9, "a caption")).encode(),
        (0, 3): json.dumps(post_event("not-the-post", 1.0e9, "a caption")).encode(),
    }
    metrics = Metrics()
    analysis = Analysis()
    resolver = WorkerResolver(analysis, Loader(), Topic(events), EventLimits(), metrics)  # type: ignore[arg-type]
    resolved = asyncio.run(resolver(firsts, [At(0, offset) for offset in range(4)]))
    assert [one.post_id for one in resolved] == ids
    assert not any(has_deferred(one) for one in resolved)
    assert resolved[0] == dataclasses.replace(firsts[0], narrative=FOUND, narrative_deferred=False)
    assert resolved[1:] == [complete(one) for one in firsts[1:]]  # counted with round 1's record
    assert analysis.batches == [["kept", "breaks"], ["kept"], ["breaks"]]  # the batch, then one by one

    def outcome(name: str) -> float:
        return metrics.deferred_posts.labels(name)._value.get()

    assert (outcome("resolved"), outcome("failed"), outcome("gone")) == (1, 1, 2)
    assert metrics.matches.labels("narrative")._value.get() == 1  # what round 2 found, once
