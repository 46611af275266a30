"""The tracking loop's state as its changelog carries it (monitor/runtime/tracking_loop.py): a worker that
restores a partition from the records earlier batches committed goes on exactly as the worker that wrote
them would have, alert for alert; a batch read again after a crash counts nothing twice."""

from __future__ import annotations

import gc
import random
import weakref
from typing import Any

from monitor.models import AnalyzedPost, ImageAnalysis, ImageHashes
from monitor.review.state import ReviewState
from monitor.runtime.metrics import Metrics
from monitor.runtime.tracking_loop import PartitionState, TrackingLoop
from monitor.settings import Settings

SETTINGS = Settings(threshold=3, level_factor=2, window_seconds=600)
PICTURES = [ImageHashes(phash=random.Random(seed).getrandbits(64)) for seed in range(4)]


def stream(count: int = 160) -> list[dict[str, Any]]:
    """Uploads of four pictures (two of them AI-marked) and reshares, over half an hour, in time order."""
    rng = random.Random(5)
    posts: list[dict[str, Any]] = []
    for number in range(count):
        at = 1_700_000_000.0 + number * 11
        if posts and rng.random() < 0.4:
            parent = rng.choice(posts)["post_id"]
            posts.append(AnalyzedPost(f"p{number}", at, parent).to_json())
            continue
        picture = rng.randrange(len(PICTURES))
        marks = ("png:parameters (Stable Diffusion)",) if picture < 2 else ()
        image = ImageAnalysis(PICTURES[picture], provenance=marks, url=f"https://img/{picture}")
        posts.append(AnalyzedPost(f"p{number}", at, None, (image,)).to_json())
    return posts


def batches(posts: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [posts[i : i + size] for i in range(0, len(posts), size)]


def test_a_restored_partition_raises_the_alerts_of_an_uninterrupted_one() -> None:
    posts = stream()
    clean = PartitionState(SETTINGS, ReviewState())
    expected = [alert for batch in batches(posts, 16) for alert in clean.observe(batch)]
    assert len({alert.level for alert in expected}) >= 3, "the stream climbs several levels"

    committed: list[tuple[bytes, bytes | None]] = []
    state = PartitionState(SETTINGS, ReviewState())
    alerts = []
    for number, batch in enumerate(batches(posts, 16)):
        alerts += state.observe(batch)
        committed += state.changes()
        if number % 3 == 1:  # a new owner: only what the changelog holds
            state = PartitionState.restored(SETTINGS, ReviewState(), committed)
    assert [alert.to_json() for alert in alerts] == [alert.to_json() for alert in expected]


def test_a_batch_read_again_after_its_commit_counts_nothing_twice() -> None:
    posts = stream()
    clean = PartitionState(SETTINGS, ReviewState())
    expected = [alert for batch in batches(posts, 20) for alert in clean.observe(batch)]

    state = PartitionState(SETTINGS, ReviewState())
    alerts = []
    for batch in batches(posts, 20):
        alerts += state.observe(batch)
        state = PartitionState.restored(SETTINGS, ReviewState(), state_records(state))
        alerts += state.observe(batch)  # the analysis wrote these sightings twice
    assert [alert.to_json() for alert in alerts] == [alert.to_json() for alert in expected]


def state_records(state: PartitionState) -> list[tuple[bytes, bytes | None]]:
    """Everything the state holds as changelog records (what a compacted changelog keeps)."""
    state.store.dirty = dict(state.store.data)
    return state.changes()


def test_a_taken_partitions_state_is_left_out_of_garbage_collections() -> None:
    """Full collections walked every record of the state (a third of the tracker's CPU at 300,000
    clusters): the state a worker takes is moved out of their reach, and stays out as it changes."""
    loop = TrackingLoop(SETTINGS, Metrics())
    try:
        state = loop.new_state(0, {})
        for batch in batches(stream(), 16):
            state.observe(batch)
            state.changes()
            gc.collect()
        data = state.store.data
        assert len(data) > 100 and gc.is_tracked(data)
        assert not any(held is data for held in gc.get_objects()), "the state is in a collected generation"
        # Out of the collector's reach, it must be in no cycle: a partition given up frees its state.
        journal = weakref.ref(state.store)
        del data, state
        loop.states.clear()
        assert journal() is None, "a revoked partition's state would be kept for good"
    finally:
        gc.unfreeze()
