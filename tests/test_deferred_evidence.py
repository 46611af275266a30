"""Deferred evidence (monitor/analysis/deferred.py): the in-process pipeline raises the very alerts of the
eager one, while the local-feature stage and the caption models run only for posts of clusters shared
K times or more (`deferred_live_shares`).

The streams: the bundled sample (`monitor demo`'s archive and bank), and a generated one on the sample's
bank plus two generated pictures whose edited copies (a meme in a post, a crop) only the local-feature
stage finds; such a copy founds a cluster and is reshared later, so the founder's deferred match must be
computed for the alert to name the banked picture. A caption on a banked narrative rides on a founding
upload only. Over five hours with two hours' retention the tracker expires state in between.

A cluster is live from `deferred_live_shares` (K) shares: the shared stream (threshold 6) alerts on reasons
that several posts held below K showed, for K = 2, the default and the threshold; generated records (no
models) check the same against the eager tracker with reasons past the cap, ties, dismissed pictures,
out-of-order reshares, redeliveries, expiry and a tiny budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.analysis.deferred import DEFAULT_BUDGET_BYTES, DeferredCounts
from monitor.bank.store import Bank, add_image_bytes, load_bank
from monitor.ingest.archive import read_archive
from monitor.models import (
    AnalyzedPost,
    BankMatch,
    ImageAnalysis,
    ImageHashes,
    LoadedImage,
    NarrativeMatch,
    Post,
)
from monitor.narratives.matcher import Encoder, NarrativeMatcher
from monitor.pipeline import Pipeline, make_encoder, virality_policy
from monitor.review.state import NegativeIndex, ReviewState
from monitor.settings import Settings
from monitor.tracking.tracker import MAX_REASONS, ClusterTracker
from tests.support.synthetic import inline_event, reshare_event
from tests.support.viral_edits import apply_edit, jpeg
from tests.test_matching_edits import generated_photo

SAMPLE = Path(__file__).resolve().parents[1] / "monitor" / "sample"
T0 = 1_700_000_000.0
ON_TOPIC = "Donald Trump arrested by police in Manhattan"


def generated_events() -> Iterator[dict[str, Any]]:
    meme = apply_edit("meme-in-post", generated_photo(11), 11)
    crop = apply_edit("crop", generated_photo(12), 12)
    yield inline_event("meme-founder", T0, meme, "so true")
    yield inline_event("crop-founder", T0 + 5, crop, "nice one")
    yield inline_event("caption-founder", T0 + 8, jpeg(generated_photo(200)), ON_TOPIC)
    for k in range(8):  # uploads never seen again, one with an on-topic caption
        yield inline_event(
            f"single-{k}", T0 + 10 + k, jpeg(generated_photo(300 + k)), ON_TOPIC if k == 3 else "hi"
        )
    for k in range(4):
        yield reshare_event(f"meme-reshare-{k}", T0 + 600 + k, "meme-founder")
        yield reshare_event(f"caption-reshare-{k}", T0 + 700 + k, "caption-founder", "wow")
    yield inline_event("crop-again", T0 + 800, crop, "again")  # the same file: one more upload
    yield reshare_event("crop-reshare", T0 + 801, "crop-again")
    # hours later, after the singles' clusters expired (the meme's alerted: it is kept), more uploads
    later = T0 + 5 * 3600
    for k in range(3):
        yield inline_event(f"meme-late-{k}", later + k, meme, "still true")
    yield inline_event("late-single", later + 10, jpeg(generated_photo(400)), ON_TOPIC)


def write_stream(folder: Path, events: Iterable[dict[str, Any]]) -> tuple[Path, Path]:
    """(the archive, the bank) in `folder`: the events as an archive, and the sample's bank with the two
    banked originals added."""
    shutil.copytree(SAMPLE / "bank", folder / "bank")
    for seed in (11, 12):
        original = jpeg(generated_photo(seed), 92)
        add_image_bytes(folder / "bank", f"edited-{seed}", [(f"original-{seed}.jpg", ".jpg", original)])
    archive = folder / "archive.jsonl"
    archive.write_text("".join(json.dumps(event) + "\n" for event in events))
    return archive, folder / "bank"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the archive, the bank): the sample's bank with the two banked originals added."""
    return write_stream(tmp_path_factory.mktemp("deferred"), generated_events())


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return make_encoder(Settings())


