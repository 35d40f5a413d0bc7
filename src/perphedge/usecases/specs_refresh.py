"""``perphedge instruments --refresh``: instrument specs read again from the venues' public APIs through ccxt.

For each bundled instrument of the venues asked for, the venue's market (``fetch_markets``) gives the contract
size, price tick, amount step and maximum leverage; where ccxt reads margin tiers without keys
(``fetch_market_leverage_tiers``: OKX's ``public/position-tiers``) they replace the bundled tiers. The result is a
spec file in the bundled shape (every refreshed value with its source and the date), written with ``--write FILE``
(never over the bundled ``instruments.json``) and usable with ``--specs FILE``; ``--diff`` lists what differs from
the bundled specs.

Units: OKX sizes its tiers in contracts; the bundled floors are position values (quote for linear contracts, coin
for inverse ones), so OKX floors are converted at the venue's last price, which the source states. Hyperliquid
publishes its tiers as margin tables that ccxt does not read: its first tier follows the market's max leverage
(maintenance margin = half the initial margin at max leverage); the deeper tiers stay as bundled.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError, ExchangeError

__all__ = ["REFRESH_VENUES", "RefreshRequest", "diff_specs", "refresh_specs"]

#: venues whose specs can be refreshed without keys (ccxt public endpoints), in the order they are read
REFRESH_VENUES = ("binance", "bybit", "okx", "hyperliquid")
#: venues whose margin tiers ccxt reads without keys
_PUBLIC_TIERS = ("okx",)
_REL = 1e-9  # relative tolerance of a numeric difference (float noise of a venue's decimal strings)
FIELDS = ("contract_size", "tick_size", "lot_size", "max_leverage")


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshRequest:
    """``instruments --refresh``: the venues to read (all of :data:`REFRESH_VENUES` when empty), where to write
    the refreshed spec file (None: nowhere), and whether to list the differences from the bundled specs."""

    exchanges: tuple[str, ...] = ()
    write: str | None = None
    diff: bool = False

    def venues(self) -> tuple[str, ...]:
        if not self.exchanges:
            return REFRESH_VENUES
        out: list[str] = []
        for name in self.exchanges:
            text = str(name).strip().lower()
            if text not in REFRESH_VENUES:
                raise ConfigError(
                    f"invalid `--exchange`: refreshing specs supports {', '.join(REFRESH_VENUES)}, was {name!r}"
                )
            if text in out:
                raise ConfigError(f"invalid `--exchange`: {text} is given twice")
            out.append(text)
        return tuple(out)


def _bundled_raw() -> list[dict[str, Any]]:
    text = resources.files("perphedge.specs").joinpath("instruments.json").read_text(encoding="utf-8")
    return list(json.loads(text)["instruments"])


def bundled_path() -> Path:
    """Where the bundled specs live (a refresh never writes there)."""
    return Path(str(resources.files("perphedge.specs").joinpath("instruments.json")))


def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _clean(x: float) -> float | int:
    """A number as a spec file writes it: integers without a fraction, floats rounded off their binary noise."""
    y = float(f"{x:.12g}")
    return int(y) if y.is_integer() and abs(y) < 2**53 else y


def _okx_tiers(
    source: Any, raw: Mapping[str, Any], market: Mapping[str, Any], call: Callable[[str, Callable[[], Any]], Any]
) -> tuple[list[list[float | int]], str]:
    """OKX position tiers in the bundled unit, and their source text."""
    symbol = str(market["symbol"])
    rows = call(f"fetch_market_leverage_tiers {symbol}", lambda: source.fetch_market_leverage_tiers(symbol))
    ticker = call(f"fetch_ticker {symbol}", lambda: source.fetch_ticker(symbol))
    price = _num((ticker or {}).get("last"))
    if price is None:
        raise ExchangeError(f"okx: no last price of {symbol} to convert its tiers (contracts) into position values")
    size = float(raw["contract_size"])
    out: list[list[float | int]] = []
    for i, row in enumerate(sorted(rows, key=lambda r: float(r.get("tier") or 0))):
        contracts = float(row.get("minNotional") or 0.0)
        mmr, lev = row.get("maintenanceMarginRate"), row.get("maxLeverage")
        if mmr is None or lev is None or not (0 < float(mmr) < 1) or float(lev) < 1:
            raise ExchangeError(f"okx: tier {i + 1} of {symbol} has no usable maintenance rate or leverage: {row!r}")
        floor = contracts * size * price if raw["kind"] == "linear" else contracts * size / price
        out.append([_clean(0.0 if i == 0 else floor), _clean(float(mmr)), _clean(float(lev))])
    if not out:
        raise ExchangeError(f"okx: no position tiers for {symbol}")
    unit = raw["quote"] if raw["kind"] == "linear" else raw["settle"]
    text = (
        f"okx public/position-tiers (ccxt fetchMarketLeverageTiers), floors in contracts x {size:g} converted to "
        f"{unit} at the last price {price:g}"
    )
    return out, text


def _hyperliquid_tiers(raw: Mapping[str, Any], max_lev: float) -> tuple[list[list[float | int]], str] | None:
    """The first tier at the market's max leverage (mmr = half the initial margin), deeper bundled tiers kept."""
    tiers = [list(t) for t in raw["tiers"]]
    first = [0, _clean(1.0 / (2.0 * max_lev)), _clean(max_lev)]
    if tiers and math.isclose(float(tiers[0][2]), max_lev, rel_tol=_REL):
        return None
    rest = [t for t in tiers[1:] if float(t[2]) < max_lev]
    return [first, *rest], (
        "hyperliquid meta.universe maxLeverage (ccxt fetchMarkets); maintenance rate = half the initial rate at "
        "max leverage (Hyperliquid 'Liquidations' docs); deeper tiers as bundled"
    )


