"""Tests for monitor.tracking.partitions: cluster ids assigned against a replicated representative index,
sightings split by cluster id over partitions, and the merge of clusters two partitions opened at once."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from monitor.models import Alert, AnalyzedPost, ImageHashes
from monitor.tracking.partitions import RepresentativeIndex, partition_of, split_by_partition
from monitor.tracking.records import (
    ClusterState,
    cluster_id_of,
    decode_state,
    drop_state,
    encode_state,
    read_state,
    write_state,
)
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy, merge_states
from monitor.tracking.virality import count_window
from tests.test_virality_tracker import CLUSTER_DISTANCE, T0, image, post


def random_hashes(rng: random.Random) -> ImageHashes:
    return ImageHashes(phash=rng.getrandbits(64), pdq=rng.getrandbits(256), pdq_quality=100)


def flip(value: int, bits: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(bits), count):
        value ^= 1 << bit
    return value


def reupload(hashes: ImageHashes, rng: random.Random, phash_bits: int = 3) -> ImageHashes:
    """Someone else's copy: a few pHash bits (within the cluster distance) and PDQ bits off."""
    return ImageHashes(
        phash=flip(hashes.phash, 64, phash_bits, rng),
        pdq=flip(hashes.pdq or 0, 256, 10, rng),
        pdq_quality=hashes.pdq_quality,
    )


def new_index() -> RepresentativeIndex:
    return RepresentativeIndex(CLUSTER_DISTANCE)


# --- keys and partitions --------------------------------------------------------------------------------


def test_partition_of_is_where_kafka_puts_a_record_keyed_by_the_cluster_id() -> None:
    kafka = DefaultPartitioner()
    rng = random.Random(1)
    ids = [cluster_id_of(rng.getrandbits(64)) for _ in range(2000)]
    # post ids too (the post index is keyed by them): every length's tail bytes, and non-ASCII ones
    keys = ids + [f"post-{'é' * (n % 5)}{rng.getrandbits(8 * (n % 23))}" for n in range(500)]
    for partitions in (1, 2, 4, 12):
        every = list(range(partitions))
        assert [partition_of(c, partitions) for c in keys] == [kafka(c.encode(), every, every) for c in keys]
    owned = [sum(partition_of(c, 4) == p for c in ids) for p in range(4)]
    assert min(owned) > 400, owned  # an even share each: capacity grows with partitions
    with pytest.raises(ValueError, match="at least 1"):
        partition_of(ids[0], 0)


def test_a_post_goes_to_each_partition_that_owns_one_of_its_clusters_with_only_those() -> None:
    ids = [f"c-{i:016x}" for i in range(40)]
    first = ids[0]
    other = next(c for c in ids if partition_of(c, 4) != partition_of(first, 4))
    split = split_by_partition(post("p", T0), [first, None, other, first], 4)
    assert split == {
        partition_of(first, 4): [first, None, None, first],
        partition_of(other, 4): [None, None, other, None],
    }


# --- the replicated representative index ----------------------------------------------------------------


def test_a_reupload_joins_its_cluster_and_a_new_picture_founds_one() -> None:
    rng = random.Random(2)
    index = new_index()
    original, unrelated = random_hashes(rng), random_hashes(rng)
    founded = index.assign(original)
    assert founded.founded and founded.cluster_id == cluster_id_of(original.phash)
    joined = index.assign(reupload(original, rng))
    assert not joined.founded and joined.cluster_id == founded.cluster_id
    # A mirrored copy (PDQ's dihedral variant) with a pHash too far off joins by PDQ.
    mirrored = ImageHashes(phash=flip(original.phash, 64, 20, rng), pdq=original.pdq, pdq_quality=100)
    assert index.assign(mirrored).cluster_id == founded.cluster_id
    other = index.assign(unrelated)
    assert other.founded and other.cluster_id == cluster_id_of(unrelated.phash)
    assert len(index) == 2