def generated_settings(bank: Path, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "bank": bank,
        "threshold": 3,
        "window_seconds": 3600,
        "state_retention_seconds": 7200,
        "caption_batch": 4,
        **changes,
    }
    return Settings(**fields)


def sample_settings(**changes: Any) -> Settings:
    manifest = json.loads((SAMPLE / "manifest.json").read_text())
    fields: dict[str, Any] = {
        "bank": SAMPLE / "bank",
        "threshold": manifest["threshold"],
        "window_seconds": manifest["window_seconds"],
        **changes,
    }
    return Settings(**fields)


class Run:
    """A pipeline's run over an archive: every alert's JSON in order, what deferral did, stage calls."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.stages: Counter[str] = Counter()
        self.counts = DeferredCounts()
        self.held = 0
        self.deferring = False


def replay(
    archive: Path,
    settings: Settings,
    encoder: Encoder | None,
    processes: int = 0,
    one_by_one: bool = False,
) -> Run:
    run = Run()

    def observe(stage: str, seconds: float) -> None:
        run.stages[stage] += 1

    assert settings.bank is not None
    bank = load_bank(settings.bank)

    async def go() -> None:
        pipeline = Pipeline(
            settings,
            bank,
            encoder=encoder,
            archive_dir=archive.parent,
            observe=observe,
            processes=processes,
        )
        posts = [entry.post for entry in read_archive(archive).entries]
        size = settings.caption_batch
        batches = [posts[at : at + size] for at in range(0, len(posts), size)]
        try:
            if one_by_one:
                for batch in batches:
                    run.alerts.extend(alert.to_json() for alert in await pipeline.process(batch))
            else:
                async for done in pipeline.stream(batches):
                    assert not done.failed
                    run.alerts.extend(alert.to_json() for alert in done.alerts)
        finally:
            await pipeline.aclose()
        run.counts, run.held, run.deferring = pipeline.deferred, len(pipeline.held), pipeline.deferring

    asyncio.run(go())
    return run


def reasons(run: Run, cluster_of: str) -> list[dict[str, Any]]:
    """The reasons of the alerts whose sample posts include `cluster_of`."""
    return [r for alert in run.alerts if cluster_of in alert["sample_posts"] for r in alert["reasons"]]


@pytest.fixture(scope="module")
def eager_generated(generated: tuple[Path, Path], encoder: Encoder) -> Run:
    archive, bank = generated
    return replay(archive, generated_settings(bank, defer_evidence=False), encoder)


def test_generated_stream_alerts_equal_the_eager_pipeline_and_name_the_founders_evidence(
    generated: tuple[Path, Path], encoder: Encoder, eager_generated: Run
) -> None:
    archive, bank = generated
    deferred = replay(archive, generated_settings(bank), encoder)
    assert deferred.deferring and not eager_generated.deferring
    assert deferred.alerts == eager_generated.alerts
    # what the alerts must show, found only in the founders' deferred evidence
    local = [r for r in reasons(deferred, "meme-founder") if r.get("hash") == "local"]
    assert [r["bank_cluster"] for r in local] == ["edited-11"]
    assert {r["bank_cluster"] for r in reasons(deferred, "crop-again") if r["kind"] == "bank_match"} == {
        "edited-12"
    }
    assert [r["narrative_id"] for r in reasons(deferred, "caption-founder") if r["kind"] == "narrative"] == [
        "trump-arrest"
    ]
    # the singles' clusters expired before the late posts: their held posts were let go
    assert deferred.counts.dropped == 8, deferred.counts
    # the singletons' evidence was never computed; the founders' was
    assert deferred.counts.resolved >= 4
    assert deferred.counts.deferred - deferred.counts.resolved >= 9
    assert deferred.counts.for_budget == 0


def test_one_batch_at_a_time_gives_the_same_alerts(
    generated: tuple[Path, Path], encoder: Encoder, eager_generated: Run
) -> None:
    archive, bank = generated
    assert (
        replay(archive, generated_settings(bank), encoder, one_by_one=True).alerts == eager_generated.alerts
    )


def test_the_local_stage_and_the_caption_models_are_skipped_for_singletons(
    generated: tuple[Path, Path], encoder: Encoder, eager_generated: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, bank = generated
    captions: list[int] = []
    real = NarrativeMatcher.match_many

    def counting(self: NarrativeMatcher, texts: list[str]) -> Any:
        captions.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(NarrativeMatcher, "match_many", counting)
    eager = replay(archive, generated_settings(bank, defer_evidence=False), encoder)
    eager_captions = sum(captions)
    captions.clear()
    deferred = replay(archive, generated_settings(bank), encoder)
    assert deferred.alerts == eager.alerts
    # the 9 uploads never seen again (8 singles and the late one): their pictures are not looked at closely,
    # their captions not embedded
    assert deferred.stages["local"] < eager.stages["local"]
    assert sum(captions) <= eager_captions - 9
    assert deferred.stages["decode"] >= eager.stages["decode"]  # round 2 decodes the founders again


def test_a_tiny_byte_budget_resolves_held_posts_at_once_and_changes_no_alert(
    generated: tuple[Path, Path], encoder: Encoder, eager_generated: Run
) -> None:
    archive, bank = generated
    run = replay(archive, generated_settings(bank, deferred_budget_bytes=1), encoder)
    assert run.alerts == eager_generated.alerts
    assert run.held == 0
    assert run.counts.for_budget >= 9
    assert run.counts.resolved == run.counts.deferred


def test_threshold_one_defers_nothing(generated: tuple[Path, Path], encoder: Encoder) -> None:
    archive, bank = generated
    eager = replay(archive, generated_settings(bank, threshold=1, defer_evidence=False), encoder)
    run = replay(archive, generated_settings(bank, threshold=1), encoder)
    assert not run.deferring
    assert run.counts.deferred == 0
    assert run.stages == eager.stages
    assert run.alerts == eager.alerts and run.alerts


def test_sample_alerts_equal_the_eager_pipeline(encoder: Encoder) -> None:
    archive = SAMPLE / "archive.jsonl"
    for threshold in (None, 2):
        changes = {} if threshold is None else {"threshold": threshold}
        eager = replay(archive, sample_settings(defer_evidence=False, **changes), encoder)
        deferred = replay(archive, sample_settings(**changes), encoder)
        assert deferred.alerts == eager.alerts
        assert eager.alerts
        assert deferred.counts.deferred > deferred.counts.resolved > 0


def test_with_two_analysis_processes_the_alerts_equal_the_eager_serial_pipeline(
    generated: tuple[Path, Path], encoder: Encoder, eager_generated: Run
) -> None:
    archive, bank = generated
    pooled = replay(archive, generated_settings(bank), None, processes=2)
    assert pooled.deferring
    assert pooled.alerts == eager_generated.alerts
    assert pooled.counts.deferred > pooled.counts.resolved > 0
    sample = SAMPLE / "archive.jsonl"
    eager = replay(sample, sample_settings(threshold=2, defer_evidence=False), encoder)
    assert replay(sample, sample_settings(threshold=2), None, processes=2).alerts == eager.alerts


# Live at K shares (deferred_live_shares): clusters whose reasons come from several held posts.

SHARED_THRESHOLD = 6


def two_images(post_id: str, at: float, first: bytes, second: bytes, text: str) -> dict[str, Any]:
    event = inline_event(post_id, at, first, text)
    event["images"].append(inline_event(post_id, at, second)["images"][0])
    return event


def shared_events() -> Iterator[dict[str, Any]]:
    """Threshold 6. The meme (a local-only copy of a banked picture) is uploaded four times under
    different captions, one on-topic, one of its reshares comes before its post; a post carries the crop
    (local-only too) and a plain photo, on-topic: the photo's re-uploads make its cluster alert first, the
    crop's reshares later. A trio and a pair of uploads stay below the threshold; singles expire."""
    meme = apply_edit("meme-in-post", generated_photo(11), 11)
    crop = apply_edit("crop", generated_photo(12), 12)
    photo = jpeg(generated_photo(500))
    yield inline_event("m-0", T0, meme, "so true")
    yield two_images("pair", T0 + 5, crop, photo, ON_TOPIC)
    for k in range(6):
        yield inline_event(f"single-{k}", T0 + 10 + k, jpeg(generated_photo(300 + k)), "hi")
    yield inline_event("m-1", T0 + 100, meme, ON_TOPIC)
    for k in range(3):
        yield inline_event(f"trio-{k}", T0 + 110 + k, jpeg(generated_photo(600)), ON_TOPIC)
    yield inline_event("m-2", T0 + 200, meme, "again")
    yield reshare_event("early", T0 + 250, "m-3", "first!")  # its post comes later (out-of-order archive)
    for k in range(2):
        yield inline_event(f"duo-{k}", T0 + 255 + k, jpeg(generated_photo(700)), "twice")
    yield inline_event("m-3", T0 + 240, meme, "lol")
    for k in range(5):
        yield inline_event(f"photo-{k}", T0 + 300 + k, photo, "same photo")
    for k in range(2):
        yield reshare_event(f"m-reshare-{k}", T0 + 600 + k, "m-0", "wow")
    yield inline_event("crop-again", T0 + 800, crop, "again")
    for k in range(4):
        yield reshare_event(f"crop-reshare-{k}", T0 + 801 + k, "crop-again")
    later = T0 + 5 * 3600
    for k in range(3):
        yield inline_event(f"m-late-{k}", later + k, meme, "still true")
    yield inline_event("late-single", later + 10, jpeg(generated_photo(400)), ON_TOPIC)


