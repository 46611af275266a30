"""The metric label sets come from the typed records (dead-letter reasons, suspicion reason kinds, image
error stages), so a new reason cannot reach a metric, the DLQ or an alert without the others knowing it."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from monitor.ingest.events import MalformedEvent, decode_event
from monitor.ingest.loading import ImageLoader
from monitor.models import (
    IMAGE_ERROR_STAGES,
    REASON_KINDS,
    DeadLetterReason,
    ImageRef,
    LoadedImage,
    Post,
    reason_from_json,
)
from monitor.runtime.analysis_loop import count_findings
from monitor.runtime.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]

BAD_EVENTS = {
    "{": DeadLetterReason.INVALID_JSON,
    "[1]": DeadLetterReason.NOT_AN_OBJECT,
    '{"author_id": "a", "created_at": "2023-03-26T16:00:00Z"}': DeadLetterReason.MISSING_POST_ID,
    '{"post_id": [], "author_id": "a", "created_at": "2023-03-26T16:00:00Z"}': DeadLetterReason.BAD_POST_ID,
    '{"post_id": "p", "created_at": "2023-03-26T16:00:00Z"}': DeadLetterReason.MISSING_AUTHOR_ID,
    '{"post_id": "p", "author_id": " ", "created_at": "2023-03-26T16:00:00Z"}': (
        DeadLetterReason.BAD_AUTHOR_ID
    ),
    '{"post_id": "p", "author_id": "a"}': DeadLetterReason.MISSING_CREATED_AT,
    '{"post_id": "p", "author_id": "a", "created_at": "yesterday"}': DeadLetterReason.BAD_CREATED_AT,
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "images": 3}': (
        DeadLetterReason.BAD_IMAGES
    ),
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "reshare_of": true}': (
        DeadLetterReason.BAD_RESHARE_OF
    ),
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "text": 1}': (
        DeadLetterReason.BAD_TEXT
    ),
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "lang": 1}': (
        DeadLetterReason.BAD_LANG
    ),
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "platform": 1}': (
        DeadLetterReason.BAD_PLATFORM
    ),
    '{"post_id": "p", "author_id": "a", "created_at": "2023-03-26T16:00:00Z", "text": "'
    + "x" * 40_000_000
    + '"}': (DeadLetterReason.TOO_LARGE),
}


def labels(exposition: str, metric: str, label: str) -> set[str]:
    return set(re.findall(rf'^{metric}{{{label}="([^"]*)"}}', exposition, flags=re.MULTILINE))


@pytest.mark.parametrize(("raw", "reason"), BAD_EVENTS.items(), ids=[r.value for r in BAD_EVENTS.values()])
def test_each_malformed_event_gets_its_typed_reason(raw: str, reason: DeadLetterReason) -> None:
    with pytest.raises(MalformedEvent) as caught:
        decode_event(raw)
    assert caught.value.reason is reason


def test_every_reason_the_parser_gives_is_a_metric_label_and_nothing_else() -> None:
    exposition = Metrics().exposition().decode()
    assert labels(exposition, "monitor_dead_letters_total", "reason") == {r.value for r in DeadLetterReason}
    # The parser's reasons, a post whose analysis raised, and one that failed alone after its batch failed
    # twice (tests/test_analysis_loop.py): every member is reachable.
    reached = {DeadLetterReason.ANALYSIS_FAILED, DeadLetterReason.PROCESSING_FAILED}
    assert set(BAD_EVENTS.values()) | reached == set(DeadLetterReason)
    assert labels(exposition, "monitor_matches_total", "kind") == set(REASON_KINDS)
    assert labels(exposition, "monitor_image_errors_total", "stage") == set(IMAGE_ERROR_STAGES)


def test_alert_rules_only_name_reasons_that_exist() -> None:
    rules = (REPO / "deploy/prometheus/rules.yml").read_text() + (
        REPO / "deploy/prometheus/rules_test.yml"
    ).read_text()
    named = set(re.findall(r'reason="([^"]+)"', rules))
    assert named <= {r.value for r in DeadLetterReason}


def test_image_errors_are_counted_where_they_happened(tmp_path: Path) -> None:
    from monitor.analysis.analyzer import Analyzer
    from monitor.bank.matcher import BankMatcher
    from monitor.bank.store import Bank

    (tmp_path / "note.jpg").write_text("not a picture")
    loader = ImageLoader(fetcher=None, archive_dir=tmp_path)
    post = Post(
        "p",
        "a",
        0.0,
        images=(ImageRef("path", "missing.jpg"), ImageRef("data", "%%%"), ImageRef("path", "note.jpg")),
    )
    loaded: list[LoadedImage] = asyncio.run(loader.load(post))
    analyzed = Analyzer(BankMatcher(Bank(), 10), None).analyze([post], [loaded])
    assert [image.error_stage for image in analyzed[0].images] == ["fetch", "fetch", "decode"]
    metrics = Metrics()
    count_findings(metrics, analyzed)
    text = metrics.exposition().decode()
    assert 'monitor_image_errors_total{stage="fetch"} 2.0' in text
    assert 'monitor_image_errors_total{stage="decode"} 1.0' in text


def test_an_unknown_reason_kind_survives_a_round_trip() -> None:
    odd = {"kind": "something-new", "detail": {"a": 1}}
    assert reason_from_json(odd).to_json() == odd
    assert json.loads(json.dumps(reason_from_json(odd).to_json())) == odd
