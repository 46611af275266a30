"""Tests for monitor.tracking.routing: partitioned tracking's operations, delivered through in-memory
partitions in a shuffled interleaving (as Kafka delivers them: in order within a partition, any order
across), give the alerts of one tracker reading the stream in order; reshares reach their parent's
clusters through the post index, whichever comes first; concurrently founded clusters merge once."""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from monitor.models import Alert, AnalyzedPost, ImageHashes
from monitor.tracking.expiry import plan_expiry
from monitor.tracking.partitions import RepresentativeIndex, partition_of
from monitor.tracking.routing import (
    Op,
    Outcome,
    PartitionRouter,
    assign_post,
    by_partition,
    merge_op,
    post_ops,
    track_in_order,
)
from monitor.tracking.tracker import ClusterTracker, ViralityPolicy
from tests.test_tracking_partitions import _stream, random_hashes, reupload
from tests.test_virality_tracker import CLUSTER_DISTANCE, T0, image, post

POLICY = ViralityPolicy(threshold=8, window_seconds=60, level_factor=3, retention_seconds=0)


def one_tracker(posts: list[AnalyzedPost]) -> list[Alert]:
    """The embedded replay with partitioned assignment (monitor/pipeline.py `Pipeline.track`)."""
    index = RepresentativeIndex(CLUSTER_DISTANCE)
    tracker = ClusterTracker({}, POLICY, CLUSTER_DISTANCE)
    return [alert for p in posts for alert in track_in_order(tracker, index, p)]


class Partitions:
    """`sightings` in memory: a FIFO per partition, each with its router; `run` drains them in a random
    interleaving, forwards going to the back of their partition's queue, as a transaction sends them."""

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.rng = random.Random(seed)
        self.queues: list[deque[dict[str, Any]]] = [deque() for _ in range(count)]
        self.routers = [
            PartitionRouter(ClusterTracker({}, POLICY, CLUSTER_DISTANCE, post_index=False), p, count)
            for p in range(count)
        ]
        self.alerts: list[Alert] = []
        self.merges = 0

    def send(self, ops: list[Op]) -> None:
        for partition, items in by_partition(ops, self.count).items():
            self.queues[partition].extend(item for _, item in items)

    def step(self, steps: int = 1) -> None:
        for _ in range(steps):
            ready = [p for p, queue in enumerate(self.queues) if queue]
            if not ready:
                return
            partition = self.rng.choice(ready)
            for _ in range(self.rng.randint(1, 5)):  # a batch
                if not self.queues[partition]:
                    break
                outcome = Outcome()
                self.routers[partition].handle(self.queues[partition].popleft(), outcome)
                self.alerts += outcome.alerts
                self.send(outcome.forwards)

    def run(self) -> list[Alert]:
        while any(self.queues):
            self.step()
        return self.alerts


