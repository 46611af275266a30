"""A local HTTP server that behaves like a Slack incoming webhook, scripted per request.

Answers come from a script of (status, body, headers) tuples, then `ok` forever; every request body is
recorded, so tests check what Slack would have shown and how often it was asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, str, dict[str, str]]


class SlackReceiver:
    def __init__(self, script: list[Answer] | None = None) -> None:
        self.script = list(script or [])
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
                return 400, "invalid_payload", {}
            answer = self.script.pop(0) if self.script else (200, "ok", {})
            self.statuses.append(answer[0])
            return answer

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Payloads that Slack answered `ok` to."""
        with self.lock:
            return [r for r, status in zip(self.requests, self.statuses, strict=True) if status == 200]


@contextmanager
def slack_receiver(script: list[Answer] | None = None) -> Iterator[SlackReceiver]:
    receiver = SlackReceiver(script)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, text, headers = receiver.answer(body)
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
