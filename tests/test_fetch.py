"""Tests for monitor.ingest.fetch against a real HTTP server on 127.0.0.1 (and a mock transport for hops that
would need public addresses)."""

from __future__ import annotations

import gzip
import io
import ipaddress
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from monitor.ingest.fetch import FetchError, FetchPolicy, ImageFetcher, is_blocked_address


def _make_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _make_png()
HUGE = b"\0" * 1_000_000


@dataclass
class Server:
    base: str  # http://127.0.0.1:<port>
    port: int
    paths: list[str] = field(default_factory=list)  # every path requested, in order
    host_headers: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server_state: Server  # set per server via a subclass

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str | None,
        extra: dict[str, str] | None = None,
        content_length: bool = True,
    ) -> None:
        self.send_response(code)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if content_length:
            self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self._send(302, b"", None, {"Location": location})

    def do_GET(self) -> None:
        state = self.server_state
        state.paths.append(self.path)
        state.host_headers.append(self.headers.get("Host", ""))
        path = self.path
        try:
            if path == "/img.png":
                self._send(200, PNG, "image/png")
            elif path == "/img-params.png":
                self._send(200, PNG, "IMAGE/PNG; charset=binary")
            elif path == "/page.html":
                self._send(200, b"<html>hi</html>", "text/html; charset=utf-8")
            elif path == "/notype":
                self._send(200, PNG, None)
            elif path == "/huge":  # declares 1 MB, then stalls: only the Content-Length check is quick
                self._send(200, b"", "image/png", {"Content-Length": str(len(HUGE))}, content_length=False)
                self.wfile.flush()
                time.sleep(3)
                self.wfile.write(HUGE)
            elif path == "/endless":  # no Content-Length, never ends: only the byte cap can stop it
                self._send(200, b"", "image/png", content_length=False)
                chunk = b"\0" * 65536
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    self.wfile.write(chunk)
            elif path == "/gzip-bomb":  # ~1 KB on the wire, 1 MB once decoded
                self._send(200, gzip.compress(HUGE), "image/png", {"Content-Encoding": "gzip"})
            elif path == "/slow-headers":
                time.sleep(2)
                self._send(200, PNG, "image/png")
            elif path == "/trickle":  # headers at once, then one byte every 0.1 s: no single read stalls
                self._send(200, b"", "image/png", {"Content-Length": "100"}, content_length=False)
                for _ in range(100):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif path.startswith("/chain/"):  # /chain/n takes n redirects to reach the image
                n = int(path.rsplit("/", 1)[1])
                if n == 0:
                    self._send(200, PNG, "image/png")
                else:
                    self._redirect(f"/chain/{n - 1}")
            elif path == "/absolute-redirect":
                self._redirect(f"{state.base}/img.png")
            elif path == "/to-ftp":
                self._redirect("ftp://127.0.0.1/img.png")
            elif path == "/no-location":
                self._send(302, b"", None)
            elif path == "/error":
                self._send(500, b"oops", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = httpd.server_address[1]
    state = Server(base=f"http://127.0.0.1:{port}", port=port)
    httpd.RequestHandlerClass = type("Handler", (_Handler,), {"server_state": state})
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


LOCAL = FetchPolicy(allow_private_addresses=True, timeout_seconds=3.0)


async def _fetch(policy: FetchPolicy, url: str) -> bytes:
    async with ImageFetcher(policy) as fetcher:
        return await fetcher.fetch(url)


async def _reason(policy: FetchPolicy, url: str) -> str:
    with pytest.raises(FetchError) as info:
        await _fetch(policy, url)
    return str(info.value)


# --- happy paths --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fetches_png(server: Server) -> None:
    body = await _fetch(LOCAL, f"{server.base}/img.png")
    assert body == PNG
    assert Image.open(io.BytesIO(body)).size == (8, 8)
    assert server.host_headers[-1] == f"127.0.0.1:{server.port}"


@pytest.mark.asyncio
async def test_content_type_is_matched_case_insensitively_without_params(server: Server) -> None:
    assert await _fetch(LOCAL, f"{server.base}/img-params.png") == PNG


@pytest.mark.asyncio
async def test_body_of_exactly_max_bytes_is_accepted(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_bytes=len(PNG))
    assert await _fetch(policy, f"{server.base}/img.png") == PNG


@pytest.mark.asyncio
async def test_hostname_is_resolved_and_pinned_with_host_header(server: Server) -> None:
    async def resolver(host: str) -> Sequence[str]:
        assert host == "images.test"
        return ["127.0.0.1"]

    async with ImageFetcher(LOCAL, resolver=resolver) as fetcher:
        assert await fetcher.fetch(f"http://images.test:{server.port}/img.png") == PNG
    assert server.host_headers[-1] == f"images.test:{server.port}"


@pytest.mark.asyncio
async def test_falls_back_to_next_checked_address_when_first_refuses(server: Server) -> None:
    async def resolver(host: str) -> Sequence[str]:
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2:<port>

    async with ImageFetcher(LOCAL, resolver=resolver) as fetcher:
        assert await fetcher.fetch(f"http://images.test:{server.port}/img.png") == PNG


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redirect_chain_within_limit_is_followed(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_redirects=3)
    start = len(server.paths)
    assert await _fetch(policy, f"{server.base}/chain/3") == PNG
    assert server.paths[start:] == ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]