@pytest.fixture(scope="module")
def shared(generated: tuple[Path, Path]) -> Path:
    archive = generated[0].parent / "shared.jsonl"
    archive.write_text("".join(json.dumps(event) + "\n" for event in shared_events()))
    return archive


@pytest.fixture(scope="module")
def eager_shared(shared: Path, generated: tuple[Path, Path], encoder: Encoder) -> Run:
    settings = generated_settings(generated[1], threshold=SHARED_THRESHOLD, defer_evidence=False)
    return replay(shared, settings, encoder)


def test_the_shared_stream_alerts_on_reasons_of_several_posts(eager_shared: Run) -> None:
    """What makes the stream a test: each alert's reasons come from posts counted below the threshold."""
    assert len(eager_shared.alerts) == 3
    meme = reasons(eager_shared, "m-0")
    assert {r.get("bank_cluster") for r in meme if r.get("hash") == "local"} == {"edited-11"}
    assert [r["narrative_id"] for r in meme if r["kind"] == "narrative"] == ["trump-arrest"]  # m-1's
    photo = reasons(eager_shared, "photo-0")
    assert [r["kind"] for r in photo] == ["narrative"]  # the pair's caption, counted for both pictures
    crop = reasons(eager_shared, "crop-again")
    assert {r.get("bank_cluster") for r in crop if r["kind"] == "bank_match"} == {"edited-12"}
    assert any(r["kind"] == "narrative" for r in crop)


