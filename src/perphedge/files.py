"""Reading the files users write (YAML and JSON), strictly.

One reader for every input file — portfolio, run, sweep grid and instrument spec files — so each
refuses the same mistakes with one line naming the file:

* a path that is missing, a directory, unreadable, not UTF-8 text (a binary) or empty;
* malformed YAML/JSON (with the line);
* a key given twice in one mapping, at any depth (YAML silently keeps the last one:
  ``prices: {SOL: 150, SOL: 1}`` would value SOL at 1) — ``file.yaml: line 2: duplicate key `SOL```;
* an impossible date where YAML reads a timestamp (``2024-13-01``, ``2024-02-30``); other
  spellings (``01/02/2024``, ``20240101``) stay text or numbers and the file's schema refuses them.

Mappings and lists of a YAML document are :class:`YamlMap` / :class:`YamlList` (plain ``dict`` /
``list`` subclasses) that remember their line, so validators can say where a problem is
(:func:`line_of`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "MAX_FILE_BYTES",
    "YamlList",
    "YamlMap",
    "decode_text",
    "line_of",
    "load_json_text",
    "load_yaml_text",
    "plain",
    "read_json",
    "read_text",
    "read_yaml",
]


class YamlMap(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based; 0 = unknown)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.key_lines: dict[Any, int] = {}


class YamlList(list[Any]):
    """A YAML sequence that remembers its line and the line of each item (1-based; 0 = unknown)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0
        self.item_lines: list[int] = []


