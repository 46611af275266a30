"""A local HTTP server that behaves like a Slack incoming webhook, scripted per request.

Answers come from a script of answers, one per request in arrival order, then `default` (Slack's
`200 ok` unless a test switches it, say to 500s for an outage and back). An answer may be held back for a
while before it is sent, to make the client time out. Every request is recorded with its arrival time and
the status it got, so tests check what Slack would have shown, how often it was asked, and how fast.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ALERT_ID = re.compile(r"^Alert (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (a slow Slack; longer than the client's timeout: a timeout)."""


OK = Answer(200, "ok")
ScriptItem = Answer | tuple[int, str, dict[str, str]]


def _answer(item: ScriptItem) -> Answer:
    return item if isinstance(item, Answer) else Answer(item[0], item[1], dict(item[2]))


def alert_id_of(payload: dict[str, Any]) -> str | None:
    """The alert a payload is about, from the last line of its fallback text (`Alert <id>`)."""
    found = ALERT_ID.findall(str(payload.get("text", "")))
    return found[-1] if found else None


class SlackReceiver:
    def __init__(self, script: Sequence[ScriptItem] | None = None) -> None:
        self.script = [_answer(item) for item in script or ()]
        self.default = OK
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, body: bytes) -> Answer:
        with self.lock:
            self.times.append(time.monotonic())
            try:
                self.requests.append(json.loads(body))
            except json.JSONDecodeError:
                self.requests.append({})
                self.statuses.append(400)
                return Answer(400, "invalid_payload")
            answer = self.script.pop(0) if self.script else self.default
            self.statuses.append(answer.status)
            return answer

    def set_default(self, answer: ScriptItem) -> None:
        with self.lock:
            self.default = _answer(answer)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Payloads that Slack answered `ok` to."""
        with self.lock:
            return [r for r, status in zip(self.requests, self.statuses, strict=True) if status == 200]

    def log(self) -> list[tuple[str | None, int]]:
        """(alert id, status answered) per request, in arrival order."""
        with self.lock:
            return [(alert_id_of(r), s) for r, s in zip(self.requests, self.statuses, strict=True)]

    def delivered_ids(self) -> list[str | None]:
        return [alert_id_of(payload) for payload in self.delivered]


@contextmanager
def slack_receiver(script: Sequence[ScriptItem] | None = None) -> Iterator[SlackReceiver]:
    receiver = SlackReceiver(script)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            answer = receiver.answer(body)
            if answer.delay:
                time.sleep(answer.delay)
            payload = answer.body.encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up waiting (a timeout): nothing left to answer
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
