"""Hypothesis: mutated cross-account files (``calc --account``) are refused on one line or computed cleanly.

Every leaf of a good account file is replaced by a hostile value (boolean, text, null, NaN, ±inf,
zero, a negative, 1e308, 1e-300, a list, a mapping), a key is deleted or an unknown key added. The
outcome is a :class:`PerphedgeError` of one line, or an account whose JSON document serialises
without NaN or infinity — never another exception.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.errors import PerphedgeError
from perphedge.specs import InstrumentRegistry, bundled_instruments
from perphedge.usecases.account import account_document, load_account
from tests.conftest import REPO

REGISTRY = InstrumentRegistry(bundled_instruments())
BASE = yaml.safe_load((REPO / "examples" / "accounts" / "binance-usdm-cross.yaml").read_text(encoding="utf-8"))
HOSTILE: list[Any] = [
    True,
    False,
    None,
    "text",
    "150",
    "",
    math.nan,
    math.inf,
    -math.inf,
    0,
    -1,
    -0.0,
    1e308,
    1e-300,
    [],
    [1, 2],
    {},
    {"a": 1},
    10**30,
    "binance:ETHUSDT",
    "short",
    "bybit:BTCUSDT",
    "binance:BTCUSD_PERP",
    "okx",
    "hyperliquid",
]


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _leaves(v, (*path, i))
    return out


PATHS = _leaves(BASE)


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    node = doc
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(PATHS), st.sampled_from(HOSTILE), st.sampled_from(["replace", "delete", "unknown"]))
def test_mutated_account_file(tmp_path: Path, path: tuple[Any, ...], value: Any, how: str) -> None:
    doc = copy.deepcopy(BASE)
    added = False
    if how == "unknown":
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict):
            parent["surprise"] = value
            added = True
    else:
        _set(doc, path, value, how == "delete")
    f = tmp_path / "acct.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    try:
        account = load_account(f, REGISTRY)
    except PerphedgeError as exc:
        text = str(exc)
        assert "\n" not in text and text.strip(), text
        assert str(f) in text, text
        return
    out = json.dumps(account_document(account), allow_nan=False)
    assert "NaN" not in out and "Infinity" not in out
    assert not added, "an unknown key was accepted"
    if how == "replace" and value is None:
        assert path[-1] in ("mmr", "maintenance_amount"), path  # optional fields: null is their default
    elif how == "replace" and (
        isinstance(value, bool | str | list | dict) or (isinstance(value, float) and not math.isfinite(value))
    ):
        # no coercion: text, booleans, NaN, infinities, lists and mappings only where the field is text
        assert path[-1] in ("instrument", "venue", "side"), (path, value)
