"""Shared fixtures: where the shared reference and sample data live, and how tests use them.

Tests that need ``../shared`` skip with a reason when it is absent (a user's own clone) but
fail under ``CI=true``, where it is always present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perphedge.specs import InstrumentRegistry, bundled_instruments

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _shared_dir(env: str, default: Path) -> Path:
    return Path(os.environ.get(env, str(default)))


def require_path(path: Path, what: str) -> Path:
    """Return ``path`` if it exists; skip (or fail under CI=true) otherwise."""
    if path.exists():
        return path
    msg = f"{what} not found at {path}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{msg}: CI must have ../shared beside the clone")
    pytest.skip(f"{msg} (set its environment variable to run these tests)")


def reference_dir() -> Path:
    return _shared_dir("PERPHEDGE_REFERENCE", SHARED / "reference")


def load_vectors() -> list[dict[str, Any]]:
    path = reference_dir() / "contract_vectors.json"
    if not path.exists():
        return []
    return list(json.loads(path.read_text())["vectors"])


@pytest.fixture(scope="session")
def registry() -> InstrumentRegistry:
    return InstrumentRegistry(bundled_instruments())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's ~/.perphedge during tests."""
    monkeypatch.setenv("PERPHEDGE_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("PERPHEDGE_SPECS", raising=False)


def sample_dir() -> Path:
    """The sample history (``PERPHEDGE_SAMPLE_DATA``, default ``../shared/data``); skip or fail if absent."""
    return require_path(_shared_dir("PERPHEDGE_SAMPLE_DATA", SHARED / "data"), "sample data")


@pytest.fixture(scope="session")
def sample_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the whole sample imported once (read it with read_only=True)."""
    from perphedge.data.importer import parse_sample
    from perphedge.data.store import MarketStore
    from perphedge.usecases.data import import_frames

    root = sample_dir()
    path = tmp_path_factory.mktemp("store") / "sample.duckdb"
    with MarketStore(path) as store:
        import_frames(store, parse_sample(root), source=str(root))
    return path


def run_cli(
    *args: str, home: Path | None = None, cwd: Path = REPO, columns: int = 150, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``perphedge`` console script, as a user does, with an isolated PERPHEDGE_HOME."""
    full = dict(os.environ, COLUMNS=str(columns))
    if home is not None:
        full["PERPHEDGE_HOME"] = str(home)
    full.update(env or {})
    return subprocess.run(
        [str(Path(sys.executable).parent / "perphedge"), *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture
def store_home(sample_store_path: Path, tmp_path: Path) -> Path:
    """A PERPHEDGE_HOME holding a copy of the imported sample store."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "market.duckdb").write_bytes(sample_store_path.read_bytes())
    return home