#: The highest max leverage any venue offers on a perpetual (Binance/OKX 125x, Bybit 100x-200x, Hyperliquid 50x)
#: with room; a venue answer above it (or below 1x) is garbage, not a spec.
MAX_LEVERAGE_CAP = 250.0
#: How far (a factor) a refreshed contract size, tick or lot may move from the bundled value before it is taken
#: for garbage (venues change a tick by 10x, not by 1000x).
PLAUSIBLE_FACTOR = 1000.0


def _implausible(name: str, value: float, bundled: Any) -> str | None:
    """Why a venue's value for ``name`` cannot be a spec value (None: plausible)."""
    if name == "max_leverage" and not 1.0 <= value <= MAX_LEVERAGE_CAP:
        return f"outside 1..{MAX_LEVERAGE_CAP:g}"
    old = _num(bundled)
    if name != "max_leverage" and old is not None and not 1 / PLAUSIBLE_FACTOR <= value / old <= PLAUSIBLE_FACTOR:
        return f"more than {PLAUSIBLE_FACTOR:g}x away from the bundled {old:g}"
    return None


def _refresh_venue(
    venue: str, raws: Sequence[dict[str, Any]], client: Any, today: str, notes: list[str]
) -> list[dict[str, Any]]:
    from perphedge.exchange.ccxt_source import CcxtSource, native_symbol

    src = CcxtSource(venue, client=client)
    markets = src.markets()
    out: list[dict[str, Any]] = []
    for raw in raws:
        market = markets.get(str(raw.get("ccxt_symbol", "")))
        if market is None or native_symbol(venue, market).upper() != str(raw["symbol"]).upper():
            notes.append(f"{venue}:{raw['symbol']}: not listed by {venue} (ccxt {raw.get('ccxt_symbol')}): kept")
            continue
        new = copy.deepcopy(raw)
        source = dict(new.get("source") or {}) if isinstance(new.get("source"), Mapping) else {}
        stamp = f"ccxt fetchMarkets {venue} {today}"
        precision = market.get("precision") or {}
        tick, lot = _num(precision.get("price")), _num(precision.get("amount"))
        if venue == "hyperliquid":
            # ccxt derives the price precision from today's price (5 significant figures); the spec's tick is the
            # finest step the venue accepts, 10^-(6 - szDecimals), and its lot 10^-szDecimals (API docs)
            sz = (market.get("info") or {}).get("szDecimals")
            if isinstance(sz, int | str) and str(sz).isdigit() and int(sz) <= 6:
                tick, lot = 10.0 ** -(6 - int(sz)), 10.0 ** -int(sz)
            else:
                tick = lot = None
        values = {
            "contract_size": _num(market.get("contractSize")),
            "tick_size": tick,
            "lot_size": lot,
            "max_leverage": _num(((market.get("limits") or {}).get("leverage") or {}).get("max")),
        }
        changed = []
        for name, value in values.items():
            if value is None:
                notes.append(f"{venue}:{raw['symbol']}: {venue} does not state `{name}`: bundled value kept")
                continue
            why = _implausible(name, value, raw.get(name))
            if why:
                notes.append(
                    f"{venue}:{raw['symbol']}: {venue} states `{name}` {value:g}, {why}: not taken, bundled value kept"
                )
                values[name] = None
                continue
            new[name] = _clean(value)
            changed.append(name)
        if changed:
            source["refresh"] = f"{', '.join(changed)}: {stamp}"
        tiers: tuple[list[list[float | int]], str] | None = None
        if venue in _PUBLIC_TIERS:
            tiers = _okx_tiers(client, new, market, src.call)
        elif venue == "hyperliquid" and values["max_leverage"] is not None:
            tiers = _hyperliquid_tiers(new, float(values["max_leverage"]))
        if tiers is not None:
            new["tiers"], text = tiers
            new["tier_style"] = "marginal"
            source["tiers"] = f"{text} ({today})"
        elif venue not in _PUBLIC_TIERS and venue != "hyperliquid":
            source["tiers"] = f"{source.get('tiers', 'bundled')} (not public through ccxt for {venue}: kept)"
        new["source"] = source
        new["as_of"] = today
        out.append(new)
    return out


