"""What the per-cluster stage must honour of analysts' decisions: dismissed clusters and negative hashes.

A dismissal says "this picture is not a fake". Its cluster raises no further alert (by cluster id: the
same stream, replayed, yields the same ids), and a picture near one of its hashes (the same nearness
that makes visual clusters: pHash within the cluster distance, or PDQ within Meta's distance in any
dihedral variant) is no evidence: its bank match and provenance marks do not count, and the cluster it
joins is not suspected for it, whatever its id in another stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.bank.store import Bank
from monitor.imaging.hash_index import PdqIndex
from monitor.imaging.hashes import usable_pdqs
from monitor.imaging.pdq import MATCH_THRESHOLD, dihedral_bits
from monitor.imaging.phash_index import HashIndex
from monitor.models import ImageHashes

DEFAULT_PHASH_DISTANCE = 10
"""The default cluster distance (settings.cluster_distance): what 'the same picture' means."""


class NegativeIndex:
    """The negative bank's hashes, searchable the way visual clusters are joined."""

    def __init__(
        self,
        hashes: tuple[ImageHashes, ...] = (),
        phash_distance: int = DEFAULT_PHASH_DISTANCE,
        pdq_distance: int = MATCH_THRESHOLD,
    ) -> None:
        self.phash_distance = phash_distance
        self.pdq_distance = pdq_distance
        self._phash = HashIndex()
        pdqs: list[int] = []
        for value in hashes:
            self._phash.add(value.phash)
            for pdq in usable_pdqs(value):
                pdqs.extend(dihedral_bits(pdq))
        self._pdq = PdqIndex(pdqs)
        self._size = len(hashes)

    def __len__(self) -> int:
        return self._size

    def matches(self, hashes: ImageHashes) -> bool:
        """Whether an image is a copy of a dismissed picture."""
        if not self._size:
            return False
        if self._phash.nearest(hashes.phash, self.phash_distance) is not None:
            return True
        return any(f is not None for f in self._pdq.nearest_many(usable_pdqs(hashes), self.pdq_distance))


@dataclass(frozen=True)
class ReviewState:
    """The decisions a tracker honours; empty by default (no bank, or nothing reviewed yet)."""

    dismissed: frozenset[str] = frozenset()
    negatives: NegativeIndex = field(default_factory=NegativeIndex)

    @staticmethod
    def of(bank: Bank, phash_distance: int = DEFAULT_PHASH_DISTANCE) -> ReviewState:
        return ReviewState(
            bank.dismissed, NegativeIndex(tuple(n.hashes for n in bank.negatives), phash_distance)
        )
