"""Tracker state expiry in event time (monitor/tracking/expiry.py): bounded state, and nothing counted twice
or alerted twice because of what was forgotten."""

from __future__ import annotations

import random
from typing import Any

import pytest

from monitor.models import ImageHashes
from monitor.settings import Settings, SettingsError
from monitor.tracking.expiry import plan_expiry
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy
from tests.test_virality_tracker import CLUSTER_DISTANCE, POPE, T0, feed, image, post

DAY = 24 * 3600


def tracker(store: dict[str, Any], retention: int = DAY, threshold: int = 3) -> ClusterTracker:
    policy = ViralityPolicy(threshold, 100, 10, retention)
    return ClusterTracker(store, policy, CLUSTER_DISTANCE, clock=lambda: T0 + 365 * DAY)


def unique_picture(rng: random.Random) -> ImageHashes:
    return ImageHashes(phash=rng.getrandbits(64))


def noise_day(rng: random.Random, day: int, per_hour: int = 10) -> list[Any]:
    """A day of posts with pictures never seen before, and reshares of them."""
    posts = []
    for hour in range(24):
        for i in range(per_hour):
            t = T0 + day * DAY + hour * 3600 + i * 60
            pid = f"d{day}h{hour}i{i}"
            posts.append(post(pid, t, image(unique_picture(rng))))
            posts.append(post(pid + "r", t + 30, reshare_of=pid))
    return posts


def test_a_month_long_stream_keeps_about_a_retention_worth_of_state() -> None:
    rng = random.Random(1)
    store: dict[str, Any] = {}
    t = tracker(store, retention=DAY)
    sizes = []
    for day in range(30):
        assert feed(t, noise_day(rng, day)) == []
        sizes.append(len(store))
    # Without expiry the state would grow by a day's worth (sizes[0]) every day: 30x by the end. With a
    # day of retention, swept every tenth of it, it holds between one and 1.1 days' worth.
    assert max(sizes) <= 1.25 * sizes[0], sizes
    assert len(t.clusters) <= 1.25 * 24 * 10


def test_an_alerted_cluster_is_kept_and_never_raises_a_level_twice() -> None:
    rng = random.Random(2)
    store: dict[str, Any] = {}
    t = tracker(store, retention=DAY, threshold=3)
    first = feed(t, [post(f"p{i}", T0 + i, image(POPE, bank="pope-puffer-coat")) for i in range(3)])
    assert [a.alert_id.rsplit("/", 1)[1] for a in first] == ["L1"]
    for day in range(1, 4):  # three days of other pictures: the pope's posts expire
        feed(t, noise_day(rng, day, per_hour=2))
    assert "s:p0" not in store and "cl:" + first[0].cluster_id in store

    later = T0 + 4 * DAY
    again = feed(t, [post(f"q{i}", later + i, image(POPE)) for i in range(30)])
    assert [a.alert_id for a in again] == [f"{first[0].cluster_id}/L2"], "same cluster, next level only"


