"""Alert webhooks (usecases/book_alerts.py) against a real local http.server receiver on 127.0.0.1."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from perphedge.core.alerts import AlertEvent
from perphedge.usecases.book_alerts import ALERT_SCHEMA, alert_payload, post_alert

Script = Callable[[BaseHTTPRequestHandler, int], None]


class Receiver:
    """A local receiver: each POST is recorded and answered by ``script(handler, n)`` (n = 0, 1, ...)."""

    def __init__(self, script: Script | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.script = script or (lambda h, n: reply(h, 200))
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                rec.bodies.append(json.loads(raw))
                rec.headers.append(dict(self.headers))
                rec.paths.append(self.path)
                rec.script(self, len(rec.bodies) - 1)

            def do_GET(self) -> None:
                rec.paths.append("GET " + self.path)
                reply(self, 200)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes = b"ok", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(script: Script | None = None) -> Receiver:
        r = Receiver(script)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


EVENT = AlertEvent(
    kind="open",
    alert="liquidation_distance",
    subject="binance:BTCUSDT",
    value=0.22,
    threshold=0.3,
    ts_ms=1_700_000_000_000,
    message="liquidation distance of binance:BTCUSDT is 22.0%, below 30.0%: add margin or cut the short",
)
NO_SLEEP: Callable[[float], None] = lambda s: None  # noqa: E731


def test_payload_received(receiver: Callable[..., Receiver]) -> None:
    r = receiver()
    assert post_alert(r.url + "/hook?token=abc", alert_payload("3f9a1c2e", EVENT)) is None
    assert r.bodies == [
        {
            "schema": ALERT_SCHEMA,
            "book_id": "3f9a1c2e",
            "event": "open",
            "alert": "liquidation_distance",
            "subject": "binance:BTCUSDT",
            "value": 0.22,
            "threshold": 0.3,
            "ts_ms": 1_700_000_000_000,
            "message": EVENT.message,
        }
    ]
    assert r.headers[0]["Content-Type"] == "application/json"
    assert r.paths == ["/hook?token=abc"]


def test_non_finite_values_are_null_and_schema_is_ours(receiver: Callable[..., Receiver]) -> None:
    r = receiver()
    assert post_alert(r.url, {"schema": "evil/9", "value": math.inf, "x": math.nan, "text": "é"}) is None
    assert r.bodies == [{"schema": ALERT_SCHEMA, "value": None, "x": None, "text": "é"}]


def test_500_then_200_is_retried(receiver: Callable[..., Receiver]) -> None:
    r = receiver(lambda h, n: reply(h, 500 if n == 0 else 200))
    waits: list[float] = []
    assert post_alert(r.url, {"a": 1}, backoff_s=0.25, sleep=waits.append) is None
    assert len(r.bodies) == 2 and r.bodies[0] == r.bodies[1]
    assert waits == [0.25]


def test_500_every_time_gives_one_line_after_the_tries(receiver: Callable[..., Receiver]) -> None:
    r = receiver(lambda h, n: reply(h, 503, b"down\nfor maintenance", {"Retry-After": "2"}))
    waits: list[float] = []
    err = post_alert(r.url + "/secret-token-path", {"a": 1}, tries=3, backoff_s=0.5, sleep=waits.append)
    assert err is not None and "\n" not in err
    assert err.startswith(f"webhook {r.url}: HTTP 503")
    assert "down for maintenance" in err and err.endswith("(3 tries)")
    assert "secret-token-path" not in err
    assert len(r.bodies) == 3
    assert waits == [2.0, 2.0]  # Retry-After is longer than the backoff (0.5, 1.0)


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_client_errors_are_final_at_once(receiver: Callable[..., Receiver], status: int) -> None:
    r = receiver(lambda h, n: reply(h, status, b"nope"))
    err = post_alert(r.url, {"a": 1}, sleep=NO_SLEEP)
    assert err is not None and err.startswith(f"webhook {r.url}: HTTP {status}") and "nope" in err
    assert len(r.bodies) == 1


def test_429_is_retried(receiver: Callable[..., Receiver]) -> None:
    r = receiver(lambda h, n: reply(h, 429 if n < 2 else 204, b""))
    assert post_alert(r.url, {"a": 1}, sleep=NO_SLEEP) is None
    assert len(r.bodies) == 3


def test_timeout(receiver: Callable[..., Receiver]) -> None:
    def slow(h: BaseHTTPRequestHandler, n: int) -> None:
        time.sleep(1.0)
        reply(h, 200)

    r = receiver(slow)
    t0 = time.monotonic()
    err = post_alert(r.url, {"a": 1}, timeout_s=0.2, tries=2, sleep=NO_SLEEP)
    assert time.monotonic() - t0 < 1.5
    assert err == f"webhook {r.url}: no answer within 0.2 s (2 tries)"


def test_connection_refused() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = post_alert(f"http://127.0.0.1:{port}/x", {"a": 1}, tries=2, sleep=NO_SLEEP)
    assert err == f"webhook http://127.0.0.1:{port}: connection refused (2 tries)"


def test_huge_slow_body_after_200_is_not_read(receiver: Callable[..., Receiver]) -> None:
    def script(h: BaseHTTPRequestHandler, n: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(10**9))
        h.end_headers()
        try:
            for _ in range(50):
                h.wfile.write(b"x" * 65536)
                time.sleep(0.1)
        except OSError:
            pass

    r = receiver(script)
    t0 = time.monotonic()
    assert post_alert(r.url, {"a": 1}, timeout_s=2.0) is None
    assert time.monotonic() - t0 < 1.0


def test_huge_error_body_is_cut(receiver: Callable[..., Receiver]) -> None:
    r = receiver(lambda h, n: reply(h, 418, b"y" * 5_000_000))
    err = post_alert(r.url, {"a": 1}, sleep=NO_SLEEP)
    assert err is not None and len(err) < 300 and err.startswith(f"webhook {r.url}: HTTP 418")


def test_dropped_connection_is_retried(receiver: Callable[..., Receiver]) -> None:
    def script(h: BaseHTTPRequestHandler, n: int) -> None:
        if n == 0:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        reply(h, 200)

    r = receiver(script)
    assert post_alert(r.url, {"a": 1}, sleep=NO_SLEEP) is None
    assert len(r.bodies) == 2


def test_same_scheme_307_is_reposted(receiver: Callable[..., Receiver]) -> None:
    def script(h: BaseHTTPRequestHandler, n: int) -> None:
        if h.path == "/old":
            reply(h, 307, b"", {"Location": "/new"})
        else:
            reply(h, 200)

    r = receiver(script)
    assert post_alert(r.url + "/old", {"a": 1}) is None
    assert r.paths == ["/old", "/new"] and r.bodies[0] == r.bodies[1]


@pytest.mark.parametrize(
    ("status", "location", "text"),
    [
        (307, "https://example.invalid/x", "redirect to https refused"),
        (308, "ftp://example.invalid/x", "redirect to ftp refused"),
        (302, "/elsewhere", "HTTP 302 redirect not followed"),
        (303, "/elsewhere", "HTTP 303 redirect not followed"),
        (301, "file:///etc/passwd", "HTTP 301 redirect not followed"),
    ],
)
def test_other_redirects_are_not_followed(
    receiver: Callable[..., Receiver], status: int, location: str, text: str
) -> None:
    r = receiver(lambda h, n: reply(h, status, b"", {"Location": location}))
    err = post_alert(r.url, {"a": 1}, sleep=NO_SLEEP)
    assert err is not None and text in err
    assert len(r.bodies) == 1 and not any(p.startswith("GET") for p in r.paths)


def test_redirect_loop_is_bounded(receiver: Callable[..., Receiver]) -> None:
    r = receiver(lambda h, n: reply(h, 307, b"", {"Location": "/again"}))
    err = post_alert(r.url, {"a": 1}, sleep=NO_SLEEP)
    assert err is not None and "more than 3 redirects" in err
    assert len(r.bodies) == 4


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "127.0.0.1:80", "http://", "http://h:99999/", "", None]
)
def test_bad_urls_refused_without_a_request(url: Any) -> None:
    err = post_alert(url, {"a": 1})
    assert err is not None and err.startswith("webhook URL")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="tries"):
        post_alert("http://127.0.0.1:1/", {}, tries=0)
    with pytest.raises(ValueError, match="timeout_s"):
        post_alert("http://127.0.0.1:1/", {}, timeout_s=0)
    with pytest.raises(ValueError, match="JSON"):
        post_alert("http://127.0.0.1:1/", {"x": object()})
