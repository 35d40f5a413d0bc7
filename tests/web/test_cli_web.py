"""``perphedge web`` through the real CLI: it prints the URL it serves, answers, and stops cleanly on Ctrl-C; bad
options are one line each (issue 12, item 1)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.web.conftest import home

EXE = str(Path(sys.executable).parent / "perphedge")


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    import os

    proc = subprocess.Popen(
        [EXE, "web", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("perphedge web: serving http://"), (line, proc.stderr.read() if proc.poll() else "")
    return proc, line.split()[3]


def test_web_serves_the_url_it_prints_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc, url = start("--runs", str(REPO / "examples"), "--out", str(tmp_path / "out"))
    try:
        with urllib.request.urlopen(url + "api/plan?file=altcoins.yaml", timeout=30) as r:
            doc = json.loads(r.read())
        assert doc["schema"] == "perphedge.plan/1"
        with urllib.request.urlopen(url + "plan", timeout=30) as r:
            assert b"<textarea" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "perphedge web: stopped" in out
    assert "Traceback" not in err


def test_token_from_the_environment(tmp_path: Path) -> None:
    token = "env-token-0123456789abcdef"
    proc, url = start("--host", "127.0.0.1", env={"PERPHEDGE_WEB_TOKEN": token})
    try:  # the banner says a token is needed; the token itself is never printed
        req = urllib.request.Request(url + "api/files")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=30)
        assert exc.value.code == 401
        req = urllib.request.Request(url + "api/files", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["files"] == []
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host", "0.0.0.0"), "invalid `--host`: 0.0.0.0 is reachable from other machines"),
        (("--host", "::"), "set a token"),
        (("--port", "70000"), "invalid `--port`: must be 0 to 65535"),
        (("--port", "x"), "--port"),
        (("--port", "-1"), "invalid `--port`"),
        (("--token", "short"), "invalid `--token`: give at least 16 characters"),
        (("--runs", "/nonexistent-folder"), "invalid `--runs`: /nonexistent-folder is not a folder"),
        (("--runs", str(REPO / "README.md")), "is not a folder"),
        (("--book", "/nonexistent.book.yaml"), "invalid `--book`"),
        (("--book", str(REPO)), "invalid `--book`"),
        (("--book", str(REPO / "examples" / "altcoins.yaml")), "altcoins.yaml"),
        (("--store", ""), "invalid `--store`"),
        (("--out", str(REPO / "README.md")), "invalid `--out`"),
        (("--host", "no-such-host.invalid"), "invalid `--host`"),
        # an empty path is '.', which served the current directory (--runs, --out) instead of refusing
        (("--runs", ""), "invalid `--runs`: must be a path, was ''"),
        (("--runs", "  "), "invalid `--runs`"),
        (("--out", ""), "invalid `--out`: must be a path, was ''"),
        (("--book", ""), "invalid `--book`: must be a path, was ''"),
    ],
)
def test_bad_options_are_one_line(args: tuple[str, ...], message: str) -> None:
    r = run_cli("web", *args, home=home())
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: ") and message in lines[0], r.stderr


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = run_cli("web", "--port", str(s.getsockname()[1]), home=home())
    finally:
        s.close()
    assert r.returncode == 2 and "cannot listen on 127.0.0.1" in r.stderr, r.stderr


def test_two_books_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "x.book.yaml").write_text("book: 1\n")
    r = run_cli("web", "--book", str(tmp_path / "a" / "x.book.yaml"), "--book", str(tmp_path / "b" / "x.book.yaml"),
                home=home())  # fmt: skip
    assert r.returncode == 2 and "would both be served as 'x'" in r.stderr