def test_every_worker_assigns_the_same_cluster_whatever_order_it_read_the_representatives() -> None:
    rng = random.Random(3)
    reps = [random_hashes(rng) for _ in range(300)]
    # Two representatives at the same pHash distance from one query: the tie must not depend on order.
    middle = reps[0].phash
    reps += [
        ImageHashes(phash=middle ^ 0b11, pdq=rng.getrandbits(256), pdq_quality=100),
        ImageHashes(phash=middle ^ 0b1100, pdq=rng.getrandbits(256), pdq_quality=100),
    ]
    queries = [reupload(h, rng) for h in rng.sample(reps, 100)] + [random_hashes(rng) for _ in range(50)]
    queries.append(ImageHashes(phash=middle ^ 0b1111 ^ (1 << 40), pdq=None))
    answers = []
    for seed in range(3):
        order = reps[:]
        random.Random(seed).shuffle(order)
        index = new_index()
        for hashes in order:
            index.add(cluster_id_of(hashes.phash), hashes)
        answers.append([index.nearest(q) for q in queries])
    assert answers[0] == answers[1] == answers[2]
    assert sum(a is not None for a in answers[0]) == 101  # the re-uploads and the tied query
    assert answers[0][-1] == min(cluster_id_of(middle ^ 0b11), cluster_id_of(middle ^ 0b1100))


def test_two_workers_founding_one_picture_at_once_merge_into_the_lower_id_on_every_worker() -> None:
    rng = random.Random(4)
    picture = random_hashes(rng)
    copy = reupload(picture, rng)
    first, second = new_index(), new_index()
    a = first.assign(picture)  # neither worker has seen the other's representative yet
    b = second.assign(copy)
    assert a.founded and b.founded and a.cluster_id != b.cluster_id
    winner, loser = sorted([a.cluster_id, b.cluster_id])
    # The representatives reach the other worker, and a third one that reads both in either order.
    assert first.add(b.cluster_id, copy) == [loser]
    assert second.add(a.cluster_id, picture) == [loser]
    third = new_index()
    third.add(b.cluster_id, copy)
    third.add(a.cluster_id, picture)
    for index in (first, second, third):
        assert index.canonical(loser) == index.canonical(winner) == winner
        assert index.merged() == {loser: winner}
        assert index.assign(reupload(picture, rng)).cluster_id == winner
        assert index.assign(copy).cluster_id == winner
    # A representative already held changes nothing.
    assert first.add(a.cluster_id, picture) == []


def test_an_expired_cluster_leaves_the_index_and_the_index_shrinks_to_the_live_ones() -> None:
    rng = random.Random(6)
    reps = [random_hashes(rng) for _ in range(6_000)]
    index = new_index()
    for hashes in reps:
        index.add(cluster_id_of(hashes.phash), hashes)
    gone, kept = reps[:4_500], reps[4_500:]
    assert index.remove(cluster_id_of(h.phash) for h in gone) == 4_500
    assert index.remove([cluster_id_of(gone[0].phash), "c-never-held"]) == 0
    assert len(index) == 1_500
    # The removed rows went (a rebuild once they outnumbered the live ones): the memory is the live ones'.
    fresh = new_index()
    for hashes in kept:
        fresh.add(cluster_id_of(hashes.phash), hashes)
    assert index.memory_bytes <= 1.2 * fresh.memory_bytes
    # A copy of an expired picture founds its cluster again; copies of live ones join theirs, as in an
    # index that never held the expired ones.
    for hashes in rng.sample(gone, 50):
        assert index.nearest(reupload(hashes, rng)) is None
    queries = [reupload(h, rng) for h in rng.sample(kept, 200)] + [random_hashes(rng) for _ in range(50)]
    assert [index.nearest(q) for q in queries] == [fresh.nearest(q) for q in queries]
    again = index.assign(gone[0])
    assert again.founded and again.cluster_id == cluster_id_of(gone[0].phash)


def test_clusters_merged_into_an_expired_one_still_count_as_it() -> None:
    """Their merge marks forward their sightings to its id, so a worker that reads the topic after the
    tombstone (the merged representatives without the winner's) reaches the same id."""
    rng = random.Random(7)
    picture = random_hashes(rng)
    copy = reupload(picture, rng)
    index = new_index()
    a = index.assign(picture, (100.0, "p1"))
    b_id = cluster_id_of(copy.phash)
    assert index.add(b_id, copy, (200.0, "p2")) == [b_id]  # founded at once elsewhere, later: merged
    index.remove([a.cluster_id])
    late = reupload(copy, rng, phash_bits=1)
    assert index.assign(late, (300.0, "p3")).cluster_id == a.cluster_id


