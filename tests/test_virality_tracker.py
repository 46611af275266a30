"""Tests for monitor.tracking.virality (event-time share counts) and monitor.tracking.tracker (the per-
cluster stage: dedupe, reshares, suspicion reasons and alert levels, contract §2 and §4)."""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Iterable
from typing import Any

import pytest
from PIL import Image
from skimage import data as skdata

from monitor.imaging.hashes import compute_hashes
from monitor.ingest.decode import decode_image
from monitor.models import (
    Alert,
    AnalyzedPost,
    BankMatch,
    BankMatchReason,
    ImageAnalysis,
    ImageHashes,
    NarrativeMatch,
    NarrativeReason,
    ProvenanceReason,
)
from monitor.settings import Settings
from monitor.tracking.records import bucket_items, read_meta, read_rep, samples_of
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy
from monitor.tracking.virality import add_share, count_window, shares_per_second, window_counts

CLUSTER_DISTANCE = Settings().cluster_distance
T0 = 1_679_320_800  # 2023-03-20T14:00:00Z, on a minute boundary


def _hashes(image: Image.Image, quality: int = 90) -> ImageHashes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return compute_hashes(decode_image(buffer.getvalue()))


_ASTRONAUT = Image.fromarray(skdata.astronaut())
_COFFEE = Image.fromarray(skdata.coffee())
POPE = _hashes(_ASTRONAUT)  # the image of a "known fake"
POPE_REUPLOAD = _hashes(_ASTRONAUT.resize((256, 256)), quality=60)  # someone else's re-upload of it
OTHER = _hashes(_COFFEE)  # an unrelated photo


# --- virality -------------------------------------------------------------------------------------------


def test_window_is_half_open_and_ends_at_event_time() -> None:
    store: dict[str, Any] = {}
    for second in (T0, T0 + 1, T0 + 59, T0 + 60, T0 + 61, T0 + 3599):
        add_share(store, "c-1", second)
    # (end - window, end]: the share at exactly end - window is out, everything after it is in.
    assert count_window(store, "c-1", T0 + 3600, 3600) == 5
    assert count_window(store, "c-1", T0 + 3599, 3600) == 6
    assert count_window(store, "c-1", T0 + 60, 60) == 3  # T0+1, T0+59, T0+60, and not T0
    assert count_window(store, "c-1", T0 - 1, 3600) == 0


def test_counts_are_per_cluster_and_per_second() -> None:
    store: dict[str, Any] = {}
    for _ in range(3):
        add_share(store, "c-1", T0 + 5)
    add_share(store, "c-2", T0 + 5)
    assert shares_per_second(store, "c-1", T0, T0 + 100) == {T0 + 5: 3}
    assert shares_per_second(store, "c-2", T0, T0 + 100) == {T0 + 5: 1}
    assert count_window(store, "c-3", T0 + 5, 3600) == 0


def test_counts_do_not_depend_on_arrival_order() -> None:
    seconds = [T0 + random.Random(7).randrange(0, 7200) for _ in range(300)]
    in_order: dict[str, Any] = {}
    for second in sorted(seconds):
        add_share(in_order, "c", second)
    shuffled: dict[str, Any] = {}
    shuffled_seconds = list(seconds)
    random.Random(11).shuffle(shuffled_seconds)
    for second in shuffled_seconds:
        add_share(shuffled, "c", second)
    for end in range(T0, T0 + 7200, 450):
        expected = sum(1 for s in seconds if end - 3600 < s <= end)
        assert count_window(in_order, "c", end, 3600) == expected
        assert count_window(shuffled, "c", end, 3600) == expected


def test_window_counts_in_order_is_the_window_ending_at_the_new_share() -> None:
    store: dict[str, Any] = {}
    for second in (T0, T0 + 30, T0 + 90):
        add_share(store, "c", second)
    assert window_counts(store, "c", T0 + 90, T0 + 90, 90) == [(T0 + 90, 2)]
    assert window_counts(store, "c", T0 + 90, T0 + 90, 91) == [(T0 + 90, 3)]