@pytest.mark.parametrize("live_shares", [2, 0, SHARED_THRESHOLD])
@pytest.mark.parametrize("processes", [0, 2])
def test_live_at_k_shares_gives_the_eager_alerts(
    shared: Path,
    generated: tuple[Path, Path],
    encoder: Encoder,
    eager_shared: Run,
    live_shares: int,
    processes: int,
) -> None:
    settings = generated_settings(generated[1], threshold=SHARED_THRESHOLD, deferred_live_shares=live_shares)
    run = replay(shared, settings, None if processes else encoder, processes=processes)
    assert run.deferring
    assert run.alerts == eager_shared.alerts
    assert run.counts.dropped >= 6  # the singles, let go when their clusters expired


def test_a_larger_k_resolves_fewer_posts(
    shared: Path, generated: tuple[Path, Path], encoder: Encoder
) -> None:
    bank = generated[1]
    resolved = []
    for live_shares in (2, 0, SHARED_THRESHOLD):  # 0: the default, 3 for a threshold of 6
        settings = generated_settings(bank, threshold=SHARED_THRESHOLD, deferred_live_shares=live_shares)
        run = replay(shared, settings, encoder)
        resolved.append(run.counts.resolved)
        assert run.counts.for_budget == 0
    two, default, at_threshold = resolved
    assert two - default >= 2  # the duo's uploads
    assert default - at_threshold >= 3  # the trio's