# --- merging cluster state ------------------------------------------------------------------------------


def _state(cluster_id: str, shares: list[tuple[int, int]], level: int = 0, **extra: Any) -> ClusterState:
    return ClusterState(
        cluster_id=cluster_id,
        first_seen=shares[0][0],
        latest=shares[-1][0],
        level=level,
        shares=tuple(shares),
        **extra,
    )


def test_merged_state_adds_counts_keeps_the_higher_level_and_does_not_depend_on_order() -> None:
    a = _state(
        "c-2", [(T0, 1), (T0 + 5, 2)], level=1, samples=((T0, "p1"), (T0 + 5, "p2")), image_url="http://a"
    )
    b = _state(
        "c-1",
        [(T0 + 5, 1), (T0 + 70, 1)],
        samples=((T0 + 5, "q1"),),
        reasons=({"kind": "provenance", "marker": "x"},),
    )
    c = _state("c-3", [(T0 - 10, 4)], dismissed=True)
    merged = merge_states(a, b)
    assert merged.cluster_id == "c-1"
    assert merged.shares == ((T0, 1), (T0 + 5, 3), (T0 + 70, 1))
    assert (merged.first_seen, merged.latest, merged.level) == (T0, T0 + 70, 1)
    assert merged.samples == ((T0, "p1"), (T0 + 5, "p2"), (T0 + 5, "q1"))
    assert merged.reasons == ({"kind": "provenance", "marker": "x"},)
    assert merged.image_url == "http://a"
    assert merge_states(b, a) == merged
    assert merge_states(merge_states(a, b), c) == merge_states(a, merge_states(b, c))
    assert merge_states(merged, c).dismissed and merge_states(merged, c).first_seen == T0 - 10


def test_a_merged_cluster_counts_both_and_raises_no_level_either_raised() -> None:
    policy = ViralityPolicy(threshold=3, window_seconds=100, level_factor=10)
    owner_of_winner = ClusterTracker({}, policy, CLUSTER_DISTANCE)
    owner_of_loser = ClusterTracker({}, policy, CLUSTER_DISTANCE)
    winner, loser = "c-0000000000000001", "c-0000000000000002"
    raised: list[Alert] = []
    for i in range(3):  # the loser's partition saw a suspected picture go viral: level 1
        p = post(f"l{i}", T0 + i, image(bank="pope" if i == 0 else None))
        raised += owner_of_loser.observe_assigned(p, [loser])
    assert [a.alert_id for a in raised] == [f"{loser}/L1"]
    for i in range(2):
        raised += owner_of_winner.observe_assigned(post(f"w{i}", T0 + 10 + i, image()), [winner])
    assert len(raised) == 1

    moved = read_state(owner_of_loser.store, loser)
    assert moved is not None
    drop_state(owner_of_loser.store, loser)
    assert not any(loser in key for key in owner_of_loser.store)
    assert owner_of_winner.absorb(winner, decode_state(encode_state(moved))) == []  # level 1 is not raised
    store = owner_of_winner.store
    assert count_window(store, winner, T0 + 11, 100) == 5
    merged = read_state(store, winner)
    assert merged is not None and merged.level == 1 and merged.first_seen == T0
    assert [pid for _, pid in merged.samples] == ["l0", "l1", "l2", "w0", "w1"]
    # Shares that reach level 2 (30 in the window) raise it once, under the winner's id, and never level 1.
    for i in range(40):
        raised += owner_of_winner.observe_assigned(post(f"x{i}", T0 + 20 + i, image()), [winner])
    assert [a.alert_id for a in raised] == [f"{loser}/L1", f"{winner}/L2"]
    assert raised[1].shares_in_window == 30 and raised[1].first_seen == T0