def test_window_counts_for_a_late_share_reports_every_window_it_changed() -> None:
    store: dict[str, Any] = {}
    for second in (T0, T0 + 50, T0 + 80, T0 + 200):
        add_share(store, "c", second)
    add_share(store, "c", T0 + 40)  # late: arrives after T0+200
    windows = window_counts(store, "c", T0 + 40, T0 + 200, 100)
    # Windows (end-100, end] ending at the shares from the late one up to 99 s later.
    assert windows == [(T0 + 40, 2), (T0 + 50, 3), (T0 + 80, 4)]


# --- tracker helpers ------------------------------------------------------------------------------------


def image(
    hashes: ImageHashes | None = POPE,
    bank: str | None = None,
    distance: int = 3,
    provenance: Iterable[str] = (),
) -> ImageAnalysis:
    return ImageAnalysis(
        hashes=hashes,
        bank_match=BankMatch(bank, "phash", distance) if bank else None,
        provenance=tuple(provenance),
        error=None if hashes else "cannot decode",
    )


def post(
    post_id: str,
    t: int,
    *images: ImageAnalysis,
    reshare_of: str | None = None,
    narrative: tuple[str, float] | None = None,
) -> AnalyzedPost:
    return AnalyzedPost(
        post_id=post_id,
        created_at=float(t),
        reshare_of=reshare_of,
        images=images,
        narrative=NarrativeMatch(*narrative) if narrative else None,
    )


def tracker(
    store: dict[str, Any] | None = None, threshold: int = 3, window: int = 100, factor: int = 10
) -> ClusterTracker:
    policy = ViralityPolicy(threshold, window, factor)
    return ClusterTracker({} if store is None else store, policy, CLUSTER_DISTANCE)


def feed(t: ClusterTracker, posts: Iterable[AnalyzedPost]) -> list[Alert]:
    alerts: list[Alert] = []
    for p in posts:
        alerts.extend(t.observe(p))
    return alerts


BANK_REASON = BankMatchReason("pope-puffer-coat", "phash", 3)


# --- tracker: suspicion and levels ----------------------------------------------------------------------


def test_viral_but_unsuspected_cluster_raises_nothing() -> None:
    t = tracker(threshold=3)
    posts = [post(f"p{i}", T0 + i, image(POPE)) for i in range(100)]
    assert feed(t, posts) == []


def test_suspected_but_slow_cluster_raises_nothing() -> None:
    t = tracker(threshold=3, window=100)
    posts = [post("p0", T0, image(POPE, bank="pope-puffer-coat"))]
    posts += [post(f"p{i}", T0 + 60 * i, image(POPE_REUPLOAD)) for i in range(1, 30)]  # 1 share a minute
    assert feed(t, posts) == []


def test_suspected_viral_cluster_raises_level_one_at_the_threshold() -> None:
    t = tracker(threshold=3, window=100)
    assert t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat"))) == []
    assert t.observe(post("p1", T0 + 10, image(POPE_REUPLOAD))) == []
    alerts = t.observe(post("p2", T0 + 20, image(POPE)))
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.level == 1
    assert alert.cluster_id == f"c-{POPE.phash:016x}"
    assert alert.alert_id == f"{alert.cluster_id}/L1"
    assert alert.bank_cluster == "pope-puffer-coat"
    assert alert.shares_in_window == 3
    assert alert.threshold == 3
    assert alert.window_seconds == 100
    assert alert.event_time == T0 + 20
    assert alert.first_seen == T0
    assert alert.reasons == (BANK_REASON,)
    assert alert.sample_posts == ("p0", "p1", "p2")
    as_json = alert.to_json()
    assert as_json["event_time"] == "2023-03-20T14:00:20Z"
    assert as_json["first_seen"] == "2023-03-20T14:00:00Z"
    assert set(as_json) == {
        "alert_id",
        "cluster_id",
        "bank_cluster",
        "level",
        "shares_in_window",
        "window_seconds",
        "threshold",
        "event_time",
        "first_seen",
        "reasons",
        "sample_posts",
    }
    # More shares at the same level raise nothing more.
    assert feed(t, [post(f"q{i}", T0 + 21 + i, image(POPE)) for i in range(5)]) == []


