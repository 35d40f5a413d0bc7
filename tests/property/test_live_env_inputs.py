"""Any text in PERPHEDGE_RATE_LIMIT_MS / PERPHEDGE_EXCHANGE_TIMEOUT_MS, PERPHEDGE_EXCHANGE_URL or a book file's
YAML is either taken or refused with ConfigError: never another exception, never a hang (issue 11 inputs)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.exchange.ccxt_source import ENV_MS_MAX, _env_number, check_url
from perphedge.files import load_yaml_text

_TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(_TEXT, st.floats(allow_nan=True).map(repr), st.integers().map(str)))
def test_env_milliseconds_are_bounded_or_refused(value: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERPHEDGE_RATE_LIMIT_MS", value)
        try:
            got = _env_number("PERPHEDGE_RATE_LIMIT_MS")
        except ConfigError as exc:
            assert "PERPHEDGE_RATE_LIMIT_MS" in str(exc) and "\n" not in str(exc)
            return
    assert got is None or (math.isfinite(got) and 0 < got <= ENV_MS_MAX)


@settings(max_examples=300, deadline=None)
@given(
    url=st.one_of(
        _TEXT,
        st.builds(
            lambda scheme, host, port, tail: f"{scheme}://{host}{port}{tail}",
            st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
            st.sampled_from(["127.0.0.1", "[::1]", "[::1", "localhost", "", "u:p@h", "ex ample"]),
            st.sampled_from(["", ":0", ":8080", ":65536", ":abc", ":-1"]),
            _TEXT,
        ),
    )
)
def test_an_exchange_url_is_checked_or_refused(url: str) -> None:
    try:
        assert check_url(url, "PERPHEDGE_EXCHANGE_URL") == url
    except ConfigError as exc:
        assert "PERPHEDGE_EXCHANGE_URL" in str(exc)
        return
    assert not any(ch.isspace() for ch in url) and "@" not in url.split("/")[2]


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.sampled_from(["1", "a", "*a", "null"]),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
            st.lists(inner, max_size=3).map(lambda xs: "{" + ", ".join(f"k{i}: {x}" for i, x in enumerate(xs)) + "}"),
        ),
        max_leaves=8,
    )
)
def test_yaml_with_aliases_loads_acyclic_or_is_refused(body: str) -> None:
    text = f"x: &a {body}\n" if "*a" in body else f"a: &a [1]\nx: {body}\n"
    try:
        doc = load_yaml_text(text, "f.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("f.yaml: ")
        return
    repr(doc)  # an acyclic document can be walked