def diff_specs(bundled: Sequence[Mapping[str, Any]], refreshed: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per instrument, each field whose refreshed value differs from the bundled one (numbers: relative 1e-9)."""
    by_id = {f"{r['exchange']}:{r['symbol']}".lower(): r for r in bundled}
    rows: list[dict[str, Any]] = []
    for new in refreshed:
        ident = f"{new['exchange']}:{new['symbol']}"
        old = by_id.get(ident.lower())
        if old is None:
            rows.append({"instrument": ident, "field": "instrument", "bundled": None, "venue": "new"})
            continue
        for name in FIELDS:
            a, b = float(old[name]), float(new[name])
            if not math.isclose(a, b, rel_tol=_REL):
                rows.append({"instrument": ident, "field": name, "bundled": old[name], "venue": new[name]})
        ta, tb = old["tiers"], new["tiers"]
        if len(ta) != len(tb):
            rows.append({"instrument": ident, "field": "tiers", "bundled": len(ta), "venue": len(tb), "what": "count"})
        for i, (x, y) in enumerate(zip(ta, tb, strict=False)):
            for j, what in enumerate(("floor", "mmr", "max_leverage")):
                if not math.isclose(float(x[j]), float(y[j]), rel_tol=_REL, abs_tol=1e-12):
                    rows.append(
                        {
                            "instrument": ident,
                            "field": f"tiers[{i}].{what}",
                            "bundled": x[j],
                            "venue": y[j],
                        }
                    )
    return rows


def _dump(doc: Mapping[str, Any], path: Path) -> str:
    if path.suffix.lower() == ".json":
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True, width=110)


def check_write_target(write: str) -> Path:
    """The ``--write`` file, refused before any network call when it is the bundled file, has another suffix
    than .yaml/.yml/.json, is a directory, or cannot be written."""
    from perphedge.usecases.outputs import check_output_file

    if not str(write).strip():
        raise ConfigError("invalid `--write`: empty path")
    path = Path(write)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"invalid `--write`: {path} must end in .yaml, .yml or .json (the spec file's format)")
    try:
        same = path.resolve() == bundled_path().resolve()
    except OSError:
        same = False
    if same:
        raise ConfigError(f"invalid `--write`: {path} is the bundled spec file; write the refresh to a file of yours")
    return check_output_file(path, "--write")


def refresh_specs(req: RefreshRequest, *, clients: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read the venues, return the refresh document (``perphedge.instruments-refresh/1``) and write ``--write``.

    ``clients`` maps a venue to a ccxt client to use (tests); otherwise one is made per venue (public, no keys;
    ``PERPHEDGE_EXCHANGE_URL`` routes it to a mirror).
    """
    from perphedge.exchange.ccxt_source import make_exchange
    from perphedge.specs import _parse_document
    from perphedge.usecases.outputs import write_file_atomic

    venues = req.venues()
    target = check_write_target(req.write) if req.write is not None else None
    today = datetime.now(UTC).date().isoformat()
    bundled = _bundled_raw()
    refreshed: list[dict[str, Any]] = []
    notes: list[str] = []
    for venue in venues:
        raws = [r for r in bundled if str(r["exchange"]).lower() == venue]
        if not raws:
            continue
        client = (clients or {}).get(venue) or make_exchange(venue)
        refreshed += _refresh_venue(venue, raws, client, today, notes)
    if not refreshed:
        raise ExchangeError(f"no bundled instrument of {', '.join(venues)} is listed by the venue: nothing refreshed")
    doc = {
        "about": (
            f"perphedge instruments --refresh of {', '.join(venues)} on {today}: bundled specs with the values the "
            "venues' public APIs gave (ccxt); each instrument's `source` names what was refreshed. Use with --specs."
        ),
        "instruments": refreshed,
    }
    _parse_document(json.loads(json.dumps(doc)), "the refreshed specs")  # what --specs will read must load
    written = None
    if target is not None:
        try:
            written = str(write_file_atomic(target, _dump(doc, target), "--write"))
        except OSError as exc:  # e.g. a place where no temporary file can be made (/proc)
            raise ConfigError(f"invalid `--write`: cannot write {target}: {exc.strerror or exc}") from None
    out: dict[str, Any] = {
        "schema": "perphedge.instruments-refresh/1",
        "as_of": today,
        "exchanges": list(venues),
        "refreshed": [f"{r['exchange']}:{r['symbol']}" for r in refreshed],
        "written": written,
        "notes": notes,
        "instruments": refreshed,
    }
    if req.diff:
        out["differences"] = diff_specs(bundled, refreshed)
    return out