def test_levels_escalate_by_the_factor_each_raised_exactly_once() -> None:
    t = tracker(threshold=2, window=1000, factor=3)
    posts = [post("p0", T0, image(POPE, provenance=["png:parameters (Stable Diffusion)"]))]
    posts += [post(f"p{i}", T0 + i, image(POPE_REUPLOAD)) for i in range(1, 60)]
    raised: dict[int, int] = {}
    for i, p in enumerate(posts, start=1):
        for alert in t.observe(p):
            assert alert.level not in raised, f"level {alert.level} raised twice"
            raised[alert.level] = i
            assert alert.threshold == 2 * 3 ** (alert.level - 1)
            assert alert.shares_in_window == alert.threshold
            assert alert.alert_id.endswith(f"/L{alert.level}")
            assert alert.bank_cluster is None
            assert alert.reasons == (ProvenanceReason("png:parameters (Stable Diffusion)"),)
    # threshold * factor**(k-1): 2, 6, 18, 54 shares.
    assert raised == {1: 2, 2: 6, 3: 18, 4: 54}


def test_default_levels_are_ten_times_apart() -> None:
    policy = ViralityPolicy()
    assert [policy.needed(k) for k in (1, 2, 3)] == [1000, 10_000, 100_000]


def test_a_cluster_that_becomes_suspected_after_being_viral_alerts_then() -> None:
    t = tracker(threshold=3, window=100)
    assert feed(t, [post(f"p{i}", T0 + i, image(POPE)) for i in range(5)]) == []
    alerts = t.observe(post("p5", T0 + 5, image(POPE_REUPLOAD, provenance=["exif:Software (midjourney)"])))
    assert [a.level for a in alerts] == [1]
    assert alerts[0].shares_in_window == 6
    assert alerts[0].event_time == T0 + 5
    assert alerts[0].reasons == (ProvenanceReason("exif:Software (midjourney)"),)


def test_a_caption_narrative_makes_the_post_images_cluster_suspected() -> None:
    t = tracker(threshold=2, window=100)
    alerts = feed(
        t, [post("p0", T0, image(OTHER), narrative=("pope-fashion", 0.83)), post("p1", T0 + 1, image(OTHER))]
    )
    assert len(alerts) == 1
    assert alerts[0].reasons == (NarrativeReason("pope-fashion", 0.83),)
    assert alerts[0].bank_cluster is None


def test_reasons_accumulate_and_keep_the_strongest_evidence() -> None:
    t = tracker(threshold=4, window=100)
    alerts = feed(
        t,
        [
            post("p0", T0, image(POPE, bank="pope-puffer-coat", distance=8)),
            post(
                "p1",
                T0 + 1,
                image(POPE_REUPLOAD, bank="pope-puffer-coat", distance=2),
                narrative=("pope", 0.7),
            ),
            post("p2", T0 + 2, image(POPE), narrative=("pope", 0.9)),
            post("p3", T0 + 3, image(POPE, provenance=["png:parameters (Stable Diffusion)"])),
        ],
    )
    assert len(alerts) == 1
    assert alerts[0].reasons == (
        BankMatchReason("pope-puffer-coat", "phash", 2),
        NarrativeReason("pope", 0.9),
        ProvenanceReason("png:parameters (Stable Diffusion)"),
    )


