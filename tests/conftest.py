"""Shared fixtures: where the reference vectors and the sample data live, and how tests use them.

Nothing here needs ``../shared``: the reference vectors are read from the repository's copy
(``tests/golden/data/``), and the sample history is ``PERPHEDGE_SAMPLE_DATA`` / ``../shared/data``
when present, else the copy bundled with the package rebuilt byte for byte (hash-checked) in a
temporary directory. The tests that compare the repository's copies with ``../shared`` run against
it when it is present and against the recorded hashes otherwise.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from perphedge.specs import InstrumentRegistry, bundled_instruments

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
GOLDEN_DATA = REPO / "tests" / "golden" / "data"


def _shared_dir(env: str, default: Path) -> Path:
    return Path(os.environ.get(env, str(default)))


def shared_path(env: str, default: Path) -> Path | None:
    """``$env`` or ``default`` when it exists; None when ``../shared`` is simply absent (a user's clone).

    A variable that is set but names nothing is a broken set-up, and fails (so does a missing
    ``../shared`` under ``CI=true``, where it is always present).
    """
    path = _shared_dir(env, default)
    if path.exists():
        return path
    if env in os.environ:
        pytest.fail(f"{env}={os.environ[env]} does not exist")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{path} not found: CI must have ../shared beside the clone")
    return None


def reference_dir() -> Path | None:
    """``../shared/reference`` (``PERPHEDGE_REFERENCE``) when present, to compare the repository's copies with."""
    return shared_path("PERPHEDGE_REFERENCE", SHARED / "reference")


def load_vectors() -> list[dict[str, Any]]:
    """The contract reference vectors, from the repository's copy (``tests/golden/data``)."""
    return list(json.loads((GOLDEN_DATA / "contract_vectors.json").read_text(encoding="utf-8"))["vectors"])


@pytest.fixture(scope="session")
def registry() -> InstrumentRegistry:
    return InstrumentRegistry(bundled_instruments())


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's ~/.perphedge during tests."""
    monkeypatch.setenv("PERPHEDGE_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("PERPHEDGE_SPECS", raising=False)


def shared_sample_dir() -> Path | None:
    """``../shared/data`` (``PERPHEDGE_SAMPLE_DATA``) when present, else None."""
    return shared_path("PERPHEDGE_SAMPLE_DATA", SHARED / "data")


_BUNDLED: list[Path] = []


def bundled_sample_dir() -> Path:
    """The package's bundled sample rebuilt in a temporary directory (once per session): byte-identical CSVs."""
    if not _BUNDLED:
        from perphedge.data.sample import materialise

        tmp = Path(tempfile.mkdtemp(prefix="perphedge-test-sample-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _BUNDLED.append(materialise(tmp / "data"))
    return _BUNDLED[0]


def sample_dir() -> Path:
    """The sample history laid out like ``../shared/data``: the real one when present, else the bundled copy."""
    return shared_sample_dir() or bundled_sample_dir()


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
