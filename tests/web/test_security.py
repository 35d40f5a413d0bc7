"""The server's locks (issue 12, item 3): this machine only without a token; the token by Bearer header or the
login page's session cookie; CSRF on state-changing requests; trading routes only with --allow-trading; keys never
reach the browser; files only from the served folders."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.web import Folders, WebConfig
from perphedge.web.settings import safe_relative
from tests.conftest import run_cli
from tests.web.conftest import home, init_paper_book

TOKEN = "s3cret-token-0123456789"
YAML = {"Content-Type": "application/yaml"}


# ------------------------------------------------------------------------------------------------ host and token


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com", "127.0.0.1.nip.io"])
def test_a_public_host_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError, match="set a token"):
        WebConfig(host=host)
    assert WebConfig(host=host, token=TOKEN).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_token(host: str) -> None:
    assert WebConfig(host=host).token is None


@pytest.mark.parametrize("token", ["short", "with space in it 0123456", ""])
def test_weak_tokens_are_refused(token: str) -> None:
    if token == "":
        assert WebConfig(token=None).token is None
        with pytest.raises(ConfigError, match="set a token"):
            WebConfig(host="0.0.0.0", token=token or None)
    else:
        with pytest.raises(ConfigError, match="--token"):
            WebConfig(token=token)


@pytest.mark.parametrize("port", [-1, 65536, 10**9])
def test_bad_ports_are_refused(port: int) -> None:
    with pytest.raises(ConfigError, match="--port"):
        WebConfig(port=port)


@pytest.mark.parametrize(
    "host_header", ["evil.example.com", "evil.example.com:8765", "192.168.1.5:8765", "127.0.0.1.evil.com", ""]
)
def test_without_a_token_only_this_machine_may_ask(make_client: Callable[..., Any], host_header: str) -> None:
    """A page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own Host: refused."""
    c = make_client()
    r = c.get("/api/calc", params={"instrument": "binance:BTCUSD_PERP"}, headers={"host": host_header})
    assert r.status_code == 421
    assert c.get("/plan", headers={"host": host_header}).status_code == 421
    for ok in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost"):
        assert c.get("/plan", headers={"host": ok}).status_code == 200


def test_with_a_token_every_request_needs_it(make_client: Callable[..., Any], served: Path) -> None:
    c = make_client(token=TOKEN, host="0.0.0.0", base_url="http://myhost.lan:8765")
    body = (served / "examples" / "altcoins.yaml").read_bytes()
    for method, url in (("GET", "/api/plan?file=examples/altcoins.yaml"), ("GET", "/api/book"), ("GET", "/docs"),
                        ("GET", "/openapi.json"), ("GET", "/api/files")):  # fmt: skip
        r = c.request(method, url)
        assert r.status_code == 401, url
        assert "Traceback" not in r.text and TOKEN not in r.text
    r = c.post("/api/plan", content=body, headers=YAML)
    assert r.status_code == 401
    for page in ("/plan", "/calc", "/book", "/backtests", "/stress", "/data", "/"):
        r = c.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), page
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}"):
        assert c.get("/api/files", headers={"Authorization": wrong}).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api/files", headers=ok).status_code == 200
    r = c.post("/api/plan", content=body, headers={**YAML, **ok})
    assert r.status_code == 200 and r.json()["schema"] == "perphedge.plan/1"
    assert c.get("/static/app.js").status_code == 200  # static files are public (no data in them)


def test_login_sets_an_httponly_strict_cookie_and_checks_csrf(make_client: Callable[..., Any]) -> None:
    c = make_client(token=TOKEN, host="0.0.0.0", base_url="http://myhost.lan:8765")
    page = c.get("/login?next=/calc")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = c.post("/login", content=urllib.parse.urlencode({"token": TOKEN, "next": "/calc"}), headers=form)
    assert r.status_code == 403  # no CSRF token
    r = c.post(
        "/login", content=urllib.parse.urlencode({"token": "wrong", "csrf_token": csrf, "next": "/calc"}), headers=form
    )
    assert r.status_code == 401 and "wrong token" in r.text and "set-cookie" not in r.headers
    r = c.post(
        "/login",
        content=urllib.parse.urlencode({"token": TOKEN, "csrf_token": csrf, "next": "https://evil.example/x"}),
        headers=form,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # no open redirect
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and TOKEN not in cookie
    assert c.get("/calc").status_code == 200
    assert c.get("/api/files").status_code == 200
    # the session's pages carry a CSRF token bound to the session; a state-changing POST needs it
    calc = c.get("/calc").text
    session_csrf = calc.split('name="csrf-token" content="')[1].split('"')[0]
    assert session_csrf != csrf
    assert c.post("/api/data/import-sample").status_code == 403
    assert c.post("/api/data/import-sample", headers={"X-CSRF-Token": csrf}).status_code == 403  # another session's
    r = c.post("/logout", headers={"X-CSRF-Token": session_csrf}, follow_redirects=False)
    assert r.status_code == 303
    c.cookies.clear()
    assert c.get("/api/files").status_code == 401


@pytest.mark.parametrize("nxt", ["//evil.example", "https://evil.example", "\\\\evil", "/\x00x", "javascript:x"])
def test_login_next_never_leaves_the_server(make_client: Callable[..., Any], nxt: str) -> None:
    c = make_client(token=TOKEN)
    page = c.get("/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = c.post(
        "/login",
        content=urllib.parse.urlencode({"token": TOKEN, "csrf_token": csrf, "next": nxt}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/"


def test_state_changing_posts_need_the_csrf_token_without_a_bearer(make_client: Callable[..., Any]) -> None:
    c = make_client()
    for url in ("/api/backtest", "/api/data/import-sample", "/logout"):
        r = c.post(url, json={})
        assert r.status_code == 403, url
        assert "CSRF" in r.json()["error"]
        assert c.post(url, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    # the pure computations are open (they change nothing)
    assert c.get("/api/calc", params={"instrument": "binance:BTCUSD_PERP"}).status_code == 422
    t = make_client(token=TOKEN)
    r = t.post("/api/backtest", json={"run": "runs/nope.yaml"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 422  # a Bearer client (no browser) needs no CSRF token


def test_every_response_carries_the_security_headers(make_client: Callable[..., Any]) -> None:
    c = make_client()
    for url in ("/plan", "/api/files", "/api/plan?file=../x.yaml", "/nope"):
        r = c.get(url)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_pages_load_nothing_from_the_internet(make_client: Callable[..., Any]) -> None:
    c = make_client()
    for page in ("/plan", "/calc", "/backtests", "/stress", "/data", "/book", "/docs"):
        html = c.get(page).text
        assert "https://" not in html and "//cdn" not in html, page
    js = c.get("/static/plotly.min.js")
    assert (
        js.status_code == 200
        and len(js.content) > 1_000_000
        and js.headers["content-type"].startswith("text/javascript")
    )
    for bad in ("../app.py", "..%2Fapp.py", "nope.js", "app.py", "%2e%2e%2fsettings.py"):
        assert c.get(f"/static/{bad}").status_code in (404, 422)


# ------------------------------------------------------------------------------------------------ trading


def test_trading_routes_exist_only_with_allow_trading(make_client: Callable[..., Any], tmp_path: Path) -> None:
    book = init_paper_book(tmp_path)
    off = make_client(books=(book,))
    csrf = off.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
    for action in ("rebalance", "halt", "resume"):
        r = off.post(f"/api/book/paper/{action}", headers={"X-CSRF-Token": csrf})
        assert r.status_code in (404, 405), action
    assert "btn-rebalance" not in off.get("/book/paper").text
    assert all("/rebalance" not in p for p in off.get("/openapi.json").json()["paths"])

    on = make_client(books=(book,), allow_trading=True)
    csrf = on.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
    assert "btn-rebalance" in on.get("/book/paper").text
    assert on.post("/api/book/paper/rebalance").status_code == 403  # CSRF
    r = on.post("/api/book/paper/rebalance", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["dry_run"] is False and [x["status"] for x in doc["results"] if "client_id" in x] == ["filled"]
    st = on.get("/api/book/paper").json()
    assert st["accounts"][0]["positions"][0]["contracts"] == 200.0
    again = on.post("/api/book/paper/rebalance", headers={"X-CSRF-Token": csrf}).json()
    assert again["orders"] == [] and again["results"] == []
    r = on.post("/api/book/paper/halt", params={"reason": "bad\nline"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and "control characters" in r.json()["error"]
    r = on.post("/api/book/paper/halt", params={"reason": "web test"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert on.get("/api/book/paper").json()["accounts"][0]["halted"] is True
    r = on.post("/api/book/paper/resume", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["was_halted"] is True
    assert on.post("/api/book/nope/rebalance", headers={"X-CSRF-Token": csrf}).status_code == 404


# ------------------------------------------------------------------------------------------------ keys


KEY = "PHWEBSENTINELKEY0123456789"
SECRET = "PHWEBSENTINELSECRET987654"


@pytest.mark.parametrize("venue_up", [True, False])
def test_no_key_or_secret_reaches_the_browser(
    make_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, venue_up: bool
) -> None:
    """A live trading book whose keys are in the environment, on the fake exchange started with those keys (so every
    request to it is really signed with them) or on an unreachable venue: every page and API answer, the trading
    actions and the refusals included, is free of the values in any form (plain, URL-encoded, base64, hex)."""
    import base64
    import contextlib

    from perphedge.exchange.credentials import register_secret
    from perphedge.exchange.fake import FakeExchange
    from tests.conftest import sample_dir

    monkeypatch.setenv("WEB_KEY", KEY)
    monkeypatch.setenv("WEB_SECRET", SECRET)
    monkeypatch.setenv("PERPHEDGE_LOOKUP_SETTLE_S", "0.1")
    forms = []
    for v in (KEY, SECRET):
        raw = v.encode()
        forms += [v, urllib.parse.quote(v), base64.b64encode(raw).decode().rstrip("="), raw.hex(), raw.hex().upper()]
    venue = (
        FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 1e5, "BTC": 2.0})
        if venue_up
        else contextlib.nullcontext()
    )
    with venue as fx:
        if fx is not None:
            fx.marks.update({"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0})
        monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", fx.url if fx is not None else "http://127.0.0.1:9")
        book = tmp_path / "live.book.yaml"
        r = run_cli(
            "book", "init", str(book), "--portfolio", str(Path(__file__).parents[2] / "examples" / "altcoins.yaml"),
            "--exchange", "binance_coinm", "--key-env", "WEB_KEY", "--secret-env", "WEB_SECRET", "--sandbox",
            "--trading", home=home(),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        register_secret(KEY)
        register_secret(SECRET)
        c = make_client(books=(book,), allow_trading=True)
        csrf = c.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
        urls = ("/book/live", "/api/book/live", "/api/book/live/journal", "/api/book/live/version", "/api/book",
                "/plan", "/calc", "/backtests", "/stress", "/data", "/docs", "/openapi.json", "/api/files")  # fmt: skip
        answers = [c.get(u) for u in urls]
        answers += [
            c.post(f"/api/book/live/{a}", headers={"X-CSRF-Token": csrf}) for a in ("rebalance", "halt", "resume")
        ]
        answers += [c.get(u) for u in ("/api/book/live", "/api/book/live/journal")]
        if venue_up:
            status = c.get("/api/book/live")
            assert status.status_code == 200, status.text
            assert status.json()["accounts"][0]["kind"] == "exchange"  # the venue was read: signed requests
            assert answers[-5].status_code == 200, answers[-5].text  # the rebalance went to the venue
        for r in answers:
            text = r.content.decode("latin-1")
            assert not [f for f in forms if f in text], (r.url, r.status_code)
            assert "Traceback" not in text


# ------------------------------------------------------------------------------------------------ files


TRAVERSALS = [
    "../secret.yaml",
    "examples/../../secret.yaml",
    "/etc/passwd",
    "/tmp/x.yaml",
    "~/x.yaml",
    "..",
    ".",
    "examples//altcoins.yaml",
    "examples/./altcoins.yaml",
    "examples\\..\\..\\secret.yaml",
    "C:/x.yaml",
    "examples/altcoins.yaml\x00.txt",
    "examples/\x1b[31m.yaml",
    "%2e%2e/secret.yaml",
    "..%2fsecret.yaml",
    "%252e%252e/secret.yaml",
    "",
    " ",
    "x" * 1000 + ".yaml",
    "link-out.yaml",
    "examples",
    "dir.yaml",
    "fifo.yaml",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_files_outside_the_served_folders_are_refused(
    make_client: Callable[..., Any], served: Path, tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("holdings: [{asset: SOL, value_usd: 1}]\nprices: {SOL: 1}\nname: TOPSECRET\n", encoding="utf-8")
    (served / "link-out.yaml").symlink_to(secret)
    (served / "dir.yaml").mkdir()
    os.mkfifo(served / "fifo.yaml")
    c = make_client()
    for url, key in (("/api/plan", "file"), ("/api/stress", "file")):
        r = c.get(url, params={key: name})
        assert r.status_code == 422, (url, name, r.text)
        assert "TOPSECRET" not in r.text and "Traceback" not in r.text
    csrf = c.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
    r = c.post("/api/backtest", json={"run": name}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and "TOPSECRET" not in r.text
    # raw, un-normalised URLs too
    raw = c.get("/api/plan?file=" + name.replace("\x00", "%00").replace(" ", "%20").replace("\x1b", "%1b"))
    assert raw.status_code in (400, 422) and "TOPSECRET" not in raw.text


def test_a_symlink_that_stays_inside_is_followed(make_client: Callable[..., Any], served: Path) -> None:
    (served / "alias.yaml").symlink_to(served / "examples" / "altcoins.yaml")
    r = make_client().get("/api/plan", params={"file": "alias.yaml"})
    assert r.status_code == 200 and r.json()["portfolio"]["value_usd"] > 0


def test_no_folder_served_means_no_file(make_client: Callable[..., Any]) -> None:
    r = make_client(runs=Folders(())).get("/api/plan", params={"file": "examples/altcoins.yaml"})
    assert r.status_code == 422 and "--runs" in r.json()["error"]


def test_folders_must_exist(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "nope", tmp_path / "f"):
        with pytest.raises(ConfigError, match="--runs"):
            Folders.of((bad,), "--runs")


_PIECES = [*"./\\~:%2eE\x00 ab", "..", "%2e", "%00", "in", "a", "/", "../"]


@pytest.fixture(scope="module")
def one_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    inside = root / "in"
    inside.mkdir()
    (inside / "a.yaml").write_text("x: 1\n")
    (inside / "in").mkdir()
    (inside / "in" / "a.yaml").write_text("x: 1\n")
    (root / "a.yaml").write_text("x: 1\n")
    (root / "outside.yaml").write_text("x: 1\n")
    return inside


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
def test_any_relative_name_stays_inside(one_root: Path, name: str) -> None:
    """Whatever the name, the resolved file (if any) is inside the served folder, or one line refuses it."""
    folders = Folders.of((one_root,), "--runs")
    try:
        path = folders.resolve(name + ".yaml")
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert one_root.resolve() in path.parents
    safe_relative(name + ".yaml")


@pytest.mark.parametrize(
    "host_header",
    ["localhost:1@evil.example", "127.0.0.1:8765, evil.example", "127.0.0.1:x", "localhost evil", "[::1", "::1"],
)
def test_a_malformed_host_is_refused_without_a_token(make_client: Callable[..., Any], host_header: str) -> None:
    """Only an exact ``name[:port]`` / ``[v6][:port]`` counts: a loopback name followed by junk was let through."""
    c = make_client()
    assert c.get("/api/files", headers={"host": host_header}).status_code == 421


@pytest.mark.parametrize("length", [b"\xb2", b"\xb9\xb2", b"-1", b"1e3", b" "])
def test_a_content_length_that_is_not_ascii_digits_is_a_400(make_client: Callable[..., Any], length: bytes) -> None:
    """A latin-1 superscript digit passed str.isdigit() and then int() raised inside the middleware (a 500)."""
    import asyncio

    app = make_client().app
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/calc", "raw_path": b"/api/calc", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8765"), (b"content-length", length)],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8765),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 400, sent
    assert b"invalid Content-Length" in sent[1]["body"]