@pytest.mark.asyncio
async def test_absolute_redirect_is_followed(server: Server) -> None:
    assert await _fetch(LOCAL, f"{server.base}/absolute-redirect") == PNG


@pytest.mark.asyncio
async def test_too_many_redirects(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_redirects=3)
    start = len(server.paths)
    assert await _reason(policy, f"{server.base}/chain/4") == "too many redirects (>3)"
    assert len(server.paths) - start == 4  # the fifth hop was never requested


@pytest.mark.asyncio
async def test_zero_redirects_allowed(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_redirects=0)
    assert await _reason(policy, f"{server.base}/chain/1") == "too many redirects (>0)"


@pytest.mark.asyncio
async def test_redirect_scheme_is_rechecked(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/to-ftp") == "unsupported scheme ftp"


@pytest.mark.asyncio
async def test_redirect_without_location(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/no-location") == "HTTP 302 without Location"


# --- SSRF ---------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_default_policy_blocks_loopback_server_before_connecting(server: Server) -> None:
    start = len(server.paths)
    assert await _reason(FetchPolicy(), f"{server.base}/img.png") == "blocked address 127.0.0.1"
    assert len(server.paths) == start


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]/x.png", "blocked address ::1"),
        ("http://0.0.0.0/x.png", "blocked address 0.0.0.0"),
        ("http://2130706433/x.png", "blocked address 127.0.0.1"),  # decimal form, via getaddrinfo
        ("http://0x7f.1/x.png", "blocked address 127.0.0.1"),  # hex/short form, via getaddrinfo
        ("http://169.254.169.254/latest/meta-data/", "blocked address 169.254.169.254"),
        ("http://10.0.0.5/x.png", "blocked address 10.0.0.5"),
        ("http://[::ffff:127.0.0.1]/x.png", "blocked address ::ffff:"),
        ("https://[::ffff:10.0.0.1]/x.png", "blocked address ::ffff:"),
        ("http://localhost/x.png", "blocked address"),
    ],
)
async def test_blocked_literals_and_local_names(url: str, reason: str) -> None:
    assert (await _reason(FetchPolicy(timeout_seconds=2.0), url)).startswith(reason)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),  # mapped public address is fine
        ("127.0.0.1", True),
        ("100.64.0.1", True),  # carrier-grade NAT: not private, but not global either
        ("192.168.1.1", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("ff02::1", True),
        ("::", True),
        ("2002:7f00:1::", True),  # 6to4 wrapping 127.0.0.1
        ("::ffff:169.254.169.254", True),
    ],
)
def test_is_blocked_address(address: str, blocked: bool) -> None:
    assert is_blocked_address(ipaddress.ip_address(address)) is blocked


@pytest.mark.asyncio
async def test_any_private_resolved_address_blocks() -> None:
    async def resolver(host: str) -> Sequence[str]:
        return ["8.8.8.8", "10.1.2.3"]

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not connect")

    async with ImageFetcher(FetchPolicy(), resolver=resolver, transport=httpx.MockTransport(handler)) as f:
        with pytest.raises(FetchError, match=r"^blocked address 10\.1\.2\.3$"):
            await f.fetch("http://mixed.example/x.png")


@pytest.mark.asyncio
async def test_unsupported_schemes() -> None:
    for url, scheme in [("ftp://example.com/x.png", "ftp"), ("file:///etc/passwd", "file")]:
        assert await _reason(FetchPolicy(), url) == f"unsupported scheme {scheme}"


# --- pinning and redirect re-check (public names need a mock transport: no real network) -------------


