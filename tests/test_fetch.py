"""Feeds fetched from servers that misbehave on purpose, all real servers on 127.0.0.x: one that
drips a byte at a time, a gzip bomb, a body past the cap, redirects to the local network, to
other schemes and in circles. Each is refused with a line naming the source; the build goes on
with the other sources."""

from __future__ import annotations

import contextlib
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from newsletter.compose.fetch import FetchLimits, decode, fetch_url
from newsletter.compose.select import read_sources
from newsletter.config import Settings, with_changes
from newsletter.errors import SourceError
from tests.conftest import rss

FEED = rss(
    [
        {
            "title": "Fetched safely",
            "link": "https://example.org/a",
            "date": "Mon, 16 Nov 2026 09:00:00 GMT",
            "body": "<p>Body</p>",
        }
    ]
).encode()

Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A real HTTP server whose routes are functions of the request handler."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        routes: dict[str, Route] = {}
        self.routes = routes
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                route = routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    route(self)  # a broken pipe: the client gave up, as it should

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def body(data: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return body(b"", status=status, headers={"Location": location})


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1 GiB of zeros, gzipped to about 4.7 MB."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(1024)), packer.flush()])


def test_a_server_that_drips_is_cut_off_at_one_deadline_for_the_whole_fetch(
    server: Server,
) -> None:
    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        for _ in range(1000):  # one byte every 0.1 s: each read is quick, the whole is not
            h.wfile.write(b"<")
            h.wfile.flush()
            time.sleep(0.1)

    server.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        fetch_url(f"{server.url}/drip", FetchLimits(timeout=1.0))
    elapsed = time.monotonic() - started
    assert str(info.value) == f"{server.url}/drip: timed out after 1 s"
    assert elapsed < 2.5, elapsed


def test_a_gzip_bomb_stops_at_the_cap_without_inflating_in_memory(
    server: Server, bomb: bytes
) -> None:
    server.routes["/bomb"] = body(bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as info:
            fetch_url(f"{server.url}/bomb", FetchLimits(timeout=20, max_bytes=10_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "larger than 10,000,000 bytes once decompressed" in str(info.value)
    assert peak < 80_000_000, f"peak {peak:,} bytes"


def test_a_body_over_the_cap_is_refused_as_declared_and_as_sent(server: Server) -> None:
    server.routes["/declared"] = body(b"x" * 5000)

    def undeclared(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        for _ in range(100):
            h.wfile.write(b"y" * 1000)

    server.routes["/undeclared"] = undeclared
    limits = FetchLimits(timeout=5, max_bytes=2048)
    for path, expected in (("/declared", "(5,000)"), ("/undeclared", "larger than 2,048 bytes")):
        with pytest.raises(SourceError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            fetch_url(server.url + path, limits)


def test_gzip_and_deflate_bodies_are_decoded(server: Server) -> None:
    server.routes["/gz"] = body(zlib.compress(FEED, wbits=31), headers={"Content-Encoding": "gzip"})
    server.routes["/deflate"] = body(zlib.compress(FEED), headers={"Content-Encoding": "deflate"})
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(FEED) + raw.flush()
    server.routes["/raw"] = body(raw_deflate, headers={"Content-Encoding": "deflate"})
    for path in ("/gz", "/deflate", "/raw"):
        assert fetch_url(server.url + path, FetchLimits(timeout=5)) == FEED
    with pytest.raises(SourceError, match="unsupported Content-Encoding 'br'"):
        decode(b"x", "br", 100, "feed")


def test_redirects_to_the_local_network_are_refused_unless_allowed(server: Server) -> None:
    other = Server("127.0.0.2")  # another loopback address: "the local network"
    try:
        other.routes["/internal"] = body(FEED)
        server.routes["/to-loopback"] = redirect(f"{other.url}/internal")
        server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
        server.routes["/to-private"] = redirect("http://10.1.2.3/admin")
        server.routes["/to-v6"] = redirect("http://[::1]:9/x")
        server.routes["/same-host"] = redirect("/feed.xml", 301)
        server.routes["/feed.xml"] = body(FEED)
        for path, address in (
            ("/to-loopback", "127.0.0.2"),
            ("/to-metadata", "169.254.169.254"),
            ("/to-private", "10.1.2.3"),
            ("/to-v6", "::1"),
        ):
            with pytest.raises(SourceError) as info:
                fetch_url(server.url + path, FetchLimits(timeout=5))
            assert f"({address}), a non-public address" in str(info.value)
            assert str(info.value).startswith(f"{server.url}{path}: refused a redirect")
        assert other.hits == []  # never even asked
        # A redirect within the configured host is fine; so is one the setting allows.
        assert fetch_url(f"{server.url}/same-host", FetchLimits(timeout=5)) == FEED
        allowed = FetchLimits(timeout=5, allow_private=True)
        assert fetch_url(f"{server.url}/to-loopback", allowed) == FEED
        assert other.hits == ["/internal"]
    finally:
        other.close()


def test_other_schemes_and_long_redirect_chains_are_refused(server: Server) -> None:
    server.routes["/to-file"] = redirect("file:///etc/passwd")
    server.routes["/to-gopher"] = redirect("gopher://127.0.0.1/")
    for n in range(7):
        server.routes[f"/hop{n}"] = redirect(f"/hop{n + 1}")
    server.routes["/hop7"] = body(FEED)
    server.routes["/loop"] = redirect("/loop")
    limits = FetchLimits(timeout=5)
    with pytest.raises(SourceError, match="refused a redirect to a file: URL"):
        fetch_url(f"{server.url}/to-file", limits)
    with pytest.raises(SourceError, match="refused a redirect to a gopher: URL"):
        fetch_url(f"{server.url}/to-gopher", limits)
    with pytest.raises(SourceError, match="more than 5 redirects"):
        fetch_url(f"{server.url}/hop0", limits)
    with pytest.raises(SourceError, match="more than 5 redirects"):
        fetch_url(f"{server.url}/loop", limits)
    assert fetch_url(f"{server.url}/hop2", limits) == FEED  # five redirects are fine


def test_each_refused_feed_is_a_warning_and_the_issue_is_built_from_the_others(
    server: Server, settings: Settings, bomb: bytes
) -> None:
    server.routes["/good.xml"] = body(FEED)
    server.routes["/bomb.xml"] = body(bomb, headers={"Content-Encoding": "gzip"})
    server.routes["/away.xml"] = redirect("http://169.254.169.254/")
    config = with_changes(settings, sources={"timeout": 5}).issue_config()
    secret_url = f"{server.url.replace('//', '//reader:hunter2@')}/missing.xml?api_key=SECRET1"
    sources = [(f"{server.url}/{n}.xml", False) for n in ("good", "bomb", "away")]
    items, warnings = read_sources(config, [*sources, (secret_url, False)])
    assert [i.title for i in items] == ["Fetched safely"]
    assert len(warnings) == 3, warnings
    assert all(w.startswith("source skipped: ") for w in warnings)
    assert any(f"{server.url}/bomb.xml" in w and "decompressed" in w for w in warnings)
    assert any(f"{server.url}/away.xml" in w and "non-public" in w for w in warnings)
    assert not any("hunter2" in w or "SECRET1" in w for w in warnings), warnings
    assert any("reader:********@" in w and "api_key=********" in w for w in warnings)


def test_a_fetch_from_inside_a_running_event_loop_works(server: Server, tmp_path: Path) -> None:
    import asyncio

    server.routes["/feed.xml"] = body(FEED)

    async def inside() -> bytes:
        return fetch_url(f"{server.url}/feed.xml", FetchLimits(timeout=5))

    assert asyncio.run(inside()) == FEED
