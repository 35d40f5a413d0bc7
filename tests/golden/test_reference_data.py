"""The repository's copies of ``../shared/reference`` (``tests/golden/data``) are faithful.

Each copy must equal ``../shared/reference`` when it is present, and always match the SHA-256
recorded in ``SHA256SUMS``: the golden tests run in any clone, on the reference's exact bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import GOLDEN_DATA, reference_dir

SUMS = dict(
    reversed(line.split(None, 1)) for line in (GOLDEN_DATA / "SHA256SUMS").read_text().splitlines() if line.strip()
)


def test_sha256sums_lists_every_copy() -> None:
    copies = {p.name for p in GOLDEN_DATA.iterdir() if p.is_file() and p.name not in ("SHA256SUMS", "README.md")}
    assert set(SUMS) == copies == {"contract_vectors.json", "worked_examples.md", "cross_margin_vectors.json"}


@pytest.mark.parametrize("name", ["contract_vectors.json", "worked_examples.md"])
def test_copy_matches_its_recorded_hash(name: str) -> None:
    assert hashlib.sha256((GOLDEN_DATA / name).read_bytes()).hexdigest() == SUMS[name]


@pytest.mark.parametrize("name", ["contract_vectors.json", "worked_examples.md"])
def test_copy_equals_shared_reference_when_present(name: str) -> None:
    shared = reference_dir()
    ours = (GOLDEN_DATA / name).read_bytes()
    if shared is None:  # a user's clone: the recorded hash (above) is the reference
        assert hashlib.sha256(ours).hexdigest() == SUMS[name]
        return
    assert ours == (Path(shared) / name).read_bytes(), f"tests/golden/data/{name} differs from {shared / name}"