def test_absorbed_shares_that_complete_a_level_raise_it_once() -> None:
    policy = ViralityPolicy(threshold=4, window_seconds=100, level_factor=10)
    t = ClusterTracker({}, policy, CLUSTER_DISTANCE)
    winner = "c-0000000000000001"
    assert t.observe_assigned(post("w0", T0, image(bank="pope")), [winner]) == []
    assert t.observe_assigned(post("w1", T0 + 1, image()), [winner]) == []
    alerts = t.absorb(winner, _state("c-0000000000000009", [(T0 + 2, 1), (T0 + 3, 1)]))
    assert [(a.alert_id, a.shares_in_window, a.event_time) for a in alerts] == [(f"{winner}/L1", 4, T0 + 3)]
    assert t.absorb(winner, _state("c-000000000000000a", [(T0 + 4, 1)])) == []


def test_cluster_state_records_round_trip_and_refuse_garbage() -> None:
    t = ClusterTracker({}, ViralityPolicy(threshold=100, window_seconds=100), CLUSTER_DISTANCE)
    cid = "c-0000000000000005"
    for i in range(7):
        t.observe_assigned(post(f"p{i}", T0 + 30 * i, image(bank="pope" if i == 2 else None)), [cid])
    state = read_state(t.store, cid)
    assert state is not None
    assert sum(count for _, count in state.shares) == 7 and len(state.samples) == 5
    assert decode_state(encode_state(state)) == state
    copy: dict[str, Any] = {}
    write_state(copy, state)
    assert copy == {k: v for k, v in t.store.items() if k.startswith(("cl:", "b:"))}
    with pytest.raises(ValueError, match="not a cluster state record"):
        decode_state(b'["c-1", 1, 2]')
    with pytest.raises(ValueError, match="not a cluster state record"):
        decode_state(b"{oops")


# --- partitions together --------------------------------------------------------------------------------


def _stream(rng: random.Random, count: int) -> list[AnalyzedPost]:
    """Pictures, suspected ones among them, re-uploads, posts with two pictures, reshares, in time order."""
    pictures: list[ImageHashes] = []
    posts: list[AnalyzedPost] = []
    for i in range(count):
        t = T0 + i // 4
        roll = rng.random()
        if roll < 0.15 or not pictures:
            pictures.append(random_hashes(rng))
            posts.append(post(f"n{i}", t, image(pictures[-1], bank="fake" if rng.random() < 0.3 else None)))
        elif roll < 0.55:
            hashes = reupload(rng.choice(pictures[-8:]), rng)
            posts.append(post(f"u{i}", t, image(hashes), image(reupload(rng.choice(pictures), rng))))
        else:
            parent = rng.choice(posts[-30:])
            posts.append(post(f"r{i}", t, reshare_of=parent.post_id))
    return posts


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_partitioned_trackers_raise_the_alerts_one_tracker_raises(partitions: int) -> None:
    policy = ViralityPolicy(threshold=8, window_seconds=60, level_factor=3)
    posts = _stream(random.Random(5), 1500)
    alone = ClusterTracker({}, policy, CLUSTER_DISTANCE)
    expected = [alert for p in posts for alert in alone.observe(p)]

    index = new_index()  # replicated to every analysis worker; one copy stands for all here
    trackers = [ClusterTracker({}, policy, CLUSTER_DISTANCE) for _ in range(partitions)]
    clusters_of: dict[str, list[str]] = {}  # the router's view: a post's clusters, to route its reshares
    got: list[Alert] = []
    for p in posts:
        if p.reshare_of is None:
            ids: list[str | None] = [
                None if im.hashes is None else index.assign(im.hashes).cluster_id for im in p.images
            ]
            clusters_of[p.post_id] = [c for c in ids if c is not None]
            for partition, counted in split_by_partition(p, ids, partitions).items():
                got += trackers[partition].observe_assigned(p, counted)
        else:
            clusters_of[p.post_id] = clusters_of.get(p.reshare_of, [])
            for partition in sorted({partition_of(c, partitions) for c in clusters_of[p.post_id]}):
                got += trackers[partition].observe_assigned(p, [])
    assert len(expected) > 5
    assert sorted(got, key=lambda a: (a.event_time, a.alert_id)) == sorted(
        expected, key=lambda a: (a.event_time, a.alert_id)
    )
    if partitions > 1:
        assert all(t.store for t in trackers)  # each partition holds a share of the clusters
