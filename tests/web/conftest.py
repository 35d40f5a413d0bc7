"""Fixtures of the web tests: a served folder with the example portfolios and run files, a paper book, a client."""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli

with warnings.catch_warnings():  # starlette's notice that a future TestClient wants httpx2 (not ours to act on)
    warnings.simplefilter("ignore")
    import fastapi.testclient  # noqa: F401

#: Host header of a request to the default bind address.
BASE = "http://127.0.0.1:8765"


def home() -> Path:
    return Path(os.environ["PERPHEDGE_HOME"])


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A folder with the example portfolios (``examples/``) and run files (``runs/``), laid out like the repo so
    the run files' ``../examples/...`` references hold."""
    root = tmp_path / "served"
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copytree(REPO / "runs", root / "runs")
    return root


def init_paper_book(folder: Path, name: str = "paper") -> Path:
    """``perphedge book init`` of a paper book on the example portfolio (as the book tests do)."""
    book = folder / f"{name}.book.yaml"
    r = run_cli(
        "book", "init", str(book), "--portfolio", str(REPO / "examples" / "altcoins.yaml"), "--paper", "binance",
        home=home(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return book


@pytest.fixture
def make_client(served: Path, tmp_path: Path) -> Callable[..., Any]:
    """``make_client(**WebConfig fields)`` → a TestClient of the app (runs: the served folder)."""
    from fastapi.testclient import TestClient

    from perphedge.web import Folders, WebConfig, create_app

    def make(*, base_url: str = BASE, **kwargs: Any) -> TestClient:
        kwargs.setdefault("runs", Folders.of((served,), "--runs"))
        kwargs.setdefault("out", tmp_path / "results")
        return TestClient(create_app(WebConfig(**kwargs)), base_url=base_url)

    return make