def by_key(alerts: list[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (a.alert_id, a.event_time))


def routed(
    posts: list[AnalyzedPost], partitions: int, lag: bool = False, recent: bool = False
) -> tuple[Partitions, list[Alert]]:
    """The stream through analysis (one worker) and `partitions` trackers; with `recent`, analysis
    resolves reshares of the posts it analysed itself, as monitor/runtime/representatives.py does."""
    index = RepresentativeIndex(CLUSTER_DISTANCE)
    sightings = Partitions(partitions, seed=partitions)
    merges = 0
    known: dict[str, list[str]] = {}
    for p in posts:
        assigned = assign_post(index, p)  # what analysis does, and sends
        merges += len(assigned.merged)
        parent = known.get(p.reshare_of) if recent and p.reshare_of else None
        own = parent if p.reshare_of else [c for c in assigned.clusters if c is not None]
        if own is not None:
            known[p.post_id] = own
        ops = post_ops(p, assigned.clusters, partitions, parent)
        sightings.send([merge_op(merged, into) for merged, into in assigned.merged] + ops)
        if lag:
            sightings.step(sightings.rng.randint(0, 2))  # tracking lags analysis by a varying amount
        else:
            sightings.run()  # each post tracked (and its forwards) before the next is analysed
    sightings.merges = merges
    return sightings, sightings.run()


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_routed_partitions_raise_the_alerts_of_one_tracker_in_order(partitions: int) -> None:
    posts = _stream(random.Random(5), 1500)
    expected = one_tracker(posts)
    sightings, got = routed(posts, partitions, lag=False)
    assert len(expected) > 5 and any(p.reshare_of for p in posts)
    assert by_key(got) == by_key(expected)
    if partitions > 1:
        assert all(router.store for router in sightings.routers)


@pytest.mark.parametrize("partitions", [2, 4])
def test_lagging_partitions_raise_the_same_alerts_each_once(partitions: int) -> None:
    """Tracking behind analysis, partitions in any interleaving: a reshare reaches its cluster a hop after
    the posts analysed with it, so a crossing may be seen at a later second; the alerts are the same ones,
    each once, with the same counts counted."""
    posts = _stream(random.Random(5), 1500)
    expected = one_tracker(posts)
    _, got = routed(posts, partitions, lag=True)
    assert sorted(a.alert_id for a in got) == sorted(a.alert_id for a in expected)


@pytest.mark.parametrize("partitions", [2, 4])
def test_reshares_resolved_by_analysis_keep_stream_order_and_every_alert_field(partitions: int) -> None:
    """Analysis resolves the reshares of posts it analysed: each partition then reads its clusters'
    shares in stream order, so however far tracking lags and however the partitions interleave, the
    alerts are the in-order tracker's, every field."""
    posts = _stream(random.Random(5), 1500)
    _, got = routed(posts, partitions, lag=True, recent=True)
    assert by_key(got) == by_key(one_tracker(posts))


def test_posts_analysed_out_of_order_name_each_cluster_after_its_earliest_post() -> None:
    """Several `posts` partitions: analysis reads the stream out of event order. A copy older than its
    cluster's founder founds a cluster of its own and the younger one merges into it, so the clusters
    (and their alerts) are those of the in-order replay, each level once, every share counted once."""
    posts = [p for p in _stream(random.Random(9), 1200) if p.reshare_of is None]
    expected = one_tracker(posts)
    rng = random.Random(3)
    blocks = [posts[start : start + 40] for start in range(0, len(posts), 40)]
    shuffled = [p for block in blocks for p in rng.sample(block, len(block))]
    sightings, got = routed(shuffled, 3)
    assert sightings.merges > 0
    assert {a.cluster_id for a in got} == {a.cluster_id for a in expected}
    assert sorted(a.alert_id for a in got) == sorted(a.alert_id for a in expected)
    in_order = _clusters_in_order(posts)
    for cluster_id in {a.cluster_id for a in expected}:
        counted = sum(count for router in sightings.routers for count in _shares(router, cluster_id))
        assert counted == sum(1 for clusters in in_order.values() if cluster_id in clusters)


def _clusters_in_order(posts: list[AnalyzedPost]) -> dict[str, set[str]]:
    index = RepresentativeIndex(CLUSTER_DISTANCE)
    return {p.post_id: {c for c in assign_post(index, p).clusters if c is not None} for p in posts}


def test_a_reshare_read_before_its_parent_waits_in_the_index_and_counts_once_resolved() -> None:
    hashes = random_hashes(random.Random(2))
    parent = post("p1", T0 + 5, image(hashes, bank="fake"))
    reshares = [post(f"r{i}", T0 + 6 + i, reshare_of="p1") for i in range(7)]
    chained = post("rr", T0 + 20, reshare_of="r0")  # a reshare of a reshare: two hops
    sightings = Partitions(3, seed=1)
    cluster = RepresentativeIndex(CLUSTER_DISTANCE).assign(hashes).cluster_id
    for p in [*reshares, chained, chained]:  # the reshares (one twice: a redelivery) before the parent
        sightings.send(post_ops(p, [], 3))
    sightings.run()
    assert not sightings.alerts
    sightings.send(post_ops(parent, [cluster], 3))
    alerts = sightings.run()
    assert [a.alert_id for a in alerts] == [f"{cluster}/L1"]
    counted = sum(count for router in sightings.routers for count in _shares(router, cluster))
    assert counted == 9  # the parent, seven reshares and the reshare of a reshare, each once
    assert by_key(alerts) == by_key(one_tracker([parent, *reshares, chained]))


def test_clusters_founded_at_once_by_two_workers_merge_into_the_earliest_and_alert_once() -> None:
    rng = random.Random(7)
    picture = random_hashes(rng)
    copies = [reupload(picture, rng) for _ in range(30)]
    posts = [post(f"q{i}", T0 + i, image(h, bank="fake")) for i, h in enumerate(copies)]
    expected = one_tracker(posts)
    workers = [RepresentativeIndex(CLUSTER_DISTANCE) for _ in range(2)]
    sightings = Partitions(4, seed=3)
    founded: list[tuple[str, ImageHashes, tuple[float, str]]] = []
    for i, p in enumerate(posts):
        worker = workers[i % 2]  # posts spread over two workers
        rank = (p.created_at, p.post_id)
        assignment = worker.assign(p.images[0].hashes or picture, rank)
        if assignment.founded:
            founded.append((assignment.cluster_id, p.images[0].hashes or picture, rank))
        sightings.send(post_ops(p, [assignment.cluster_id], 4))
        sightings.step(3)
        if i == 5:  # the representatives reach the other worker only now: both founded one
            for other in workers:
                for cluster_id, hashes, rep_rank in founded:
                    for merged in other.add(cluster_id, hashes, rep_rank):
                        sightings.send([merge_op(merged, other.canonical(merged))])  # each worker sends it
    got = sightings.run()
    assert len({cluster_id for cluster_id, _, _ in founded}) >= 2, "both workers founded a cluster"
    winner = expected[0].cluster_id
    assert {a.cluster_id for a in got} == {winner}  # the cluster the in-order replay founded
    assert sorted(a.level for a in got) == sorted(a.level for a in expected)  # each level once
    counted = sum(count for router in sightings.routers for count in _shares(router, winner))
    assert counted == len(posts)


def _shares(router: PartitionRouter, cluster_id: str) -> list[int]:
    from monitor.tracking.records import read_state

    state = read_state(router.store, cluster_id)
    return [] if state is None else [count for _, count in state.shares]


def test_post_index_records_expire_with_their_post_and_merge_marks_stay() -> None:
    items = [("i:old", [T0, "c-1"]), ("i:new", [T0 + 500, "c-2"]), ("m:c-9", "c-1"), ("s:new", T0 + 500)]
    plan = plan_expiry(items, T0 + 100)
    assert set(plan.delete) == {"i:old"}


def test_an_item_that_is_not_an_operation_is_refused_with_the_reason() -> None:
    router = PartitionRouter(ClusterTracker({}, POLICY, CLUSTER_DISTANCE, post_index=False), 0, 1)
    with pytest.raises(ValueError, match="not a partitioned sighting"):
        router.handle({"post_id": "x"}, Outcome())
    with pytest.raises(ValueError, match="post_index=False"):
        PartitionRouter(ClusterTracker({}, POLICY, CLUSTER_DISTANCE), 0, 1)
    assert partition_of("c-1", 1) == 0
