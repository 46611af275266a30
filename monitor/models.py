"""Typed, frozen records that flow between the pipeline's stages.

Every record here is plain data: it can be built in a test, serialised to JSON for a Kafka topic or an
archive, and read back without any Faust, Kafka or HTTP code. The JSON shapes of `Post` (input) and
`Alert` (output) are fixed by the product contract; `AnalyzedPost` is the internal record that the
per-post stage hands to the per-cluster stage (topic `sightings`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, get_args

ImageSource = Literal["url", "data", "path"]


class DeadLetterReason(StrEnum):
    """Why an event went to the dead-letter topic: a short, stable phrase (the `reason` field and a metric
    label). Every reason the pipeline can give is here, so the metric's label set is this enum."""

    INVALID_JSON = "invalid json"
    NOT_AN_OBJECT = "not an object"
    MISSING_POST_ID = "missing post_id"
    BAD_POST_ID = "bad post_id"
    MISSING_AUTHOR_ID = "missing author_id"
    BAD_AUTHOR_ID = "bad author_id"
    MISSING_CREATED_AT = "missing created_at"
    BAD_CREATED_AT = "bad created_at"
    BAD_IMAGES = "bad images"
    BAD_RESHARE_OF = "bad reshare_of"
    BAD_TEXT = "bad text"
    BAD_LANG = "bad lang"
    BAD_PLATFORM = "bad platform"
    TOO_LARGE = "too large"
    ANALYSIS_FAILED = "analysis failed"
    PROCESSING_FAILED = "processing failed"
    """Failed alone, after its batch failed twice the same way (monitor/runtime/analysis_loop.py)."""


ImageErrorStage = Literal["fetch", "decode"]
"""Where an image was lost: its bytes could not be had (fetch, base64, archive path), or not decoded."""
IMAGE_ERROR_STAGES: tuple[ImageErrorStage, ...] = get_args(ImageErrorStage)

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
    ignored_images: int = 0
    """Images past the per-post bound (`EventLimits.max_images`): not loaded, only counted."""


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
    error_stage: ImageErrorStage | None = None
    """Set with `error`: whether the bytes could not be loaded or could not be decoded."""
    local_deferred: bool = False
    """The global hashes did not match and the local-feature stage was left for later (deferred evidence,
    monitor/analysis/deferred.py): `bank_match` is not yet known. A deferring worker's sightings carry
    it, with where the post lives in `posts` (monitor/runtime/deferral.py)."""

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
            **({"error_stage": self.error_stage} if self.error_stage else {}),
            **({"local_deferred": True} if self.local_deferred else {}),
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
            error_stage=_error_stage(data.get("error_stage"), data.get("error")),
            local_deferred=bool(data.get("local_deferred", False)),
        )


def _error_stage(value: Any, error: Any) -> ImageErrorStage | None:
    if not error:
        return None
    return "fetch" if value == "fetch" else "decode"


@dataclass(frozen=True, slots=True)
class AnalyzedPost:
    """A post after the per-post stage: everything the per-cluster stage needs, and nothing heavy."""

    post_id: str
    created_at: float
    reshare_of: str | None
    images: tuple[ImageAnalysis, ...] = ()
    narrative: NarrativeMatch | None = None
    narrative_deferred: bool = False
    """The caption was not yet matched (deferred evidence, as `ImageAnalysis.local_deferred`): `narrative`
    is not yet known."""

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
            **({"narrative_deferred": True} if self.narrative_deferred else {}),
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
            narrative_deferred=bool(data.get("narrative_deferred", False)),
        )


@dataclass(frozen=True, slots=True)
class BankMatchReason:
    """Suspicion: an image of the cluster is a copy of a banked fake."""

    kind: ClassVar[str] = "bank_match"
    bank_cluster: str
    hash: str
    distance: int

    @property
    def subject(self) -> str:
        return self.bank_cluster

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bank_cluster": self.bank_cluster,
            "hash": self.hash,
            "distance": self.distance,
        }


@dataclass(frozen=True, slots=True)
class NarrativeReason:
    """Suspicion: a post of the cluster carries a caption of a banked false narrative."""

    kind: ClassVar[str] = "narrative"
    narrative_id: str
    score: float

    @property
    def subject(self) -> str:
        return self.narrative_id

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "narrative_id": self.narrative_id, "score": self.score}


@dataclass(frozen=True, slots=True)
class ProvenanceReason:
    """Suspicion: an image of the cluster carries a generator's provenance mark."""

    kind: ClassVar[str] = "provenance"
    marker: str

    @property
    def subject(self) -> str:
        return self.marker

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "marker": self.marker}


@dataclass(frozen=True, slots=True)
class OtherReason:
    """A reason this version does not know (written by a newer one, or incomplete): kept as it came, so an
    alert read back from the `alerts` topic is still delivered and shows it."""

    kind: str
    data: tuple[tuple[str, Any], ...] = ()

    @property
    def subject(self) -> str:
        return json.dumps(dict(self.data), sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        return {**dict(self.data), "kind": self.kind}


Reason = BankMatchReason | NarrativeReason | ProvenanceReason | OtherReason
"""Why a cluster is suspected (contract §4); alerts carry them as JSON objects with a `kind`."""
REASON_KINDS = tuple(kind.kind for kind in (BankMatchReason, NarrativeReason, ProvenanceReason))
"""Every reason kind, in the order alerts list them (metric labels come from here)."""


def reason_from_json(data: dict[str, Any]) -> Reason:
    """A reason from its JSON object. Never fails: an unknown kind or a malformed known one is an
    `OtherReason` holding what came."""
    kind = data.get("kind")
    try:
        if kind == BankMatchReason.kind:
            return BankMatchReason(str(data["bank_cluster"]), str(data["hash"]), int(data["distance"]))
        if kind == NarrativeReason.kind:
            return NarrativeReason(str(data["narrative_id"]), float(data["score"]))
        if kind == ProvenanceReason.kind:
            return ProvenanceReason(str(data["marker"]))
    except (KeyError, TypeError, ValueError):
        pass
    return OtherReason(str(kind), tuple(sorted((k, v) for k, v in data.items() if k != "kind")))


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
    reasons: tuple[Reason, ...] = field(default=())
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
            "reasons": [r.to_json() for r in self.reasons],
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
            reasons=tuple(reason_from_json(r) for r in value.get("reasons") or ()),
            sample_posts=tuple(value.get("sample_posts") or ()),
            image_url=value.get("image_url"),
        )
