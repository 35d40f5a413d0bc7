"""Hypothesis: mutations of every example portfolio, run and grid file are refused or keep their meaning.

Each mutation of ``examples/*.yaml`` and ``runs/*.yaml`` (a duplicated key, a scalar replaced by a
boolean, text, null, NaN, a negative, zero, 1e308, a list or a mapping, a deleted key, an unknown
key, a date in another format, a harmless reformatting) goes through the functions the CLI calls
(in process, for speed). The outcome is either acceptance or a :class:`PerphedgeError` of one line
— never any other exception. Mutations that must be refused (duplicates, unknown keys, booleans or
text for numbers, NaN, non-ISO dates, a list for a scalar) are refused; mutations that change
nothing (comments, quoting, flow style) give the same parsed document; an accepted replacement is
taken literally (no coercion of ``true`` into 1 or ``"150"`` into 150).
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.errors import PerphedgeError
from perphedge.files import YamlList, YamlMap, load_yaml_text, plain
from perphedge.specs import InstrumentRegistry, bundled_instruments
from tests.conftest import REPO, run_cli

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
RUNS = sorted((REPO / "runs").glob("*.yaml"))
FILES = EXAMPLES + RUNS
REGISTRY = InstrumentRegistry(bundled_instruments())

REFUSE, SAME, ANY = "refuse", "same", "any"


def kind_of(path: Path) -> str:
    if path.parent.name == "examples":
        return "portfolio"
    return "grid" if "grid" in yaml.safe_load(path.read_text()) else "run"


def absolute_paths(doc: Any, origin: Path) -> Any:
    """Make the relative ``portfolio:`` / ``base:`` paths absolute so the mutated copy can live anywhere."""
    if isinstance(doc, dict):
        for key in ("portfolio", "base"):
            if isinstance(doc.get(key), str) and doc[key].endswith(".yaml"):
                doc[key] = str((origin.parent / doc[key]).resolve())
    return doc


# ------------------------------------------------------------------------------------------ validators


def _plannable(path: Path) -> bool:
    from perphedge.usecases.plan import plan_from_file

    try:
        plan_from_file(str(path), registry=REGISTRY)
    except PerphedgeError:
        return False
    return True


PLANNABLE = {p: _plannable(p) for p in EXAMPLES}


def validate(kind: str, path: Path, plan: bool) -> Any:
    """What the CLI does with the file before it needs market data; returns a comparable value."""
    if kind == "portfolio":
        from perphedge.config import load_portfolio_file
        from perphedge.usecases.plan import plan_portfolio

        pfile = load_portfolio_file(path)
        if plan:
            plan_portfolio(pfile, source=str(path), registry=REGISTRY)
        return pfile.model_dump()
    if kind == "run":
        from perphedge.usecases.backtest import load_run

        run_cfg, pfile, _, _ = load_run(path)
        return run_cfg.model_dump(), pfile.model_dump()
    from perphedge.config import parse_portfolio, parse_run, read_yaml
    from perphedge.usecases.sweep import expand, load_grid

    grid_doc, base_doc, _ = load_grid(path)
    out = []
    for overrides, run_doc in expand(grid_doc["grid"], base_doc):
        run_cfg = parse_run(run_doc, f"{path}: {overrides}")
        pdoc, _ = read_yaml(run_cfg.portfolio) if isinstance(run_cfg.portfolio, str) else (run_cfg.portfolio, b"")
        out.append((run_cfg.model_dump(), parse_portfolio(pdoc, "portfolio").model_dump()))
    return {k: v for k, v in grid_doc.items() if k != "base"}, out


# ------------------------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Mutation:
    name: str
    text: str
    expect: str  # REFUSE, SAME or ANY
    path: tuple[Any, ...] = ()
    value: Any = None
    literal: bool = False  # when accepted, the value at `path` must be exactly `value`


def scalars(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out: list[tuple[tuple[Any, ...], Any]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        if isinstance(value, dict | list):
            out += scalars(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


def mappings(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if isinstance(doc, dict) else []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        if isinstance(value, dict | list):
            out += mappings(value, (*prefix, key))
    return out


def get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def dump(doc: Any, flow: bool | None = False) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=flow, allow_unicode=True)


REPLACEMENTS: list[Any] = [
    True,
    False,
    "text",
    "150",
    None,
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -0.5,
    0,
    1e308,
    -1e308,
    [],
    [1],
    {},
    {"a": 1},
]
FREE_KEYS = {"rank_by", "top", "descending"}  # grid ranking options: validated by the sweep itself


def replace_scalar(kind: str, doc: Any, path: tuple[Any, ...], new: Any) -> Mutation:
    old = get(doc, path)
    mutated = copy.deepcopy(doc)
    get(mutated, path[:-1])[path[-1]] = new
    numeric_old = isinstance(old, int | float) and not isinstance(old, bool)
    if kind == "grid" and path[0] in FREE_KEYS:
        expect = ANY
    elif isinstance(new, float) and not math.isfinite(new):
        expect = REFUSE
    elif isinstance(new, list | dict):
        expect = REFUSE  # no field takes either a scalar or a list/mapping
    elif (isinstance(new, bool) and not isinstance(old, bool)) or (isinstance(new, str) and numeric_old):
        expect = REFUSE  # booleans and text are not numbers
    else:
        expect = ANY
    literal = kind != "grid" and expect == ANY and new is not None and not isinstance(new, list | dict)
    return Mutation(f"replace {path} {old!r} -> {new!r}", dump(mutated), expect, path, new, literal)


def delete_key(doc: Any, path: tuple[Any, ...]) -> Mutation:
    mutated = copy.deepcopy(doc)
    del get(mutated, path[:-1])[path[-1]]
    return Mutation(f"delete {path}", dump(mutated), ANY)


def add_key(kind: str, doc: Any, at: tuple[Any, ...]) -> Mutation:
    mutated = copy.deepcopy(doc)
    get(mutated, at)["zz_unknown_key"] = 1
    # a price of an asset not held is allowed (it may price a proxy)
    expect = ANY if at and at[-1] == "prices" else REFUSE
    return Mutation(f"add key at {at}", dump(mutated), expect)


_BLOCK_KEY = re.compile(r"^(\s*)(- )?([A-Za-z_][\w.]*):(\s.*)?$")
_FLOW = re.compile(r"\{([^{}]+)\}")


def duplicate_line_key(text: str, rng: random.Random) -> Mutation | None:
    lines = text.splitlines()
    candidates = [i for i, line in enumerate(lines) if _BLOCK_KEY.match(line)]
    if not candidates:
        return None
    i = rng.choice(candidates)
    m = _BLOCK_KEY.match(lines[i])
    assert m is not None
    indent = m.group(1) + ("  " if m.group(2) else "")
    copy_line = f"{indent}{m.group(3)}:{m.group(4) or ''}"
    # insert after the whole block of this key (its more-indented lines) so the document stays well-formed
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > len(indent)):
        j += 1
    out = [*lines[:j], copy_line, *lines[j:]]
    return Mutation(f"duplicate key {m.group(3)} (line {i + 1})", "\n".join(out) + "\n", REFUSE)


def duplicate_flow_key(text: str, rng: random.Random) -> Mutation | None:
    found = [m for m in _FLOW.finditer(text) if ":" in m.group(1)]
    if not found:
        return None
    m = rng.choice(found)
    first = m.group(1).split(",")[0].strip()
    new = text[: m.start()] + "{" + first + ", " + m.group(1) + "}" + text[m.end() :]
    return Mutation(f"duplicate flow key {first}", new, REFUSE)


DATE_FORMATS = [
    ("{m:02d}/{d:02d}/{y}", REFUSE),
    ("{d:02d}/{m:02d}/{y}", REFUSE),
    ("{y}{m:02d}{d:02d}", REFUSE),
    ("{y}-13-{d:02d}", REFUSE),
    ("{y}-{m:02d}-32", REFUSE),
    ("{y}-{m}-{d}", REFUSE),
    ("{y}/{m:02d}/{d:02d}", REFUSE),
    ("{y}-{m:02d}-{d:02d}T00:00:00", REFUSE),
    ("{y}-{m:02d}-{d:02d} 12:00", REFUSE),
    ("1609459200", REFUSE),
    ("'{y}-{m:02d}-{d:02d}'", SAME),
    ('"{y}-{m:02d}-{d:02d}"', SAME),
]
_DATE = re.compile(r"(?<![\d'\"])(\d{4})-(\d{2})-(\d{2})(?![\d'\"])")


def change_date(text: str, rng: random.Random) -> Mutation | None:
    found = list(_DATE.finditer(text))
    if not found:
        return None
    m = rng.choice(found)
    fmt, expect = rng.choice(DATE_FORMATS)
    y, mo, d = (int(g) for g in m.groups())
    new = fmt.format(y=y, m=mo, d=d)
    if new == m.group(0):
        expect = SAME  # e.g. {y}-{m}-{d} of 2025-12-31
    return Mutation(f"date {m.group(0)} -> {new}", text[: m.start()] + new + text[m.end() :], expect)


def reformat(doc: Any, text: str, rng: random.Random) -> Mutation:
    choice = rng.randrange(4)
    if choice == 0:
        return Mutation("comment added", "# a comment\n" + text.replace("\n", "  # note\n", 1), SAME)
    if choice == 1:
        return Mutation("flow style", dump(doc, flow=True), SAME)
    if choice == 2:
        return Mutation("block style", dump(doc, flow=False), SAME)
    return Mutation("keys reordered", dump(dict(reversed(list(doc.items())))), SAME)


def normalised(path: Path) -> Any:
    """The file's document as plain data, with absolute paths (the reference every mutation starts from)."""
    return absolute_paths(plain(load_yaml_text(path.read_text(), str(path))), path)