def test_reasons_of_one_cluster_do_not_leak_into_another() -> None:
    t = tracker(threshold=2, window=100)
    alerts = feed(
        t,
        [
            post("p0", T0, image(POPE, bank="pope-puffer-coat")),
            post("p1", T0 + 1, image(OTHER)),
            post("p2", T0 + 2, image(OTHER)),
            post("p3", T0 + 3, image(OTHER)),
        ],
    )
    assert alerts == []


# --- tracker: counting ----------------------------------------------------------------------------------


def test_a_redelivered_post_is_counted_once() -> None:
    t = tracker(threshold=3, window=100)
    first = post("p0", T0, image(POPE, bank="pope-puffer-coat"))
    second = post("p1", T0 + 1, image(POPE))
    assert feed(t, [first, second, first, second, first, second]) == []
    alerts = t.observe(post("p2", T0 + 2, image(POPE)))
    assert [a.shares_in_window for a in alerts] == [3]


def test_near_duplicate_reuploads_count_for_one_cluster() -> None:
    t = tracker(threshold=3, window=100)
    alerts = feed(
        t,
        [
            post("p0", T0, image(POPE, bank="pope-puffer-coat")),
            post("p1", T0 + 1, image(POPE_REUPLOAD)),
            post("p2", T0 + 2, image(POPE_REUPLOAD)),
        ],
    )
    assert [a.shares_in_window for a in alerts] == [3]


def test_a_post_with_two_copies_of_an_image_counts_once() -> None:
    t = tracker(threshold=2, window=100)
    assert t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat"), image(POPE_REUPLOAD))) == []
    assert len(t.observe(post("p1", T0 + 1, image(POPE)))) == 1


def test_an_undecodable_image_leaves_the_rest_of_the_post_in_play() -> None:
    t = tracker(threshold=2, window=100)
    assert t.observe(post("p0", T0, image(None), image(POPE, bank="pope-puffer-coat"))) == []
    assert t.observe(post("p1", T0 + 1, image(None))) == []  # counts for no cluster
    assert len(t.observe(post("p2", T0 + 2, image(POPE)))) == 1


def test_reshares_count_for_the_parents_clusters() -> None:
    t = tracker(threshold=4, window=100)
    parent = post("p0", T0, image(POPE, bank="pope-puffer-coat"), image(OTHER))
    assert t.observe(parent) == []
    alerts = feed(t, [post(f"r{i}", T0 + i, reshare_of="p0") for i in range(1, 4)])
    # The parent's two clusters each got 4 shares; only the suspected one alerts.
    assert len(alerts) == 1
    assert alerts[0].cluster_id == f"c-{POPE.phash:016x}"
    assert alerts[0].shares_in_window == 4
    assert alerts[0].sample_posts == ("p0", "r1", "r2", "r3")


def test_a_reshare_caption_narrative_suspects_the_parents_cluster() -> None:
    t = tracker(threshold=3, window=100)
    alerts = feed(
        t,
        [
            post("p0", T0, image(OTHER)),
            post("r1", T0 + 1, reshare_of="p0", narrative=("trump-arrest", 0.8)),
            post("r2", T0 + 2, reshare_of="p0"),
        ],
    )
    assert len(alerts) == 1
    assert alerts[0].reasons == (NarrativeReason("trump-arrest", 0.8),)


def test_reshares_of_reshares_count_for_the_original_images() -> None:
    t = tracker(threshold=4, window=100)
    alerts = feed(
        t,
        [
            post("p0", T0, image(POPE, bank="pope-puffer-coat")),
            post("r1", T0 + 1, reshare_of="p0"),
            post("r2", T0 + 2, reshare_of="r1"),
            post("r3", T0 + 3, reshare_of="r2"),
        ],
    )
    assert [a.shares_in_window for a in alerts] == [4]
    assert alerts[0].event_time == T0 + 3