class _Recorder:
    def __init__(self, routes: dict[str, httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.headers['host']}{request.url.raw_path.decode()}"
        return self.routes[key]


PUBLIC_DNS = {"cdn.example": ["93.184.216.34"], "internal.example": ["10.9.8.7"]}


async def _public_resolver(host: str) -> Sequence[str]:
    return PUBLIC_DNS[host]


@pytest.mark.asyncio
async def test_https_request_is_pinned_to_checked_ip_with_host_and_sni() -> None:
    recorder = _Recorder(
        {
            "cdn.example:8443/a.png": httpx.Response(302, headers={"Location": "/b.png"}),
            "cdn.example:8443/b.png": httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"}),
        }
    )
    async with ImageFetcher(
        FetchPolicy(), resolver=_public_resolver, transport=httpx.MockTransport(recorder)
    ) as fetcher:
        assert await fetcher.fetch("https://cdn.example:8443/a.png") == PNG
    assert len(recorder.requests) == 2
    for request in recorder.requests:
        assert request.url.host == "93.184.216.34"  # connects to the address that was checked
        assert request.url.scheme == "https"
        assert request.url.port == 8443
        assert request.headers["host"] == "cdn.example:8443"
        assert request.extensions["sni_hostname"] == "cdn.example"


@pytest.mark.asyncio
async def test_redirect_to_private_name_is_blocked() -> None:
    recorder = _Recorder(
        {
            "cdn.example/a.png": httpx.Response(302, headers={"Location": "http://internal.example/admin"}),
        }
    )
    async with ImageFetcher(
        FetchPolicy(), resolver=_public_resolver, transport=httpx.MockTransport(recorder)
    ) as fetcher:
        with pytest.raises(FetchError, match=r"^blocked address 10\.9\.8\.7$"):
            await fetcher.fetch("http://cdn.example/a.png")
    assert len(recorder.requests) == 1  # the second hop was never sent


@pytest.mark.asyncio
async def test_redirect_to_metadata_ip_is_blocked() -> None:
    recorder = _Recorder(
        {
            "cdn.example/a.png": httpx.Response(
                301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
            ),
        }
    )
    async with ImageFetcher(
        FetchPolicy(), resolver=_public_resolver, transport=httpx.MockTransport(recorder)
    ) as fetcher:
        with pytest.raises(FetchError, match=r"^blocked address 169\.254\.169\.254$"):
            await fetcher.fetch("http://cdn.example/a.png")
    assert len(recorder.requests) == 1


# --- content checks -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_html_is_refused(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/page.html") == "content-type text/html is not an image"


@pytest.mark.asyncio
async def test_missing_content_type_is_refused(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/notype") == "missing content-type"


@pytest.mark.asyncio
async def test_custom_allowed_content_types(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, allowed_content_types=("text/html",))
    assert await _fetch(policy, f"{server.base}/page.html") == b"<html>hi</html>"
    assert await _reason(policy, f"{server.base}/img.png") == "content-type image/png is not an image"


@pytest.mark.asyncio
async def test_http_404(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/missing.png") == "HTTP 404"


@pytest.mark.asyncio
async def test_http_500(server: Server) -> None:
    assert await _reason(LOCAL, f"{server.base}/error") == "HTTP 500"


# --- size and time limits -----------------------------------------------------------------------

SMALL = FetchPolicy(allow_private_addresses=True, max_bytes=100_000, timeout_seconds=3.0)


@pytest.mark.asyncio
async def test_declared_content_length_over_cap_is_refused_before_reading(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, max_bytes=100_000, timeout_seconds=1.0)
    assert await _reason(policy, f"{server.base}/huge") == "too large: more than 100000 bytes"


@pytest.mark.asyncio
async def test_endless_body_is_cut_off_at_cap(server: Server) -> None:
    started = time.monotonic()
    assert await _reason(SMALL, f"{server.base}/endless") == "too large: more than 100000 bytes"
    assert time.monotonic() - started < 2.0  # stopped by the byte cap, not by the timeout


@pytest.mark.asyncio
async def test_gzip_bomb_is_measured_after_decoding(server: Server) -> None:
    assert await _reason(SMALL, f"{server.base}/gzip-bomb") == "too large: more than 100000 bytes"


@pytest.mark.asyncio
async def test_slow_headers_time_out(server: Server) -> None:
    policy = FetchPolicy(allow_private_addresses=True, timeout_seconds=0.3)
    started = time.monotonic()
    assert await _reason(policy, f"{server.base}/slow-headers") == "timeout after 0.3 s"
    assert time.monotonic() - started < 1.5


@pytest.mark.asyncio
async def test_trickling_body_hits_total_timeout(server: Server) -> None:
    # every read returns within 0.1 s, so only a timeout over the whole fetch can stop this
    policy = FetchPolicy(allow_private_addresses=True, timeout_seconds=0.5)
    started = time.monotonic()
    assert await _reason(policy, f"{server.base}/trickle") == "timeout after 0.5 s"
    assert time.monotonic() - started < 1.5
