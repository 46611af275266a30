"""`monitor review-server`: the request URL of the Slack app's review buttons, and its `/metrics`.

Slack wants an answer within 3 seconds, and a decision may take longer (a dismissal loads the caption
models to find the captions that matched). So a request is checked (size, signature, age, reviewer) and
answered at once; the decision is then taken on a worker thread, which updates the original message
through its `response_url` to show who decided what and when. A refused reviewer gets a message only they
see; a forged, expired, replayed or oversized request gets a bare 4xx and changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from monitor.review.decisions import ReviewError, Verdict
from monitor.review.effects import Outcome
from monitor.review.metrics import ReviewMetrics
from monitor.review.slack import (
    MAX_BODY_BYTES,
    Action,
    Refused,
    Verifier,
    allowed,
    decided_message,
    notice,
    parse_action,
    parse_allowed,
)
from monitor.settings import Settings

log = logging.getLogger("monitor.review.server")

DEFAULT_PATH = "/slack/actions"
READ_TIMEOUT_SECONDS = 5.0
"""A client that sends its body slower than this is cut off, so it cannot hold a thread."""

Post = Callable[[str, dict[str, Any]], None]


class Desk(Protocol):
    """Where the buttons' decisions are taken: an alerts file and a bank directory (`ReviewDesk`), or the
    `alerts` topic and the bank the workers read (`KafkaDesk`). Either way a bank directory, whose audit
    log the metrics count."""

    @property
    def settings(self) -> Settings: ...

    @property
    def bank(self) -> Path: ...

    def decide(
        self, alert_id: str, verdict: Verdict, by: str, reason: str = "", via: str = "cli"
    ) -> Outcome: ...


def post_json(url: str, payload: dict[str, Any]) -> None:
    """POST to a Slack response_url."""
    response = httpx.post(url, json=payload, timeout=10.0)
    if response.status_code >= 300:
        log.warning("response_url answered %d: %s", response.status_code, response.text[:200])


class ReviewServer:
    """The endpoint, on a thread: `start()`, `url`, `close()`."""

    def __init__(
        self,
        desk: Desk,
        *,
        port: int = 0,
        host: str = "0.0.0.0",
        post: Post = post_json,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = desk.settings
        self.desk = desk
        self.verifier = Verifier(settings.slack_signing_secret)
        self.reviewers = parse_allowed(settings.review_allowed)
        if not self.reviewers:
            raise ReviewError(
                "no reviewer may decide: list Slack user, team or channel ids in MONITOR_REVIEW_ALLOWED"
            )
        self.path = urlsplit(settings.review_public_url).path or DEFAULT_PATH
        self.metrics = ReviewMetrics(desk.bank)
        self.post = post
        self.clock = clock
        self.pending: list[Future[None]] = []
        self._work = ThreadPoolExecutor(max_workers=2, thread_name_prefix="review")
        self._http = ThreadingHTTPServer((host, port), self._handler())
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> ReviewServer:
        self._thread = threading.Thread(target=self._http.serve_forever, name="review-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._http.serve_forever()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._work.shutdown(wait=True)

    def accept(self, headers: Any, body: bytes) -> None:
        """Check a request and queue its decision; raises Refused for one that is not taken."""
        self.verifier.verify(
            headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature"), body, self.clock()
        )
        action = parse_action(body)
        self.pending.append(self._work.submit(self._decide, action))

    def _decide(self, action: Action) -> None:
        try:
            if not allowed(action, self.reviewers):
                log.warning("review refused: %s is not a listed reviewer", action.by)
                self._answer(action, notice("Only listed reviewers may decide on alerts."))
                return
            outcome = self.desk.decide(action.alert_id, action.verdict, action.by, "via Slack", via="slack")
            log.info("review: %s", outcome.line())
            self._answer(action, decided_message(action, outcome))
        except ReviewError as exc:
            self._answer(action, notice(f"Cannot decide: {exc}"))
        except Exception:  # a thread's failure must reach the log, and the presser a word
            log.exception("review of %s failed", action.alert_id)
            self._answer(action, notice("The decision failed; it was not taken. Try again or use the CLI."))

    def _answer(self, action: Action, payload: dict[str, Any]) -> None:
        if not action.response_url:
            return
        try:
            self.post(action.response_url, payload)
        except httpx.HTTPError as exc:
            log.warning("cannot update the Slack message: %s", exc)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = READ_TIMEOUT_SECONDS

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

            def _reply(self, status: int, body: bytes = b"", kind: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, server.metrics.exposition(), "text/plain; version=0.0.4")
                elif self.path == "/healthz":
                    self._reply(200, b"ok")
                else:
                    self._reply(404)

            def do_POST(self) -> None:
                if self.path != server.path:
                    self._reply(404)
                    return
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    self._reply(411)
                    return
                if int(length) > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._reply(413)
                    return
                body = self.rfile.read(int(length))
                try:
                    server.accept(self.headers, body)
                except Refused as exc:
                    log.warning("request refused (%d): %s", exc.status, exc.why)
                    self._reply(exc.status)
                    return
                self._reply(200)

        return Handler


def serve_forever(desk: Desk, port: int | None) -> None:
    """`monitor review-server`: serve until interrupted."""
    server = ReviewServer(desk, port=port or desk.settings.review_port)
    public = desk.settings.review_public_url or f"(no MONITOR_REVIEW_PUBLIC_URL; path {server.path})"
    print(
        f"review-server: listening on :{server.port}{server.path} for {public}; "
        f"{len(server.reviewers)} reviewer id(s); metrics on /metrics",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.close()
