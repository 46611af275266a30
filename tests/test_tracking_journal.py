"""The tracker's per-partition store counts the clusters it holds (the `monitor_clusters_tracked` gauge)."""

from __future__ import annotations

from monitor.review.state import ReviewState
from monitor.runtime.tracking_loop import Journal, PartitionState
from tests.test_tracking_state import SETTINGS, batches, stream


def test_the_count_follows_cluster_records_as_they_are_written_rewritten_and_dropped() -> None:
    journal = Journal({"cl:a": [1], "b:a:0": [], "cl:b": [2], "p:x": "a"})
    assert journal.clusters == 2, "a restored state is counted once, at start"
    journal["cl:c"] = [3]
    journal["cl:c"] = [4]  # the same cluster changed: not a new one
    journal["b:c:1"] = []
    assert journal.clusters == 3
    del journal["cl:a"]
    journal.pop("cl:b")
    journal.pop("cl:missing", None)
    journal.pop("b:c:1")
    assert journal.clusters == 1
    assert journal.clusters == sum(1 for key in journal if key.startswith("cl:"))


def test_a_partition_counts_the_clusters_its_stream_made_and_a_restored_one_the_same() -> None:
    state = PartitionState(SETTINGS, ReviewState())
    committed: list[tuple[bytes, bytes | None]] = []
    for batch in batches(stream(), 16):
        state.observe(batch)
        committed += state.changes()
    assert state.store.clusters == 4, "four pictures, four clusters"
    assert PartitionState.restored(SETTINGS, ReviewState(), committed).store.clusters == 4
