"""Fetch images named in social-post events, defensively.

The URLs come from posts written by strangers, so every fetch is treated as hostile input:

* **SSRF.** A URL such as ``http://169.254.169.254/latest/meta-data/``, ``http://[::1]:6379/``,
  ``http://2130706433/`` (127.0.0.1 in decimal) or a public name whose DNS record points at
  10.0.0.5 would otherwise make the monitor probe our own network. Every host is resolved with
  ``getaddrinfo`` and the fetch is refused when *any* resolved address is loopback, private,
  link-local, multicast, reserved, unspecified or otherwise not globally routable (IPv4 embedded in
  IPv6 via the mapped, 6to4 and Teredo forms is unwrapped and checked too). Redirects are followed
  by hand so that the scheme and the address are checked again on every hop.
* **DNS rebinding.** The request is sent to the very address that was checked: the URL is
  rewritten to the IP, the ``Host`` header carries the original name, and for https the TLS SNI
  and certificate check use the original name (httpx ``sni_hostname`` extension). Keep-alive is
  off so that a TLS connection verified for one name is never reused for another name that
  happens to resolve to the same IP.
* **Giant and decompressed responses.** The body is streamed and the fetch aborts as soon as
  more than ``max_bytes`` have arrived after content decoding, so a gzip bomb is stopped too; a
  ``Content-Length`` above the cap is refused before any body is read. ``identity`` encoding is
  requested. Residual: one network chunk is decompressed at a time, so memory can briefly exceed
  the cap by that chunk's expansion.
* **Hanging servers.** ``timeout_seconds`` bounds the whole fetch -- DNS, every redirect hop and
  a body that trickles in a byte at a time -- not just a single socket read.

Proxy settings from the environment are ignored (``trust_env=False``): a proxy would do its own
DNS lookup and defeat both the address check and the pinning.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import httpx

__all__ = ["FetchError", "FetchPolicy", "ImageFetcher", "Resolver", "is_blocked_address"]

Resolver = Callable[[str], Awaitable[Sequence[str]]]
"""Maps a host name to its IP addresses (as strings). Injectable for tests."""

_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    timeout_seconds: float = 10.0  # total per fetch, redirects included
    max_bytes: int = 20_000_000
    max_redirects: int = 3
    allow_private_addresses: bool = False  # tests set True to serve from loopback
    allowed_content_types: tuple[str, ...] = ("image/",)  # prefixes


class FetchError(Exception):
    """A fetch was refused or failed; ``str(e)`` is a short reason a person can read."""


async def _getaddrinfo_resolver(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchError(f"cannot resolve {host}") from e
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_blocked_address(ip: _IPAddress) -> bool:
    """True for addresses a fetch must never reach: anything that is not plainly public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_blocked_address(embedded)
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


class ImageFetcher:
    """Fetches image bytes under a :class:`FetchPolicy`. Use as ``async with ImageFetcher(p) as f``."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._policy = policy
        self._resolve: Resolver = resolver if resolver is not None else _getaddrinfo_resolver
        self._client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(policy.timeout_seconds),
            limits=httpx.Limits(max_keepalive_connections=0),
            headers={"Accept": "image/*", "Accept-Encoding": "identity"},
        )

    async def __aenter__(self) -> ImageFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """Return the body of the image at ``url``; raise :class:`FetchError` with the reason otherwise."""
        seconds = self._policy.timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                return await self._fetch(url)
        except (TimeoutError, httpx.TimeoutException) as e:
            raise FetchError(f"timeout after {seconds} s") from e

    async def _fetch(self, url: str) -> bytes:
        current = self._parse(url)
        redirects = 0
        while True:
            outcome = await self._fetch_hop(current)
            if isinstance(outcome, bytes):
                return outcome
            location = outcome
            redirects += 1
            if redirects > self._policy.max_redirects:
                raise FetchError(f"too many redirects (>{self._policy.max_redirects})")
            try:
                current = self._parse(current.join(location))
            except httpx.InvalidURL as e:
                raise FetchError(f"invalid redirect location {location[:200]!r}") from e

    @staticmethod
    def _parse(url: str | httpx.URL) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as e:
            raise FetchError(f"invalid URL {str(url)[:200]!r}") from e
        if parsed.scheme not in _ALLOWED_SCHEMES:
            raise FetchError(f"unsupported scheme {parsed.scheme or '(none)'}")
        if not parsed.raw_host:
            raise FetchError(f"invalid URL {str(url)[:200]!r}: no host")
        return parsed

    async def _checked_addresses(self, url: httpx.URL) -> list[str]:
        host = url.raw_host.decode("ascii")
        try:
            literal: _IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        names = [str(literal)] if literal is not None else list(await self._resolve(host))
        if not names:
            raise FetchError(f"cannot resolve {host}")
        addresses: list[str] = []
        for name in names:
            try:
                ip = ipaddress.ip_address(name)
            except ValueError as e:
                raise FetchError(f"resolver returned a non-address {name!r} for {host}") from e
            if not self._policy.allow_private_addresses and is_blocked_address(ip):
                raise FetchError(f"blocked address {ip}")
            addresses.append(str(ip))
        return addresses

    async def _fetch_hop(self, url: httpx.URL) -> bytes | str:
        """One request. Returns the body, or the raw ``Location`` of a redirect."""
        addresses = await self._checked_addresses(url)
        host = url.raw_host.decode("ascii")
        headers = {"Host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        last_error: httpx.ConnectError | None = None
        for address in addresses:
            try:
                pinned = url.copy_with(host=address)
            except httpx.InvalidURL as e:
                raise FetchError(f"cannot connect to address {address}") from e
            try:
                return await self._send(pinned, headers, extensions)
            except httpx.ConnectError as e:
                last_error = e  # try the next checked address, like a browser would
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as e:
                raise FetchError(f"request failed: {type(e).__name__}: {str(e)[:200]}") from e
        raise FetchError(f"cannot connect to {host}: {last_error}") from last_error

    async def _send(self, url: httpx.URL, headers: dict[str, str], extensions: dict[str, str]) -> bytes | str:
        policy = self._policy
        async with self._client.stream("GET", url, headers=headers, extensions=extensions) as response:
            status = response.status_code
            if status in _REDIRECT_CODES:
                location = response.headers.get("location")
                if not location:
                    raise FetchError(f"HTTP {status} without Location")
                return str(location)
            if not 200 <= status < 300:
                raise FetchError(f"HTTP {status}")

            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not content_type:
                raise FetchError("missing content-type")
            if not content_type.startswith(tuple(p.lower() for p in policy.allowed_content_types)):
                raise FetchError(f"content-type {content_type[:100]} is not an image")

            too_large = f"too large: more than {policy.max_bytes} bytes"
            declared = response.headers.get("content-length")
            if declared is not None and declared.strip().isdigit() and int(declared) > policy.max_bytes:
                raise FetchError(too_large)

            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > policy.max_bytes:
                    raise FetchError(too_large)
            return bytes(body)
