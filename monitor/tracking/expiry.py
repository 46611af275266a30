"""Which tracker state no longer matters, in event time: what keeps a long-running worker's table bounded.

The tracker's state grows with every post (`s:`, `p:`), every picture never seen before (`rep:`, `cl:`)
and every minute a cluster is shared (`b:`). Counting needs none of it once it lies further back than any
window can reach, so everything older than a horizon (the latest event time minus the retention) goes:

- a post's keys (`s:` seen, `p:` its clusters), so a redelivery older than the retention counts again;
  its share buckets are gone too, so it cannot be counted twice in any window;
- share buckets (`b:`) whose minute ended before the horizon;
- reshares still waiting for a parent that never came (`w:`), entry by entry;
- post index records of partitioned tracking (`i:`, routing.py), by the post's second; merge marks
  (`m:`) are kept: a sighting sent to a merged cluster may come at any time, and merges are rare;
- clusters whose last share is older and that never alerted (`cl:`, `rep:`): a picture seen again after
  that founds a new cluster. Clusters that alerted are kept forever (they are few), so the same picture
  can never raise the same level twice (contract §2).

Pure: it reads (key, value) pairs and returns a plan; the tracker applies it to its store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor.tracking.records import meta_latest_and_level
from monitor.tracking.virality import BUCKET_SECONDS


@dataclass(frozen=True, slots=True)
class ExpiryPlan:
    delete: tuple[str, ...] = ()
    """Keys to remove, `rep:` keys of forgotten clusters excluded (the cluster index removes those)."""
    clusters: frozenset[str] = frozenset()
    """Never-alerted clusters last shared before the horizon."""
    rewrite: dict[str, list[Any]] = field(default_factory=dict)
    """`w:` lists of which only some reshares expired: key -> the entries to keep."""

    def __len__(self) -> int:
        return len(self.delete) + len(self.clusters) + len(self.rewrite)


def _seen_at(value: Any) -> int:
    """`s:` values are the post's second; older states stored 1, which reads as long expired."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def plan_expiry(items: Iterable[tuple[str, Any]], horizon: int) -> ExpiryPlan:
    """What to forget of the state in `items` when nothing before event time `horizon` matters any more."""
    live_posts: set[str] = set()
    post_keys: list[str] = []
    delete: list[str] = []
    clusters: set[str] = set()
    rewrite: dict[str, list[Any]] = {}
    marks: list[str] = []
    for key, value in items:
        kind, _, rest = key.partition(":")
        if kind == "s":
            if _seen_at(value) >= horizon:
                live_posts.add(rest)
            else:
                delete.append(key)
        elif kind == "p":
            post_keys.append(key)
        elif kind == "b":
            minute = int(rest.rsplit(":", 1)[1])
            if (minute + 1) * BUCKET_SECONDS <= horizon:
                delete.append(key)
        elif kind == "w":
            kept = [entry for entry in value or [] if int(entry["t"]) >= horizon]
            if not kept:
                delete.append(key)
            elif len(kept) < len(value):
                rewrite[key] = kept
        elif kind == "cl":
            latest, level = meta_latest_and_level(value)
            if not level and latest < horizon:
                clusters.add(rest)
                delete.append(key)
        elif kind == "x":
            marks.append(key)
        elif kind == "i" and _seen_at(value[0] if isinstance(value, list | tuple) and value else 0) < horizon:
            delete.append(key)
    # A post's clusters go with its seen mark (also an orphan left by an interrupted expiry).
    delete.extend(key for key in post_keys if key[2:] not in live_posts)
    # A cluster's dismissal mark goes with the cluster.
    delete.extend(key for key in marks if key[2:] in clusters)
    return ExpiryPlan(tuple(delete), frozenset(clusters), rewrite)