def test_reshares_arriving_before_their_parent_are_counted_when_it_arrives() -> None:
    t = tracker(threshold=4, window=100)
    early = [
        post("r1", T0 + 5, reshare_of="p0"),
        post("r2", T0 + 6, reshare_of="r1"),
        post("r3", T0 + 7, reshare_of="p0"),
    ]
    assert feed(t, early) == []
    alerts = t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat")))
    assert len(alerts) == 1
    assert alerts[0].shares_in_window == 4
    assert alerts[0].event_time == T0 + 7
    assert alerts[0].first_seen == T0
    assert set(alerts[0].sample_posts) == {"p0", "r1", "r2", "r3"}


def test_waiting_reshares_are_deduplicated_too() -> None:
    t = tracker(threshold=3, window=100)
    waiting = post("r1", T0 + 5, reshare_of="p0")
    assert feed(t, [waiting, waiting, waiting]) == []
    assert t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat"))) == []  # 2 shares, not 4
    assert [a.shares_in_window for a in t.observe(post("p1", T0 + 6, image(POPE)))] == [3]


def test_reshares_arriving_before_their_parent_more_than_a_window_later_still_alert() -> None:
    # The parent was posted at T0 and reshared in a burst two windows later; the archive delivers the
    # reshares first. Once the parent arrives, the burst's window (T0+150, T0+250] holds 3 shares of a
    # suspected cluster: contract §4 says it raises level 1.
    t = tracker(threshold=3, window=100)
    assert feed(t, [post(f"r{i}", T0 + 240 + i, reshare_of="p0") for i in range(3)]) == []
    alerts = t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat")))
    assert [(a.level, a.shares_in_window, a.event_time) for a in alerts] == [(1, 3, T0 + 242)]


def test_a_late_share_alerts_for_the_window_it_completes() -> None:
    t = tracker(threshold=3, window=100)
    assert (
        feed(
            t,
            [
                post("p0", T0, image(POPE, bank="pope-puffer-coat")),
                post("p1", T0 + 50, image(POPE)),
                post("p2", T0 + 500, image(POPE)),
            ],
        )
        == []
    )
    alerts = t.observe(post("late", T0 + 60, image(POPE_REUPLOAD)))
    assert [(a.level, a.shares_in_window, a.event_time) for a in alerts] == [(1, 3, T0 + 60)]


# --- tracker: restarts and determinism ------------------------------------------------------------------


def _burst(start: int, count: int, offset: int = 0) -> list[AnalyzedPost]:
    return [post(f"b{offset + i}", start + i, image(POPE_REUPLOAD)) for i in range(count)]


def test_a_restarted_tracker_raises_no_alert_twice() -> None:
    store: dict[str, Any] = {}
    first_run = [post("p0", T0, image(POPE, bank="pope-puffer-coat")), *_burst(T0 + 1, 4)]
    before = feed(tracker(store, threshold=3, window=100, factor=2), first_run)
    assert [a.level for a in before] == [1]

    restarted = tracker(store, threshold=3, window=100, factor=2)  # new process, same table
    # The broker redelivers what the first run had not committed, then new posts follow.
    after = feed(restarted, [*first_run, *_burst(T0 + 5, 10, offset=100)])
    assert [a.level for a in after] == [2, 3]
    assert [a.shares_in_window for a in after] == [6, 12]
    assert after[0].cluster_id == before[0].cluster_id

    again = tracker(store, threshold=3, window=100, factor=2)
    assert feed(again, [*first_run, *_burst(T0 + 5, 10, offset=100)]) == []


def test_restart_keeps_waiting_reshares() -> None:
    store: dict[str, Any] = {}
    assert feed(tracker(store), [post(f"r{i}", T0 + i, reshare_of="p0") for i in range(1, 3)]) == []
    alerts = tracker(store).observe(post("p0", T0, image(POPE, bank="pope-puffer-coat")))
    assert [a.shares_in_window for a in alerts] == [3]


