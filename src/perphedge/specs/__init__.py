"""Bundled instrument specs and the registry that resolves ``exchange:SYMBOL``.

The bundled file ``instruments.json`` carries each value's source and date. A user file (YAML or
JSON, same shape: ``{"instruments": [...]}``) adds instruments or replaces bundled ones with the
same ``exchange:symbol``; it is read from ``--specs``, ``$PERPHEDGE_SPECS`` or
``$PERPHEDGE_HOME/instruments.yaml`` when present.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from perphedge.core.instruments import (
    MAKER_FEE_RANGE,
    TAKER_FEE_RANGE,
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
    "closing_fee_in_margin",
    "closing_fee_in_isolated",
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
        shown = "true" if value is True else "false" if value is False else repr(value)
        raise ConfigError(f"{where}: field `{field}`: must be a number, was {shown}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: field `{field}`: must be a finite number, was {value!r}")
    return float(value)


def _positive(value: Any, where: str, field: str) -> float:
    number = _number(value, where, field)
    if number <= 0:
        raise ConfigError(f"{where}: field `{field}`: must be > 0, was {value!r}")
    return number


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: field `{field}`: must be non-empty text, was {value!r}")
    text = value.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in text) or (field == "exchange" and ":" in text):
        # the id is exchange:SYMBOL: a space, a control character or a `:` in the exchange could never be named
        raise ConfigError(
            f"{where}: field `{field}`: must be one word without spaces or control characters"
            f"{' or `:`' if field == 'exchange' else ''}, was {value!r}"
        )
    return text


def _as_of(value: Any, where: str) -> str:
    """The spec's date: ISO 8601 ``YYYY-MM-DD`` (a YAML date or text), as everywhere else."""
    import datetime as _dt

    if isinstance(value, _dt.datetime):
        raise ConfigError(f"{where}: field `as_of`: must be a date YYYY-MM-DD without a time, was {value.isoformat()}")
    if isinstance(value, _dt.date):
        return value.isoformat()
    text = value.strip() if isinstance(value, str) else None
    if text is None or len(text) != 10:
        raise ConfigError(f"{where}: field `as_of`: must be an ISO 8601 date YYYY-MM-DD, was {value!r}")
    try:
        return _dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(f"{where}: field `as_of`: must be an ISO 8601 date YYYY-MM-DD, was {value!r}") from None


def _fee(raw: Mapping[str, Any], where: str, field: str, default: float, bounds: tuple[float, float]) -> float:
    rate = _number(raw.get(field, default), where, field)
    lo, hi = bounds
    if not lo <= rate <= hi:
        raise ConfigError(
            f"{where}: field `{field}`: must be in [{lo:g}, {hi:g}] (a fraction of notional: 0.0005 = 0.05%), "
            f"was {rate!r}"
        )
    return rate


