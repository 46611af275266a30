"""Typed, frozen records that flow between the pipeline's stages.

Every record here is plain data: it can be built in a test, serialised to JSON for a Kafka topic or an
archive, and read back without any Faust, Kafka or HTTP code. The JSON shapes of `Post` (input) and
`Alert` (output) are fixed by the product contract; `AnalyzedPost` is the internal record that the
per-post stage hands to the per-cluster stage (topic `sightings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

ImageSource = Literal["url", "data", "path"]

StageObserver = Callable[[str, float], None]
"""Called with (stage name, seconds) after each stage of the per-post work; the worker feeds its metrics."""


def parse_alert_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def format_time(epoch_seconds: float) -> str:
    """RFC 3339 in UTC with a `Z`, at second precision, as alerts carry it."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where a post's image comes from: exactly one of url, base64 data, or a path inside an archive."""

    source: ImageSource
    value: str


@dataclass(frozen=True, slots=True)
class Post:
    """A social-post event (contract §1). `created_at` is the event time, in epoch seconds (UTC)."""

    post_id: str
    author_id: str
    created_at: float
    text: str = ""
    lang: str | None = None
    platform: str | None = None
    images: tuple[ImageRef, ...] = ()
    reshare_of: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """The bytes of one image of a post, or why they could not be had."""

    data: bytes | None
    url: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """Perceptual hashes of one decoded image, as integers.

    `phash` is 64-bit (bit order as imagehash prints it); `pdq` is Meta's 256-bit PDQ of
    the whole image (hex as ThreatExchange prints it) with its quality (0..100), and `pdq_regions` the
    PDQ hashes of the picture found inside added borders, bands or app chrome (empty when there is none).
    Records written before PDQ existed read back with `pdq=None`.
    """

    phash: int
    pdq: int | None = None
    pdq_quality: int | None = None
    pdq_regions: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phash": f"{self.phash:016x}"}
        if self.pdq is not None:
            out["pdq"] = f"{self.pdq:064x}"
            out["pdq_quality"] = self.pdq_quality
        if self.pdq_regions:
            out["pdq_regions"] = [f"{value:064x}" for value in self.pdq_regions]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageHashes:
        pdq = data.get("pdq")
        quality = data.get("pdq_quality")
        return cls(
            phash=int(data["phash"], 16),
            pdq=int(pdq, 16) if pdq else None,
            pdq_quality=int(quality) if pdq and quality is not None else None,
            pdq_regions=tuple(int(value, 16) for value in data.get("pdq_regions") or ()),
        )


@dataclass(frozen=True, slots=True)
class BankMatch:
    """An image found within the match distance of a banked cluster of known fakes."""

    bank_cluster: str
    hash_kind: str
    distance: int


@dataclass(frozen=True, slots=True)
class NarrativeMatch:
    """A caption recognised as a banked false narrative, with its similarity score."""

    narrative_id: str
    score: float


@dataclass(frozen=True, slots=True)
class ImageAnalysis:
    """What the per-post stage learnt about one image: its hashes, bank match and provenance markers.

    `error` is set (and `hashes` is None) when the image could not be loaded or decoded; the rest of the
    post stays in play.
    """

    hashes: ImageHashes | None
    bank_match: BankMatch | None = None
    provenance: tuple[str, ...] = ()
    url: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "hashes": self.hashes.to_json() if self.hashes else None,
            "bank_match": (
                {
                    "bank_cluster": self.bank_match.bank_cluster,
                    "hash": self.bank_match.hash_kind,
                    "distance": self.bank_match.distance,
                }
                if self.bank_match
                else None
            ),
            "provenance": list(self.provenance),
            "url": self.url,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageAnalysis:
        bm = data.get("bank_match")
        return cls(
            hashes=ImageHashes.from_json(data["hashes"]) if data.get("hashes") else None,
            bank_match=BankMatch(bm["bank_cluster"], bm["hash"], int(bm["distance"])) if bm else None,
            provenance=tuple(data.get("provenance") or ()),
            url=data.get("url"),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class AnalyzedPost:
    """A post after the per-post stage: everything the per-cluster stage needs, and nothing heavy."""

    post_id: str
    created_at: float
    reshare_of: str | None
    images: tuple[ImageAnalysis, ...] = ()
    narrative: NarrativeMatch | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id,
            "created_at": self.created_at,
            "reshare_of": self.reshare_of,
            "images": [i.to_json() for i in self.images],
            "narrative": (
                {"narrative_id": self.narrative.narrative_id, "score": self.narrative.score}
                if self.narrative
                else None
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalyzedPost:
        nm = data.get("narrative")
        return cls(
            post_id=str(data["post_id"]),
            created_at=float(data["created_at"]),
            reshare_of=data.get("reshare_of"),
            images=tuple(ImageAnalysis.from_json(i) for i in data.get("images") or ()),
            narrative=NarrativeMatch(nm["narrative_id"], float(nm["score"])) if nm else None,
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """A suspected cluster that passed a virality level (contract §2)."""

    alert_id: str
    cluster_id: str
    bank_cluster: str | None
    level: int
    shares_in_window: int
    window_seconds: int
    threshold: int
    event_time: float
    first_seen: float
    reasons: tuple[dict[str, Any], ...] = field(default=())
    sample_posts: tuple[str, ...] = ()
    image_url: str | None = None
    """The URL of the cluster's first image that was given by URL: Slack shows it as a thumbnail."""

    def to_json(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "cluster_id": self.cluster_id,
            "bank_cluster": self.bank_cluster,
            "level": self.level,
            "shares_in_window": self.shares_in_window,
            "window_seconds": self.window_seconds,
            "threshold": self.threshold,
            "event_time": format_time(self.event_time),
            "first_seen": format_time(self.first_seen),
            "reasons": [dict(r) for r in self.reasons],
            "sample_posts": list(self.sample_posts),
            **({"image_url": self.image_url} if self.image_url else {}),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Alert:
        return cls(
            alert_id=str(value["alert_id"]),
            cluster_id=str(value["cluster_id"]),
            bank_cluster=value.get("bank_cluster"),
            level=int(value["level"]),
            shares_in_window=int(value["shares_in_window"]),
            window_seconds=int(value["window_seconds"]),
            threshold=int(value["threshold"]),
            event_time=parse_alert_time(value["event_time"]),
            first_seen=parse_alert_time(value["first_seen"]),
            reasons=tuple(value.get("reasons") or ()),
            sample_posts=tuple(value.get("sample_posts") or ()),
            image_url=value.get("image_url"),
        )