def plain(doc: Any) -> Any:
    """A copy of ``doc`` with plain ``dict``/``list`` containers (no line numbers: for documents built from others)."""
    if isinstance(doc, dict):
        return {k: plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [plain(v) for v in doc]
    return doc


def line_of(doc: Any, loc: Sequence[Any]) -> int | None:
    """The line of the deepest element of ``doc`` on the path ``loc`` (keys and indexes), if known."""
    line = getattr(doc, "line", 0) or None
    node = doc
    for part in loc:
        if isinstance(node, YamlMap) and not isinstance(part, int) and part in node:
            line = node.key_lines.get(part) or line
            node = node[part]
        elif isinstance(node, YamlList) and isinstance(part, int) and 0 <= part < len(node):
            if part < len(node.item_lines):
                line = node.item_lines[part] or line
            node = node[part]
        else:
            break
    return line


#: Largest input file read (16 MiB): a portfolio, run, grid or spec file is a few kilobytes.
MAX_FILE_BYTES = 16 * 1024 * 1024


def read_text(path: str | Path, what: str = "a file") -> str:
    """The UTF-8 text of ``path``; ConfigError (one line) if it is missing, a directory, binary or empty."""
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{p}: is a directory, expected {what}")
        if not p.exists():
            raise ConfigError(f"{p}: no such file (expected {what})")
        if not p.is_file():
            raise ConfigError(f"{p}: is not a regular file, expected {what}")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{p}: is {p.stat().st_size:,} bytes, more than any {what[2:].lstrip()} can be ({MAX_FILE_BYTES:,})"
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return decode_text(raw, str(p), what)


def decode_text(raw: bytes, source: str, what: str = "a file") -> str:
    """``raw`` as UTF-8 text (a leading BOM dropped); ConfigError naming ``source`` if it is binary or empty.

    The checks :func:`read_text` makes on a file's bytes, for text that arrives another way (``perphedge web``).
    """
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{source}: is {len(raw):,} bytes, more than any {what[2:].lstrip()} can be ({MAX_FILE_BYTES:,})"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: is not a text file (not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}), "
            f"expected {what}"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{source}: is not a text file (it contains NUL bytes), expected {what}")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise ConfigError(f"{source}: is empty, expected {what}")
    return text


# ----------------------------------------------------------------------------------------------- YAML


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _BadScalar(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message, self.line = message, line


#: YAML 1.2 core schema numbers (decimal only; a leading zero is not octal).
_YAML12_INT = re.compile(r"^[-+]?[0-9]+$")
_YAML12_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


@functools.cache
def _loader() -> Any:
    """The strict SafeLoader subclass (built on first use: ``yaml`` is imported lazily)."""
    import yaml

    merge_tag = "tag:yaml.org,2002:merge"

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys and impossible dates, and records lines."""

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == merge_tag:  # `<<: *anchor` merges; explicit keys override it
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.get(key)
                    except TypeError:
                        continue  # unhashable: SafeLoader reports it
                    line = key_node.start_mark.line + 1
                    if first is not None:
                        raise _DuplicateKey(key, line, first)
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_map(self, node: Any) -> Any:
            data = YamlMap()
            data.line = node.start_mark.line + 1
            yield data
            data.update(self.construct_mapping(node))
            for key_node, _ in node.value:
                if key_node.tag == merge_tag:
                    continue
                key = self.construct_object(key_node)
                with contextlib.suppress(TypeError):  # unhashable keys are refused by SafeLoader
                    data.key_lines[key] = key_node.start_mark.line + 1

        def construct_yaml_seq(self, node: Any) -> Any:
            data = YamlList()
            data.line = node.start_mark.line + 1
            yield data
            data.extend(self.construct_sequence(node))
            data.item_lines = [child.start_mark.line + 1 for child in node.value]

        def construct_decimal_int(self, node: Any) -> Any:
            text = str(self.construct_scalar(node))
            if not _YAML12_INT.match(text):  # an explicit !!int tag on something else
                raise _BadScalar(f"`{text}` is not a decimal whole number", node.start_mark.line + 1)
            return int(text)

        def construct_yaml_timestamp(self, node: Any) -> Any:
            # YAML reads 2024-13-01 as a timestamp and then fails inside datetime: say so in one line
            try:
                return super().construct_yaml_timestamp(node)
            except (ValueError, OverflowError) as exc:
                raise _BadScalar(f"invalid date `{node.value}`: {exc}", node.start_mark.line + 1) from None

    # Numbers as YAML 1.2 (and every other language) reads them, not YAML 1.1: `0100` is 100, not octal
    # 64; `1:30` is text, not the sexagesimal 90; `0x64`, `0b1100100` and `1_000` are text (the schema
    # then refuses them, naming the field); `1e16` is a number, not text.
    int_tag, float_tag = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
    resolvers = {
        first: [(tag, rx) for tag, rx in entries if tag not in (int_tag, float_tag)]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    StrictLoader.yaml_implicit_resolvers = resolvers
    StrictLoader.add_implicit_resolver(int_tag, _YAML12_INT, list("-+0123456789"))
    StrictLoader.add_implicit_resolver(float_tag, _YAML12_FLOAT, list("-+0123456789."))
    for entries in StrictLoader.yaml_implicit_resolvers.values():  # numbers before timestamps, as SafeLoader
        entries.sort(key=lambda entry: {int_tag: 0, float_tag: 1}.get(entry[0], 2))
    StrictLoader.add_constructor(int_tag, StrictLoader.construct_decimal_int)
    StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)
    StrictLoader.add_constructor("tag:yaml.org,2002:seq", StrictLoader.construct_yaml_seq)
    StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_timestamp)
    return StrictLoader


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document strictly; ConfigError names ``source`` and the line."""
    import yaml

    try:
        doc = yaml.load(text, Loader=_loader())  # a SafeLoader subclass
    except _DuplicateKey as exc:
        also = f" (first on line {exc.first})" if exc.first != exc.line else ""
        raise ConfigError(f"{source}: line {exc.line}: duplicate key `{exc.key}`{also}") from None
    except _BadScalar as exc:
        raise ConfigError(f"{source}: line {exc.line}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: {where}malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: malformed YAML: nested too deeply") from None
    if doc is None:
        raise ConfigError(f"{source}: is empty (only comments), expected a YAML mapping")
    _refuse_cycles(doc, source, max_nodes=len(text) + _ALIAS_EXPANSION_SLACK)
    return doc


#: Nodes an aliased document may expand to beyond one per character of its text (without aliases a document
#: never has more nodes than characters): a "billion laughs" file of 500 bytes expanded to 387 million nodes
#: and held a CPU for minutes in every walk of it.
_ALIAS_EXPANSION_SLACK = 100_000


def _refuse_cycles(doc: Any, source: str, max_nodes: int | None = None) -> None:
    """Refuse a document whose alias refers to a node that holds it (``x: &a [*a]``): every later walk of it
    (validation, hashing, printing) would recurse without end; and one whose aliases expand it past
    ``max_nodes`` nodes (a YAML bomb)."""
    stack: list[tuple[Any, frozenset[int]]] = [(doc, frozenset())]
    seen = 0
    while stack:
        node, ancestors = stack.pop()
        seen += 1
        if max_nodes is not None and seen > max_nodes:
            raise ConfigError(
                f"{source}: malformed YAML: its aliases (*name) expand it to more than {max_nodes:,} values "
                "(a YAML bomb?)"
            )
        if not isinstance(node, dict | list):
            continue
        if id(node) in ancestors:
            line = getattr(node, "line", None)
            where = f"line {line}: " if line else ""
            raise ConfigError(f"{source}: {where}malformed YAML: an alias refers to a node that contains it (a cycle)")
        inside = ancestors | {id(node)}
        stack.extend((child, inside) for child in (node.values() if isinstance(node, dict) else node))


def read_yaml(path: str | Path, what: str = "a YAML file") -> tuple[Any, bytes]:
    """Read and parse a YAML file strictly; returns the document and the raw bytes (for hashing)."""
    text = read_text(path, what)
    return load_yaml_text(text, str(path)), text.encode("utf-8")


# ----------------------------------------------------------------------------------------------- JSON


class _DuplicateJsonKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJsonKey(key)
        out[key] = value
    return out


class _NonFinite(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _duplicate_line(text: str) -> int | None:
    """Line of the JSON object holding a duplicate key (slow path, only after one was found)."""
    import json.decoder
    import json.scanner

    found: list[int] = []
    decoder: Any = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    original = getattr(json.decoder, "JSONObject")  # noqa: B009 - the pure-Python object parser, for positions

    def parse_object(s_and_end: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        try:
            return original(s_and_end, *args, **kwargs)
        except _DuplicateJsonKey:
            if not found:
                s, end = s_and_end
                found.append(s.count("\n", 0, end) + 1)
            raise

    decoder.parse_object = parse_object
    decoder.scan_once = getattr(json.scanner, "py_make_scanner")(decoder)  # noqa: B009 - uses parse_object
    with contextlib.suppress(_DuplicateJsonKey, ValueError, RecursionError):
        decoder.decode(text)
    return found[0] if found else None


def load_json_text(text: str, source: str) -> Any:
    """Parse JSON, refusing duplicate keys in any object; ConfigError names ``source`` and the line."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except _DuplicateJsonKey as exc:
        line = _duplicate_line(text)
        where = f" in the object starting on line {line}" if line else ""
        raise ConfigError(f"{source}: duplicate key `{exc.key}`{where}") from None
    except _NonFinite as exc:
        raise ConfigError(f"{source}: `{exc.name}` is not a number JSON allows (numbers must be finite)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{source}: malformed JSON: nested too deeply") from None


def read_json(path: str | Path, what: str = "a JSON file") -> Any:
    """Read and parse a JSON file strictly."""
    return load_json_text(read_text(path, what), str(path))
