"""A local stand-in for Slack incoming webhooks: prints what would be posted, answers `ok`.

The local stack (deploy/local/stack.sh) points the worker's MONITOR_SLACK_WEBHOOK_URL and Alertmanager's
Slack receiver here, so a replay shows its alerts arriving without a Slack workspace. Each message is
printed as one line (the fallback text, or Alertmanager's title and text) and appended as JSON to
`--record FILE` with the path it came to. Standard library only; stops on SIGTERM or Ctrl-C.

    python3 deploy/local/slack_receiver.py --port 18080 --record received.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def summary(payload: dict[str, Any]) -> str:
    """What a person would read in the channel: the monitor's fallback text, or Alertmanager's."""
    parts = [str(payload.get("text") or "")]
    for attachment in payload.get("attachments") or []:
        if isinstance(attachment, dict):
            parts.append(f"{attachment.get('title', '')}: {attachment.get('text', '')}")
    return " | ".join(p.strip().replace("\n", " / ") for p in parts if p and p.strip())


def serve(port: int, record: Path | None) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # health check for `stack.sh status`
            self._answer(200, b"ok")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                payload = json.loads(body)
            except ValueError:
                self._answer(400, b"invalid_payload")
                return
            if not isinstance(payload, dict):
                self._answer(400, b"invalid_payload")
                return
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            with lock:
                print(f"{stamp} slack {self.path}: {summary(payload)}", flush=True)
                if record is not None:
                    with record.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps({"path": self.path, "payload": payload}) + "\n")
            self._answer(200, b"ok")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--record", type=Path, help="append each message as a JSON line to this file")
    args = parser.parse_args(argv)
    server = serve(args.port, args.record)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"slack receiver on http://127.0.0.1:{args.port}/ (any path)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
