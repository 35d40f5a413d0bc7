"""Bundled instrument specs and the registry that resolves ``exchange:SYMBOL``.

The bundled file ``instruments.json`` carries each value's source and date. A user file (YAML or
JSON, same shape: ``{"instruments": [...]}``) adds instruments or replaces bundled ones with the
same ``exchange:symbol``; it is read from ``--specs``, ``$PERPHEDGE_SPECS`` or
``$PERPHEDGE_HOME/instruments.yaml`` when present.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from perphedge.core.instruments import (
    ContractKind,
    Instrument,
    LiquidationMethod,
    MarginSchedule,
    MarginTier,
    TierStyle,
)
from perphedge.errors import ConfigError

__all__ = ["InstrumentRegistry", "default_registry", "instrument_from_mapping", "user_specs_path"]

_REQUIRED = (
    "exchange",
    "symbol",
    "kind",
    "base",
    "quote",
    "settle",
    "contract_size",
    "lot_size",
    "tick_size",
    "max_leverage",
    "tiers",
    "liquidation_method",
)
_OPTIONAL = (
    "ccxt_symbol",
    "tier_style",
    "slope",
    "funding_interval_hours",
    "maker_fee",
    "taker_fee",
    "source",
    "as_of",
    "notes",
)


def _enum(cls: Any, value: Any, where: str, field: str) -> Any:
    try:
        return cls(str(value).lower())
    except ValueError:
        names = ", ".join(m.value for m in cls)
        raise ConfigError(f"{where}: field `{field}`: must be one of {names}, was {value!r}") from None


def _number(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: field `{field}`: must be a number, was {value!r}")
    return float(value)


def instrument_from_mapping(raw: Mapping[str, Any], where: str = "instrument") -> Instrument:
    """Build an :class:`Instrument` from a spec mapping; ConfigError names the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping, was {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ConfigError(f"{where}: unknown field `{unknown[0]}`")
    for name in _REQUIRED:
        if name not in raw:
            raise ConfigError(f"{where}: field `{name}` is required")
    label = f"{where} {raw['exchange']}:{raw['symbol']}"
    style = _enum(TierStyle, raw.get("tier_style", "marginal"), label, "tier_style")
    rows = raw["tiers"]
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{label}: field `tiers`: must be a non-empty list of [floor, mmr, max_leverage]")
    parsed: list[tuple[float, float, float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise ConfigError(f"{label}: field `tiers[{i}]`: must be [floor, mmr, max_leverage], was {row!r}")
        parsed.append(tuple(_number(v, label, f"tiers[{i}]") for v in row))  # type: ignore[arg-type]
    try:
        if style is TierStyle.MARGINAL:
            schedule = MarginSchedule.marginal(parsed)
        else:
            schedule = MarginSchedule(
                style=style,
                tiers=tuple(MarginTier(floor=f, mmr=m, max_leverage=lev) for f, m, lev in parsed),
                slope=_number(raw.get("slope", 0.0), label, "slope"),
            )
        source = raw.get("source", "")
        if isinstance(source, Mapping):
            source = "; ".join(f"{k}: {v}" for k, v in source.items())
        return Instrument(
            exchange=str(raw["exchange"]).lower(),
            symbol=str(raw["symbol"]).upper(),
            kind=_enum(ContractKind, raw["kind"], label, "kind"),
            base=str(raw["base"]).upper(),
            quote=str(raw["quote"]).upper(),
            settle=str(raw["settle"]).upper(),
            contract_size=_number(raw["contract_size"], label, "contract_size"),
            lot_size=_number(raw["lot_size"], label, "lot_size"),
            tick_size=_number(raw["tick_size"], label, "tick_size"),
            max_leverage=_number(raw["max_leverage"], label, "max_leverage"),
            margin=schedule,
            liquidation_method=_enum(LiquidationMethod, raw["liquidation_method"], label, "liquidation_method"),
            funding_interval_hours=_number(raw.get("funding_interval_hours", 8), label, "funding_interval_hours"),
            maker_fee=_number(raw.get("maker_fee", 0.0002), label, "maker_fee"),
            taker_fee=_number(raw.get("taker_fee", 0.0005), label, "taker_fee"),
            ccxt_symbol=str(raw.get("ccxt_symbol", "")),
            source=str(source),
            as_of=str(raw.get("as_of", "")),
            notes=tuple(str(n) for n in raw.get("notes", ())),
        )
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(label) else f"{label}: {msg}") from None


@dataclass(frozen=True, slots=True)
class InstrumentRegistry:
    """Instruments by ``exchange:SYMBOL`` (case-insensitive; ccxt symbols accepted too)."""

    instruments: tuple[Instrument, ...]

    def ids(self) -> list[str]:
        """All ``exchange:SYMBOL`` ids, sorted."""
        return sorted(i.id for i in self.instruments)

    def get(self, ident: str) -> Instrument:
        """Resolve ``exchange:SYMBOL`` or ``exchange:BASE/QUOTE:SETTLE``; ConfigError if unknown."""
        text = str(ident).strip()
        exchange, sep, symbol = text.partition(":")
        if not sep or not exchange or not symbol:
            raise ConfigError(f"invalid instrument {ident!r}: must be exchange:SYMBOL, e.g. binance:BTCUSD_PERP")
        exchange = exchange.lower()
        sym = symbol.upper()
        for inst in self.instruments:
            if inst.exchange == exchange and (inst.symbol == sym or inst.ccxt_symbol.upper() == sym):
                return inst
        known = ", ".join(i.id for i in self.instruments if i.exchange == exchange) or ", ".join(self.ids())
        raise ConfigError(f"unknown instrument {ident!r}: known instruments are {known}")

    def find(self, exchange: str, kind: ContractKind, base: str) -> Instrument | None:
        """The instrument of ``exchange`` and ``kind`` on ``base`` (its own perpetual), if any."""
        for inst in self.instruments:
            if inst.exchange == exchange.lower() and inst.kind is kind and inst.base == base.upper():
                return inst
        return None

    def exchanges(self) -> list[str]:
        """Exchange ids present."""
        return sorted({i.exchange for i in self.instruments})

    def merged(self, extra: Iterable[Instrument]) -> InstrumentRegistry:
        """A registry where ``extra`` adds or replaces instruments with the same id."""
        extra = tuple(extra)
        ids = {i.id for i in extra}
        return InstrumentRegistry(tuple(i for i in self.instruments if i.id not in ids) + extra)


def _parse_document(doc: Any, where: str) -> tuple[Instrument, ...]:
    if not isinstance(doc, Mapping) or "instruments" not in doc:
        raise ConfigError(f"{where}: must be a mapping with an `instruments` list")
    unknown = sorted(set(doc) - {"instruments", "about"})
    if unknown:
        raise ConfigError(f"{where}: unknown field `{unknown[0]}`")
    items = doc["instruments"]
    if not isinstance(items, list):
        raise ConfigError(f"{where}: field `instruments`: must be a list")
    return tuple(instrument_from_mapping(item, f"{where}: instruments[{i}]") for i, item in enumerate(items))


def user_specs_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The user spec file to read: ``explicit``, ``$PERPHEDGE_SPECS``, or the home default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("PERPHEDGE_SPECS")
    if env:
        return Path(env)
    home = Path(os.environ.get("PERPHEDGE_HOME", Path.home() / ".perphedge"))
    for name in ("instruments.yaml", "instruments.yml", "instruments.json"):
        path = home / name
        if path.is_file():
            return path
    return None


def load_user_specs(path: Path) -> tuple[Instrument, ...]:
    """Read a user spec file (YAML or JSON)."""
    if not path.is_file():
        raise ConfigError(f"{path}: instrument spec file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from exc
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark is not None else ""
            raise ConfigError(f"{path}: {line}malformed YAML: {getattr(exc, 'problem', exc)}") from exc
    return _parse_document(doc, str(path))


def bundled_instruments() -> tuple[Instrument, ...]:
    """The instruments shipped with perphedge."""
    text = resources.files(__name__).joinpath("instruments.json").read_text(encoding="utf-8")
    return _parse_document(json.loads(text), "bundled instruments.json")


def default_registry(specs_file: str | os.PathLike[str] | None = None) -> InstrumentRegistry:
    """Bundled instruments, with the user's spec file (if any) added on top."""
    registry = InstrumentRegistry(bundled_instruments())
    path = user_specs_path(specs_file)
    if path is not None:
        registry = registry.merged(load_user_specs(path))
    return registry