def _check_tiers(parsed: list[tuple[float, float, float]], where: str) -> None:
    """Floors start at 0 and increase; 0 < mmr < 1; each tier's leverage leaves margin above maintenance."""
    for i, (floor, mmr, lev) in enumerate(parsed):
        field = f"tiers[{i}]"
        if floor < 0 or (i == 0 and floor != 0):
            raise ConfigError(f"{where}: field `{field}`: the first floor must be 0 and none negative, was {floor:g}")
        if i > 0 and floor <= parsed[i - 1][0]:
            raise ConfigError(f"{where}: field `{field}`: floors must increase, {floor:g} follows {parsed[i - 1][0]:g}")
        if not 0 < mmr < 1:
            raise ConfigError(f"{where}: field `{field}`: maintenance rate must be in (0, 1), was {mmr:g}")
        if lev < 1:
            raise ConfigError(f"{where}: field `{field}`: max leverage must be >= 1, was {lev:g}")
        if 1.0 / lev <= mmr:
            raise ConfigError(
                f"{where}: field `{field}`: at its max leverage {lev:g}x the initial margin ({1 / lev:.4%}) does not "
                f"cover the maintenance rate {mmr:.4%}: a position opened there is born liquidated"
            )


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
    for name in ("exchange", "symbol", "base", "quote", "settle"):
        _text(raw[name], where, name)
    label = f"{where} {str(raw['exchange']).strip().lower()}:{str(raw['symbol']).strip().upper()}"
    style = _enum(TierStyle, raw.get("tier_style", "marginal"), label, "tier_style")
    rows = raw["tiers"]
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{label}: field `tiers`: must be a non-empty list of [floor, mmr, max_leverage]")
    parsed: list[tuple[float, float, float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != 3:
            raise ConfigError(f"{label}: field `tiers[{i}]`: must be [floor, mmr, max_leverage], was {row!r}")
        parsed.append(tuple(_number(v, label, f"tiers[{i}]") for v in row))  # type: ignore[arg-type]
    _check_tiers(parsed, label)
    max_leverage = _number(raw["max_leverage"], label, "max_leverage")
    if max_leverage < 1:
        raise ConfigError(f"{label}: field `max_leverage`: must be >= 1, was {raw['max_leverage']!r}")
    flags = {name: raw.get(name, False) for name in ("closing_fee_in_margin", "closing_fee_in_isolated")}
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ConfigError(f"{label}: field `{name}`: must be true or false, was {flag!r}")
    notes = raw.get("notes", ())
    if isinstance(notes, str) or not isinstance(notes, list | tuple):
        raise ConfigError(f"{label}: field `notes`: must be a list of text, was {notes!r}")
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
            exchange=str(raw["exchange"]).strip().lower(),
            symbol=str(raw["symbol"]).strip().upper(),
            kind=_enum(ContractKind, raw["kind"], label, "kind"),
            base=str(raw["base"]).strip().upper(),
            quote=str(raw["quote"]).strip().upper(),
            settle=str(raw["settle"]).strip().upper(),
            contract_size=_positive(raw["contract_size"], label, "contract_size"),
            lot_size=_positive(raw["lot_size"], label, "lot_size"),
            tick_size=_positive(raw["tick_size"], label, "tick_size"),
            max_leverage=max_leverage,
            margin=schedule,
            liquidation_method=_enum(LiquidationMethod, raw["liquidation_method"], label, "liquidation_method"),
            funding_interval_hours=_positive(raw.get("funding_interval_hours", 8), label, "funding_interval_hours"),
            maker_fee=_fee(raw, label, "maker_fee", 0.0002, MAKER_FEE_RANGE),
            taker_fee=_fee(raw, label, "taker_fee", 0.0005, TAKER_FEE_RANGE),
            ccxt_symbol=str(raw.get("ccxt_symbol", "")),
            closing_fee_in_margin=flags["closing_fee_in_margin"],
            closing_fee_in_isolated=flags["closing_fee_in_isolated"],
            source=str(source),
            as_of=_as_of(raw["as_of"], label) if raw.get("as_of") not in (None, "") else "",
            notes=tuple(str(n) for n in notes),
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
        # dated futures (specs/futures.json): BTCUSD_210924, BTC-24SEP21, BTC/USD:BTC-210924, ...
        from perphedge.specs.futures import resolve_dated

        dated = resolve_dated(self, exchange, sym)
        if dated is not None:
            return dated
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
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: field `instruments`: must be a non-empty list")
    out: list[Instrument] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        inst = instrument_from_mapping(item, f"{where}: instruments[{i}]")
        if inst.id in seen:
            raise ConfigError(
                f"{where}: instruments[{i}] {inst.id}: duplicate instrument id (also instruments[{seen[inst.id]}]): "
                "give each exchange:symbol once"
            )
        seen[inst.id] = i
        out.append(inst)
    return tuple(out)


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
    """Read a user spec file (YAML or JSON): duplicate keys and duplicate instrument ids are errors."""
    from perphedge.files import load_json_text, load_yaml_text, read_text

    text = read_text(path, "an instrument spec file")
    if path.suffix.lower() == ".json":
        doc = load_json_text(text, str(path))
    else:
        doc = load_yaml_text(text, str(path))
    return _parse_document(doc, str(path))


def bundled_instruments() -> tuple[Instrument, ...]:
    """The instruments shipped with perphedge."""
    from perphedge.files import load_json_text

    text = resources.files(__name__).joinpath("instruments.json").read_text(encoding="utf-8")
    return _parse_document(load_json_text(text, "bundled instruments.json"), "bundled instruments.json")


def default_registry(specs_file: str | os.PathLike[str] | None = None) -> InstrumentRegistry:
    """Bundled instruments, with the user's spec file (if any) added on top."""
    registry = InstrumentRegistry(bundled_instruments())
    path = user_specs_path(specs_file)
    if path is not None:
        registry = registry.merged(load_user_specs(path))
    return registry