@pytest.mark.parametrize("live_shares", [0, SHARED_THRESHOLD])
def test_live_at_k_shares_with_a_tiny_budget_or_one_batch_at_a_time(
    shared: Path, generated: tuple[Path, Path], encoder: Encoder, eager_shared: Run, live_shares: int
) -> None:
    bank = generated[1]
    tiny = generated_settings(
        bank, threshold=SHARED_THRESHOLD, deferred_live_shares=live_shares, deferred_budget_bytes=1
    )
    run = replay(shared, tiny, encoder)
    assert run.alerts == eager_shared.alerts
    assert run.held == 0 and run.counts.resolved == run.counts.deferred
    settings = generated_settings(bank, threshold=SHARED_THRESHOLD, deferred_live_shares=live_shares)
    assert replay(shared, settings, encoder, one_by_one=True).alerts == eager_shared.alerts


# The same, on generated records: many reasons per cluster (past the cap), ties between posts, negatives.


class Recorded:
    """Round 2 as a lookup: each post's full record, as the eager analysis would have made it."""

    depth = 1

    def __init__(self, full: dict[str, AnalyzedPost]) -> None:
        self.full = full

    async def resolve(
        self, analyzed: list[AnalyzedPost], posts: list[Post], images: list[list[LoadedImage]]
    ) -> list[AnalyzedPost]:
        return [self.full[one.post_id] for one in analyzed]

    def alone(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        """Nothing to stop."""


def recorded_stream(seed: int) -> list[tuple[Post, AnalyzedPost, AnalyzedPost]]:
    """(post, round-1 record, full record) in stream order: uploads of 1-2 of 12 pictures (the first ones
    far more often), reshares (some before their post), redeliveries; each picture copy with provenance
    marks from 30 (so a cluster's reasons pass the cap of 20), a bank match by global hashes or by local
    features (deferred) with tied distances, captions on narratives with tied scores (deferred)."""
    rng = random.Random(seed)
    pictures = [rng.getrandbits(64) for _ in range(12)]
    stream: list[tuple[Post, AnalyzedPost, AnalyzedPost]] = []
    uploads: list[str] = []
    at = T0
    for n in range(160):
        at += rng.choice([5, 30, 120, 900]) if n % 40 else 3 * 3600  # hours apart now and then: expiry
        roll = rng.random()
        if stream and roll < 0.08:
            post, first, full = rng.choice(stream)  # a redelivery
            stream.append((post, first, full))
            continue
        post_id = f"p{n}"
        if uploads and roll < 0.4:
            parent = rng.choice(uploads) if roll > 0.12 else f"p{n + rng.randint(1, 6)}"
            narrative = (
                NarrativeMatch(rng.choice("ab"), rng.choice([0.8, 0.9])) if rng.random() < 0.4 else None
            )
            post = Post(post_id, "u", at, text="caption", reshare_of=parent)
            full = AnalyzedPost(post_id, at, parent, (), narrative)
            first = dataclasses.replace(full, narrative=None, narrative_deferred=True)
            stream.append((post, first, full))
            continue
        images: list[ImageAnalysis] = []
        for _ in range(rng.choice([1, 1, 2])):
            picture = pictures[min(int(rng.expovariate(0.35)), 11)]
            marks = tuple(sorted({f"mark-{rng.randrange(30):02d}" for _ in range(rng.randrange(14))}))
            match = None
            if rng.random() < 0.5:
                match = BankMatch(
                    rng.choice("xyz"), rng.choice(["phash", "pdq", "local"]), rng.choice([3, 4])
                )
            images.append(ImageAnalysis(ImageHashes(picture), match, marks, url=f"https://img/{n}"))
        narrative = NarrativeMatch(rng.choice("ab"), rng.choice([0.8, 0.9])) if rng.random() < 0.4 else None
        post = Post(post_id, "u", at, text="caption")
        full = AnalyzedPost(post_id, at, None, tuple(images), narrative)
        first = AnalyzedPost(
            post_id,
            at,
            None,
            tuple(
                dataclasses.replace(image, bank_match=None, local_deferred=True)
                if image.bank_match is not None and image.bank_match.hash_kind == "local"
                else image
                for image in images
            ),
            None,
            narrative_deferred=True,
        )
        stream.append((post, first, full))
        uploads.append(post_id)
    return stream


def review_of(seed: int) -> ReviewState:
    """One of the generated pictures an analyst dismissed (its copies are no evidence)."""
    picture = random.Random(seed).getrandbits(64)  # the stream's first picture
    return ReviewState(frozenset(), NegativeIndex((ImageHashes(picture),)))


@pytest.mark.parametrize("seed", range(6))
def test_generated_records_alert_as_the_eager_tracker_for_every_k(seed: int) -> None:
    stream = recorded_stream(seed)
    threshold = 5
    settings = Settings(threshold=threshold, window_seconds=3600, state_retention_seconds=7200)
    eager = ClusterTracker({}, virality_policy(settings), settings.cluster_distance, review=review_of(seed))
    expected = [alert.to_json() for _, _, full in stream for alert in eager.observe(full)]
    assert expected  # the stream alerts
    assert any(len(alert["reasons"]) == MAX_REASONS for alert in expected)
    resolved = []
    for live_shares in (2, 3, threshold):
        for budget in (DEFAULT_BUDGET_BYTES, 25):
            pipeline = Pipeline(
                settings.replace(deferred_live_shares=live_shares, deferred_budget_bytes=budget), Bank()
            )
            pipeline.analysis = Recorded({full.post_id: full for _, _, full in stream})  # type: ignore[assignment]
            pipeline.tracker.review = review_of(seed)
            assert pipeline.deferring
            alerts = []
            for at in range(0, len(stream), 7):
                batch = stream[at : at + 7]
                images = [
                    [LoadedImage(b"0123456789", image.url) for image in first.images] for _, first, _ in batch
                ]
                tracked = asyncio.run(
                    pipeline._track_batch(
                        [post for post, _, _ in batch], [first for _, first, _ in batch], images
                    )
                )
                alerts.extend(alert.to_json() for alert in tracked)
            assert alerts == expected, (live_shares, budget)
            if budget == DEFAULT_BUDGET_BYTES:
                resolved.append(pipeline.deferred.resolved)
    assert resolved[0] >= resolved[1] >= resolved[2]
