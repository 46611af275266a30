"""The Slack request URL of the review buttons (`monitor review-server`, issue 16), through real HTTP: only
signed, fresh, first-time, bounded requests from listed reviewers decide; the answer comes before the
decision's work; the original message is updated to show who decided what."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from monitor.review.desk import ReviewDesk, read_alerts
from monitor.review.server import ReviewServer
from monitor.review.slack import sign
from monitor.settings import load_settings
from tests.support.slack_receiver import SlackReceiver, slack_receiver
from tests.test_review import SAMPLE, replay

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REVIEWER = "U0REVIEWER"


@pytest.fixture(scope="module")
def alerts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's alerts from one embedded replay (with a bank copy nobody decides on)."""
    folder = tmp_path_factory.mktemp("replayed")
    shutil.copytree(SAMPLE / "bank", folder / "bank")
    replay(folder / "bank", folder / "alerts.jsonl")
    return folder / "alerts.jsonl"


def alert_id(alerts_file: Path, kind: str) -> str:
    return next(a.alert_id for a in read_alerts(alerts_file).values() if a.reasons[0].kind == kind)


def make_server(tmp_path: Path, alerts_file: Path, **desk_options: Any) -> ReviewServer:
    bank = tmp_path / "bank"
    shutil.copytree(SAMPLE / "bank", bank)
    settings = load_settings(
        {
            "slack_signing_secret": SECRET,
            "review_allowed": f"{REVIEWER}, U0SECOND",
            "review_public_url": "https://monitor.example/slack/actions",
        },
        environ={},
    )
    return ReviewServer(ReviewDesk(settings, bank, alerts_file, **desk_options), port=0, host="127.0.0.1")


@pytest.fixture()
def receiver() -> Iterator[SlackReceiver]:
    with slack_receiver() as found:
        yield found