def mutate(path: Path, rng: random.Random) -> Mutation:
    """One random mutation of the file at ``path``."""
    kind = kind_of(path)
    doc = normalised(path)
    base_text = dump(doc)
    op = rng.randrange(8)
    if op == 0:
        m = duplicate_line_key(base_text, rng)
        if m is not None:
            return m
    if op == 1:
        m = duplicate_flow_key(dump(doc, flow=None), rng)
        if m is not None:
            return m
    if op == 2:
        m = change_date(base_text, rng)
        if m is not None:
            return m
    if op == 3:
        keyed = [p for p, _ in scalars(doc) if p and not isinstance(p[-1], int)]
        return delete_key(doc, rng.choice(keyed))
    if op == 4:
        return add_key(kind, doc, rng.choice(mappings(doc)))
    if op == 5:
        return reformat(doc, base_text, rng)
    path_, _ = rng.choice(scalars(doc))
    return replace_scalar(kind, doc, path_, rng.choice(REPLACEMENTS))


def check(path: Path, mutation: Mutation, tmp: Path) -> str:
    """Run one mutation through the validators; returns ``accepted`` or ``refused``; fails on anything else."""
    kind = kind_of(path)
    plan = PLANNABLE.get(path, False)
    reference = tmp / f"reference-{path.name}"
    reference.write_text(dump(normalised(path)))
    original = validate(kind, reference, plan)
    target = tmp / path.name
    target.write_text(mutation.text)
    try:
        got = validate(kind, target, plan)
    except PerphedgeError as exc:
        assert "\n" not in str(exc), f"{mutation.name}: multi-line error {exc}"
        assert mutation.expect != SAME, f"{mutation.name}: a no-op was refused: {exc}\n{mutation.text}"
        if "duplicate" in mutation.name:
            assert "duplicate key" in str(exc), f"{mutation.name}: refused for another reason: {exc}"
        return "refused"
    assert mutation.expect != REFUSE, f"{mutation.name}: accepted\n{mutation.text}"
    if mutation.expect == SAME:
        assert got == original, f"{mutation.name}: meaning changed"
    if mutation.literal:
        dumped = got[0] if kind == "run" else got
        try:
            value = get(dumped, mutation.path)
        except (KeyError, IndexError, TypeError):
            return "accepted"  # e.g. a path inside `hedge` of a run file is merged later
        assert type(value) is type(mutation.value) or (
            isinstance(value, float) and isinstance(mutation.value, int) and not isinstance(mutation.value, bool)
        ), f"{mutation.name}: coerced to {value!r}"
        if not isinstance(value, str):
            assert value == mutation.value, f"{mutation.name}: read as {value!r}"
    return "accepted"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(FILES), st.randoms(use_true_random=False))