def test_redeliveries_within_the_retention_are_still_ignored() -> None:
    store: dict[str, Any] = {}
    t = tracker(store, retention=DAY, threshold=3)
    early = [post(f"p{i}", T0 + i, image(POPE, bank="pope-puffer-coat")) for i in range(2)]
    feed(t, early)
    feed(t, [post("late", T0 + DAY // 2, image(POPE))])  # half a day on: nothing expires
    assert feed(t, early) == [], "a redelivery half a day later is the same posts, not two new shares"
    assert {"s:p0", "s:p1", "s:late"} <= store.keys()


def test_a_post_dated_in_the_far_future_does_not_wipe_the_state() -> None:
    store: dict[str, Any] = {}
    t = tracker(store, retention=DAY)
    feed(t, [post(f"p{i}", T0 + i, image(POPE, bank="pope-puffer-coat")) for i in range(2)])
    feed(t, [post("typo", T0 + 80 * 365 * DAY, image(POPE))])  # a bad clock: year 2103
    assert "s:p0" in store and "s:p1" in store
    assert t.watermark == T0 + 1


def test_the_plan_keeps_waiting_reshares_that_may_still_meet_their_parent() -> None:
    horizon = T0 + 1000
    items = [
        ("w:gone", [{"post_id": "r1", "t": T0}]),
        ("w:half", [{"post_id": "r2", "t": T0}, {"post_id": "r3", "t": horizon + 5}]),
        ("w:kept", [{"post_id": "r4", "t": horizon}]),
        ("s:r1", T0),
        ("s:r3", horizon + 5),
        ("p:r1", ["c-1"]),
        ("p:orphan", ["c-1"]),
        ("b:c-1:" + str(horizon // 60 - 1), {str(horizon - 61): 1}),
        ("b:c-1:" + str(horizon // 60), {str(horizon): 1}),
        ("cl:c-1", {"latest": horizon - 1, "level": 0}),
        ("cl:c-2", {"latest": horizon - 1, "level": 1}),
        ("cl:c-3", {"latest": horizon, "level": 0}),
    ]
    plan = plan_expiry(items, horizon)
    assert set(plan.delete) == {
        "w:gone",
        "s:r1",
        "p:r1",
        "p:orphan",
        "b:c-1:" + str(horizon // 60 - 1),
        "cl:c-1",
    }
    assert plan.rewrite == {"w:half": [{"post_id": "r3", "t": horizon + 5}]}
    assert plan.clusters == {"c-1"}


def test_the_plan_reads_compact_records_as_it_reads_the_old_ones() -> None:
    # cl: [first_seen, latest, level, reasons, image URL, samples...]; b: one share's second, or pairs.
    horizon = T0 + 1000
    items = [
        ("b:c-1:" + str(horizon // 60 - 1), horizon - 61),
        ("b:c-1:" + str(horizon // 60), [horizon, 2, horizon + 1, 1]),
        ("cl:c-1", [T0, horizon - 1, 0, None, None, T0, "p0"]),
        ("cl:c-2", [T0, horizon - 1, 1, [{"kind": "provenance", "marker": "x"}], None, T0, "p1"]),
        ("cl:c-3", [T0, horizon, 0, None, None, T0, "p2"]),
    ]
    plan = plan_expiry(items, horizon)
    assert set(plan.delete) == {"b:c-1:" + str(horizon // 60 - 1), "cl:c-1"}
    assert plan.clusters == {"c-1"}


def test_expiry_drops_forgotten_clusters_from_the_index_and_keeps_assigning() -> None:
    rng = random.Random(4)
    store: dict[str, Any] = {}
    t = tracker(store, retention=DAY)
    old = [unique_picture(rng) for _ in range(50)]
    feed(t, [post(f"old{i}", T0 + i, image(h)) for i, h in enumerate(old)])
    assert len(t.clusters) == 50
    fresh = unique_picture(rng)
    later = T0 + 2 * DAY
    feed(t, [post("fresh", later, image(fresh))])  # the clock passes the retention: the old clusters go
    assert len(t.clusters) == 1 and sum(key.startswith("rep:") for key in store) == 1
    # A re-upload of the fresh picture joins it; an old picture seen again founds a new cluster.
    again = [post("again", later + 1, image(fresh)), post("old-again", later + 2, image(old[0]))]
    assert feed(t, again) == []
    assert store["p:again"] == store["p:fresh"]
    assert len(t.clusters) == 2


def test_a_retention_shorter_than_the_window_is_refused() -> None:
    with pytest.raises(SettingsError, match="state_retention_seconds"):
        Settings(window_seconds=3600, state_retention_seconds=600)
    assert Settings(state_retention_seconds=0).state_retention_seconds == 0


def test_a_dismissal_mark_goes_with_its_cluster_and_stays_with_a_live_one() -> None:
    items = [
        ("cl:c-old", [100, 100, 0, None, None, 100, "p1"]),
        ("x:c-old", 1),
        ("cl:c-live", [100, 9_000, 0, None, None, 100, "p2"]),
        ("x:c-live", 1),
    ]
    plan = plan_expiry(items, horizon=5_000)
    assert "x:c-old" in plan.delete and "cl:c-old" in plan.delete
    assert "x:c-live" not in plan.delete and "cl:c-live" not in plan.delete