def test_the_same_stream_always_yields_the_same_alerts() -> None:
    rng = random.Random(5)
    stream = [post("p0", T0, image(POPE, bank="pope-puffer-coat"), narrative=("pope", 0.8))]
    for i in range(1, 80):
        kind = rng.random()
        t = T0 + rng.randrange(0, 400)
        if kind < 0.4:
            stream.append(post(f"p{i}", t, reshare_of=f"p{rng.randrange(0, 80)}"))
        elif kind < 0.8:
            stream.append(post(f"p{i}", t, image(rng.choice([POPE, POPE_REUPLOAD, OTHER]))))
        else:
            stream.append(post(f"p{i}", t, image(OTHER, provenance=["png:Software (NovelAI)"])))
    first = [a.to_json() for a in feed(tracker(threshold=5, window=60, factor=2), stream)]
    second = [a.to_json() for a in feed(tracker(threshold=5, window=60, factor=2), stream)]
    assert first, "the stream must raise alerts for this test to mean anything"
    assert first == second
    ids = [a["alert_id"] for a in first]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("factor", [2, 10])
def test_no_level_is_ever_raised_twice_in_a_long_stream(factor: int) -> None:
    t = tracker(threshold=2, window=30, factor=factor)
    alerts = t.observe(post("p0", T0, image(POPE, bank="pope-puffer-coat")))
    rng = random.Random(factor)
    for i in range(1, 400):
        alerts += t.observe(post(f"p{i}", T0 + rng.randrange(0, 600), image(POPE_REUPLOAD)))
    levels = [a.level for a in alerts]
    assert levels == sorted(set(levels))
    assert levels[0] == 1


def _as_previous_version(store: dict[str, Any]) -> dict[str, Any]:
    """The same state as the previous version wrote it: every record a JSON object."""
    old: dict[str, Any] = {}
    for key, value in store.items():
        kind = key.split(":", 1)[0]
        if kind == "rep":
            seq, hashes = read_rep(value)
            old[key] = {**hashes.to_json(), "seq": seq}
        elif kind == "cl":
            meta = read_meta(value)
            old[key] = {
                "first_seen": meta[0],
                "latest": meta[1],
                "level": meta[2],
                "reasons": meta[3] or [],
                "samples": [list(sample) for sample in samples_of(meta)],
                **({"image_url": meta[4]} if meta[4] else {}),
            }
        elif kind == "b":
            old[key] = {str(second): count for second, count in bucket_items(value)}
        else:
            old[key] = value
    return old


def test_a_table_written_by_the_previous_version_carries_on_as_if_never_stopped() -> None:
    rng = random.Random(9)
    pope = dataclasses.replace(image(POPE, bank="pope-puffer-coat"), url="https://img/pope.jpg")
    stream = [post("p0", T0, pope)]
    for i in range(1, 120):
        t = T0 + i * 2
        if rng.random() < 0.4:
            stream.append(post(f"p{i}", t, reshare_of=f"p{rng.randrange(0, i)}"))
        else:
            stream.append(post(f"p{i}", t, image(rng.choice([POPE_REUPLOAD, OTHER]))))
    one_run = tracker(threshold=4, window=60, factor=2)
    raised_at = [i for i, p in enumerate(stream) for _ in one_run.observe(p)]
    assert len(set(raised_at)) >= 2, "alerts at two posts at least, for this test to mean anything"
    split = raised_at[0] + 1  # the upgrade comes between two alerts
    store: dict[str, Any] = {}
    before = feed(tracker(store, threshold=4, window=60, factor=2), stream[:split])
    old = _as_previous_version(store)
    assert any(isinstance(v, dict) for k, v in old.items() if k.startswith("cl:"))
    after = feed(tracker(old, threshold=4, window=60, factor=2), stream[split:])  # upgraded worker, old table
    uninterrupted = feed(tracker(threshold=4, window=60, factor=2), stream)
    assert [a.to_json() for a in before + after] == [a.to_json() for a in uninterrupted]
    assert after