def press_body(target: str, verdict: str, response_url: str, user: str = REVIEWER) -> bytes:
    """A block_actions payload as Slack sends it when a review button is pressed."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "team_id": "T0TEAM"},
        "team": {"id": "T0TEAM"},
        "channel": {"id": "C0ALERTS"},
        "response_url": response_url,
        "message": {
            "text": f"Alert {target}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Level 1 alert"}},
                {"type": "actions", "block_id": "review", "elements": []},
            ],
        },
        "actions": [{"action_id": f"review:{verdict}:{target}", "value": target, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def post(server: ReviewServer, body: bytes, timestamp: int | None = None, secret: str = SECRET) -> int:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(secret, stamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return httpx.post(server.url, content=body, headers=headers, timeout=10).status_code


def settle(server: ReviewServer) -> None:
    for future in list(server.pending):
        future.result(timeout=300)


def decisions(server: ReviewServer) -> list[dict[str, Any]]:
    log = server.desk.bank / "reviews.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_signed_press_by_a_reviewer_decides_and_updates_the_message(
    tmp_path: Path, alerts_file: Path, receiver: SlackReceiver
) -> None:
    server = make_server(tmp_path, alerts_file).start()
    try:
        target = alert_id(alerts_file, "provenance")
        assert post(server, press_body(target, "confirm", receiver.url)) == 200
        settle(server)
        [event] = decisions(server)
        assert (event["alert_id"], event["decision"], event["via"]) == (target, "confirm", "slack")
        assert event["by"] == f"slack:{REVIEWER} (alice)"
        [update] = receiver.requests
        assert update["replace_original"] is True
        assert [b.get("block_id") for b in update["blocks"]].count("review") == 0, "the buttons are gone"
        assert f"*Confirmed fake* by <@{REVIEWER}> at <!date^" in update["blocks"][-1]["elements"][0]["text"]

        assert post(server, press_body(target, "dismiss", receiver.url, user="U0SECOND")) == 200
        settle(server)
        assert len(decisions(server)) == 1, "a second reviewer changes nothing"
        assert receiver.requests[-1]["blocks"][-1]["elements"][0]["text"].startswith(
            f"Already decided. *Confirmed fake* by <@{REVIEWER}>"
        ), "and sees the first decision"
        metrics = httpx.get(server.url.replace("/slack/actions", "/metrics"), timeout=10).text
        assert 'monitor_reviews_total{decision="confirm"} 1.0' in metrics
        assert 'monitor_reviews_total{decision="dismiss"} 0.0' in metrics
    finally:
        server.close()


@pytest.mark.parametrize(
    "forgery",
    ["wrong secret", "no signature", "expired", "from the future", "body changed", "replayed"],
)
def test_forged_expired_and_replayed_requests_are_refused_and_decide_nothing(
    tmp_path: Path, alerts_file: Path, receiver: SlackReceiver, forgery: str
) -> None:
    server = make_server(tmp_path, alerts_file).start()
    try:
        body = press_body(alert_id(alerts_file, "provenance"), "dismiss", receiver.url)
        now = int(time.time())
        headers = {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign(SECRET, str(now), body)}
        if forgery == "wrong secret":
            status = post(server, body, secret="not-the-secret")
        elif forgery == "no signature":
            status = httpx.post(server.url, content=body, timeout=10).status_code
        elif forgery == "expired":
            status = post(server, body, timestamp=now - 6 * 60)
        elif forgery == "from the future":
            status = post(server, body, timestamp=now + 6 * 60)
        elif forgery == "body changed":
            forged = body.replace(b"dismiss", b"confirm")
            status = httpx.post(server.url, content=forged, headers=headers, timeout=10).status_code
        else:
            assert httpx.post(server.url, content=body, headers=headers, timeout=10).status_code == 200
            settle(server)
            status = httpx.post(server.url, content=body, headers=headers, timeout=10).status_code
            settle(server)
            assert len(decisions(server)) == 1 and len(receiver.requests) == 1
            assert status == 401
            return
        settle(server)
        assert status == 401
        assert decisions(server) == [] and receiver.requests == []
    finally:
        server.close()


def test_an_oversized_body_is_refused_unread(tmp_path: Path, alerts_file: Path) -> None:
    server = make_server(tmp_path, alerts_file).start()
    try:
        parts = urlsplit(server.url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        connection.putrequest("POST", parts.path)
        connection.putheader("Content-Length", str(50_000_000))
        connection.putheader("X-Slack-Request-Timestamp", str(int(time.time())))
        connection.putheader("X-Slack-Signature", "v0=00")
        connection.endheaders()  # the 50 MB never come: the answer must not wait for them
        assert connection.getresponse().status == 413
        assert decisions(server) == []
    finally:
        server.close()


def test_someone_not_listed_is_told_and_decides_nothing(
    tmp_path: Path, alerts_file: Path, receiver: SlackReceiver
) -> None:
    server = make_server(tmp_path, alerts_file).start()
    try:
        body = press_body(alert_id(alerts_file, "provenance"), "dismiss", receiver.url, user="U0STRANGER")
        assert post(server, body) == 200
        settle(server)
        assert decisions(server) == []
        [answer] = receiver.requests
        assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
        assert "Only listed reviewers" in answer["text"]
    finally:
        server.close()


def test_the_answer_does_not_wait_for_the_decision(
    tmp_path: Path, alerts_file: Path, receiver: SlackReceiver
) -> None:
    release = threading.Event()

    def slow_matcher(bank: Path, captions: Sequence[str]) -> list[str | None]:
        release.wait(timeout=300)  # a dismissal loading the caption models
        return ["trump-arrest" if "arrested" in c else None for c in captions]

    server = make_server(tmp_path, alerts_file, caption_matcher=slow_matcher).start()
    try:
        target = alert_id(alerts_file, "narrative")
        assert post(server, press_body(target, "dismiss", receiver.url)) == 200
        assert decisions(server) == [] and receiver.requests == [], "answered while the decision is under way"
        release.set()
        settle(server)
        assert [e["decision"] for e in decisions(server)] == ["dismiss"]
        assert "*Not a fake* by" in receiver.requests[0]["blocks"][-1]["elements"][0]["text"]
        negative = (server.desk.bank / "narratives-negative.jsonl").read_text()
        assert "Trump has been arrested in Manhattan this morning" in negative
    finally:
        release.set()
        server.close()
