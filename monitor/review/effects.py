"""The effects of a decision on a bank directory: the same whichever door the decision came through.

- confirm: the cluster's pictures join the bank as a labelled cluster (named after the bank cluster it
  matched, else after the visual cluster), with their files when the archive has them, else their hashes;
  workers pick them up on their next bank reload, and later copies match on the bank path.
- dismiss: the cluster is listed as dismissed (it raises no further alert), its hashes go to the negative
  bank (copies are no evidence), and each sample caption that the bank's matcher gives to one of the
  alert's narratives becomes a negative example of that narrative, so it stops matching.

Idempotent: under a lock on the bank directory, an earlier decision on the same cluster is returned
instead of acting again; the effects are written before the audit event, and each of them skips what is
already there, so a decision interrupted half-way is completed by taking it again.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitor.bank.store import (
    add_hashes,
    add_image_bytes,
    add_negative_images,
    add_negative_narrative,
    append_review,
    load_bank,
    read_reviews,
)
from monitor.ingest.decode import DecodeLimits
from monitor.models import Alert, NarrativeReason
from monitor.review.decisions import Decision, first_decisions
from monitor.review.evidence import ClusterEvidence

LOCK_FILE = ".reviews.lock"

CaptionMatcher = Callable[[Path, Sequence[str]], list[str | None]]
"""(bank directory, captions) -> the narrative id each caption matches now, or None."""


@dataclass(frozen=True)
class Outcome:
    """The decision that counts for the alert's cluster, and what this call changed (nothing if it was
    decided before)."""

    decision: Decision
    applied: bool
    bank_cluster: str | None = None
    pictures_added: int = 0
    hashes_added: int = 0
    negatives_added: int = 0
    negative_captions: tuple[tuple[str, str], ...] = field(default=())

    def line(self) -> str:
        if not self.applied:
            return f"already decided: {self.decision.line()}"
        if self.decision.decision == "confirm":
            effect = (
                f"bank cluster {self.bank_cluster}: {self.pictures_added} picture(s), "
                f"{self.hashes_added} hash(es) without picture added"
            )
        else:
            captions = ", ".join(f"{n}: {t!r}" for n, t in self.negative_captions) or "none"
            effect = f"{self.negatives_added} hash(es) in the negative bank; negative captions: {captions}"
        return f"{self.decision.line()}; {effect}"


@contextlib.contextmanager
def bank_lock(directory: Path) -> Iterator[None]:
    """One decision at a time per bank directory (two reviewers pressing at once get one effect)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def decided(directory: Path) -> dict[str, Decision]:
    """Cluster id -> its decision, from the bank directory's audit log (empty for a new bank)."""
    return first_decisions(read_reviews(directory)) if directory.is_dir() else {}


def apply_decision(
    directory: Path,
    alert: Alert,
    decision: Decision,
    evidence: Callable[[], ClusterEvidence],
    caption_matcher: CaptionMatcher,
    limits: DecodeLimits | None = None,
) -> Outcome:
    """Take a decision on an alert against a bank directory (see the module's docstring)."""
    with bank_lock(directory):
        earlier = decided(directory).get(alert.cluster_id)
        if earlier is not None:
            return Outcome(earlier, applied=False)
        found = evidence()
        if decision.decision == "confirm":
            outcome = _confirm(directory, alert, decision, found, limits)
        else:
            outcome = _dismiss(directory, alert, decision, found, caption_matcher)
        append_review(directory, decision.to_json())
        return outcome


def _confirm(
    directory: Path, alert: Alert, decision: Decision, found: ClusterEvidence, limits: DecodeLimits | None
) -> Outcome:
    cluster = alert.bank_cluster or alert.cluster_id
    label = load_bank(directory).labels.get(cluster) if directory.is_dir() else None
    label = label or decision.reason or f"confirmed by {decision.by} ({alert.alert_id})"
    pictures = add_image_bytes(
        directory, cluster, ((p.name, p.suffix, p.data) for p in found.pictures), label, limits
    )
    pictured = {p.hashes.phash for p in found.pictures}
    hashes = add_hashes(directory, cluster, [h for h in found.hashes if h.phash not in pictured], label)
    return Outcome(decision, True, cluster, len(pictures), len(hashes))


def _dismiss(
    directory: Path, alert: Alert, decision: Decision, found: ClusterEvidence, caption_matcher: CaptionMatcher
) -> Outcome:
    negatives = add_negative_images(directory, alert.cluster_id, alert.alert_id, found.hashes)
    narratives = {r.narrative_id for r in alert.reasons if isinstance(r, NarrativeReason)}
    refuted: list[tuple[str, str]] = []
    if narratives and found.captions:
        matched = caption_matcher(directory, found.captions)
        refuted = [(n, t) for t, n in zip(found.captions, matched, strict=True) if n in narratives]
        for narrative_id in sorted(narratives):
            add_negative_narrative(directory, narrative_id, [t for n, t in refuted if n == narrative_id])
    return Outcome(decision, True, None, negatives_added=negatives, negative_captions=tuple(refuted))
