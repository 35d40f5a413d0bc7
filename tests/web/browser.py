"""Real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright's bundled driver; no browser is
downloaded) against a real uvicorn server on a free port in a thread.

Without ``/usr/bin/chromium`` the browser tests are skipped with the reason, except under ``CI=true`` where they
must run (``.ci/run`` installs it) and fail instead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("PERPHEDGE_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("PERPHEDGE_SCREENSHOTS", "") == "1"
IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def require_chromium() -> None:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser tests"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(cfg: Any) -> Iterator[str]:
    """uvicorn serving ``create_app(cfg)`` on 127.0.0.1:<cfg.port> in a thread; yields the base URL."""
    import uvicorn

    from perphedge.web import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=cfg.port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{cfg.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def shot(page: Any, name: str) -> None:
    """With PERPHEDGE_SCREENSHOTS=1, the page's screenshot to docs/img/web_<name>.png."""
    if SCREENSHOTS:
        IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMG / f"web_{name}.png"), full_page=True)


def wait_until(page: Any, expression: str, *, timeout_s: float = 60.0, poll_s: float = 0.05) -> Any:
    """Poll ``page.evaluate(expression)`` until it is truthy (``wait_for_function`` evaluates strings inside the
    page, which the pages' Content-Security-Policy forbids; ``evaluate`` does not). Returns the value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {expression}")
        time.sleep(poll_s)


def wait_changed(page: Any, key: str, before: Any, *, timeout_s: float = 60.0) -> None:
    """Wait until ``document.body.dataset[key]`` differs from ``before``."""
    wait_until(page, f"(document.body.dataset.{key} || '') !== {json.dumps(before or '')}", timeout_s=timeout_s)