def test_mutations_are_refused_or_keep_their_meaning(tmp_path: Path, path: Path, rng: random.Random) -> None:
    check(path, mutate(path, rng), tmp_path)


def test_every_example_file_is_covered() -> None:
    assert len(EXAMPLES) >= 5 and len(RUNS) >= 5
    assert {kind_of(p) for p in FILES} == {"portfolio", "run", "grid"}


@pytest.mark.parametrize(
    "maker",
    [
        duplicate_line_key,
        duplicate_flow_key,
        lambda t, r: change_date(t, r) if _DATE.search(t) else duplicate_line_key(t, r),
    ],
)
def test_text_mutations_apply(maker: Callable[[str, random.Random], Mutation | None]) -> None:
    """The text-level generators find something to mutate in the files (else the property test is hollow)."""
    hits = sum(maker(p.read_text(), random.Random(1)) is not None for p in FILES)
    assert hits >= len(FILES) // 2


# ------------------------------------------------------------------------------- through the real CLI


def _cli_sample(n: int = 15) -> list[tuple[Path, Mutation]]:
    """``n`` mutations that must be refused, drawn with a fixed seed across all files."""
    rng = random.Random(9)
    out: list[tuple[Path, Mutation]] = []
    while len(out) < n:
        path = FILES[len(out) % len(FILES)]
        m = mutate(path, rng)
        if m.expect == REFUSE:
            out.append((path, m))
    return out


@pytest.mark.parametrize("path,mutation", _cli_sample(), ids=lambda x: x.name if isinstance(x, Path) else None)
def test_cli_refuses_mutation_with_one_line(tmp_path: Path, path: Path, mutation: Mutation) -> None:
    target = tmp_path / path.name
    target.write_text(mutation.text)
    kind = kind_of(path)
    store = str(tmp_path / "absent.duckdb")
    args = {
        "portfolio": ["plan", str(target)],
        "run": ["backtest", str(target), "--store", store, "--out", str(tmp_path / "out")],
        "grid": ["sweep", str(target), "--store", store],
    }[kind]
    r = run_cli(*args, home=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (mutation.name, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), (mutation.name, r.stderr)
    assert "no market store" not in lines[0], f"{mutation.name}: accepted, then failed on the store"
    assert not (tmp_path / "out").exists()


def test_yaml_map_and_list_are_plain_containers() -> None:
    doc = load_yaml_text("a: [1, {b: 2}]\n", "x.yaml")
    assert isinstance(doc, YamlMap) and isinstance(doc["a"], YamlList) and doc == {"a": [1, {"b": 2}]}
