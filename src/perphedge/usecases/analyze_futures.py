"""``perphedge analyze --futures``: basis of dated futures, term structure, and the carry of a dated
hedge held to expiry against the perpetual's realised funding over the same days.

Reads the ``futures_candles`` and ``futures_settlements`` tables (``data import`` of ``futures/``) and
the perpetual's funding (``funding`` table, the inverse perpetual of the same venue and coin).

Conventions (stated in the document):

* a daily bar's close is ``ts + 1 day`` (00:00 UTC); days to expiry run from that close to delivery;
* ``basis = F/S − 1`` with ``F`` the contract's daily mark close and ``S`` spot's close;
  ``basis_annualized = basis · 365 / days_to_expiry``;
* percentiles and the carry comparison use bars with at least ``min_days`` days left (annualising the
  last hours' noise would swamp them);
* a short hedger entering at a bar's close and holding to delivery locks ``basis`` (a fraction of the
  spot notional): ``carry_annualized = basis · 365 / days``; the perpetual's realised funding is the sum
  of its rates settled in ``(entry close, delivery]``, annualised over the same days; ``spread =
  carry − funding`` (positive: the dated future earned more than the perpetual would have).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perphedge.core import futures as F
from perphedge.data.futures_import import MAX_BASIS
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from perphedge.data.store import MarketStore

__all__ = ["ANALYZE_FUTURES_SCHEMA", "FuturesAnalyzeRequest", "analyze_futures", "run_analyze_futures"]

ANALYZE_FUTURES_SCHEMA = "perphedge.analyze-futures/1"
_HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FuturesAnalyzeRequest:
    """What to analyse: the contracts of ``source`` between ``since`` and ``until`` (UTC days, both included)."""

    since: str | None = None
    until: str | None = None
    min_days: float = 7.0
    source: str = "binance"
    store_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.min_days, bool) or not isinstance(self.min_days, int | float):
            raise ConfigError(f"invalid `--min-days`: must be a number of days, was {self.min_days!r}")
        if not (math.isfinite(self.min_days) and 0 <= self.min_days <= 366):
            raise ConfigError(f"invalid `--min-days`: must be in [0, 366], was {self.min_days!r}")
        if self.since and self.until and self.until < self.since:
            raise ConfigError(f"invalid `--until`: {self.until} is before `--since` {self.since}")


def _stats(values: Sequence[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "median": F.percentile(values, 50),
        "p5": F.percentile(values, 5),
        "p95": F.percentile(values, 95),
        "min": min(values),
        "max": max(values),
        "share_positive": sum(1 for v in values if v > 0) / len(values),
    }


def _ms(ts: Any) -> int:
    import pandas as pd

    return int(pd.Timestamp(ts).value // 1_000_000)


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fill_spot(store: MarketStore, g: Any, contract: str, source: str) -> Any:
    """Fetched contracts carry no spot close: take Binance spot's daily close of the same day from ``candles``."""
    import math as _m

    missing = [i for i, v in enumerate(g["spot_close"]) if v is None or _m.isnan(v)]
    if not missing:
        return g
    from perphedge.specs import default_registry

    base = default_registry().get(f"{source}:{contract}").base
    spot = store.query(
        "SELECT ts, close FROM candles WHERE source = 'binance' AND symbol = ? AND timeframe = '1d'", [f"{base}/USDT"]
    )
    by_ts = {_ms(t): float(c) for t, c in zip(spot["ts"], spot["close"], strict=True)}
    g = g.copy()
    values = list(g["spot_close"])
    for i in missing:
        ts = _ms(g["ts"].iloc[i])
        if ts not in by_ts:
            raise DataError(
                f"no spot close of {base} on {_iso(ts)[:10]} for {contract}: import or fetch {base}/USDT daily candles"
            )
        values[i] = by_ts[ts]
    g["spot_close"] = values
    return g


def _perp_symbol(contract: str, source: str, expiry_ms: int) -> str:
    """ccxt symbol of the perpetual whose funding a contract is compared with (same venue, coin, kind);
    DataError when the stored contract is not a known dated future or its stored expiry is not its delivery."""
    from perphedge.specs import default_registry
    from perphedge.specs.futures import series_for

    registry = default_registry()
    try:
        inst = registry.get(f"{source}:{contract}")
        found = series_for(source, contract)
    except ConfigError as exc:
        raise DataError(f"stored contract {source}:{contract}: {exc}") from None
    if found is None or inst.expiry_ms is None:
        raise DataError(f"stored contract {source}:{contract} is not a known dated future (specs/futures.json)")
    if inst.expiry_ms != expiry_ms:
        raise DataError(
            f"stored contract {source}:{contract}: its stored expiry {_iso(expiry_ms)} is not its delivery "
            f"{_iso(inst.expiry_ms)}"
        )
    return registry.get(found[0].margin_from).ccxt_symbol


def _funding(store: MarketStore, source: str, symbol: str) -> tuple[list[int], list[float], float]:
    frame = store.query(
        "SELECT ts, rate, interval_hours FROM funding WHERE source = ? AND symbol = ? ORDER BY ts", [source, symbol]
    )
    stamps = [_ms(t) for t in frame["ts"]]
    rates = [float(r) for r in frame["rate"]]
    intervals = {float(h) for h in frame["interval_hours"]}
    if len(intervals) > 1:
        raise DataError(f"funding of {source} {symbol} mixes intervals {sorted(intervals)}: cannot count settlements")
    return stamps, rates, intervals.pop() if intervals else 8.0


def _funding_between(
    stamps: list[int], rates: list[float], interval_h: float, start_ms: int, end_ms: int
) -> float | None:
    """Sum of the rates settled in ``(start, end]``; None when a settlement of that span is missing."""
    import bisect

    lo = bisect.bisect_right(stamps, start_ms)
    hi = bisect.bisect_right(stamps, end_ms)
    step = int(interval_h * _HOUR_MS)
    expected = end_ms // step - start_ms // step  # settlement stamps on the interval grid in (start, end]
    if hi - lo != expected or expected <= 0:
        return None
    return sum(rates[lo:hi])


def analyze_futures(store: MarketStore, req: FuturesAnalyzeRequest) -> dict[str, Any]:
    """The ``perphedge.analyze-futures/1`` document (plus a private ``_daily`` list for plots)."""
    sql = "SELECT * FROM futures_candles WHERE source = ? AND timeframe = '1d'"
    params: list[Any] = [req.source]
    if req.since:
        sql += " AND ts >= CAST(? AS TIMESTAMP)"
        params.append(f"{req.since} 00:00:00")
    if req.until:
        sql += " AND ts <= CAST(? AS TIMESTAMP)"
        params.append(f"{req.until} 00:00:00")
    where = getattr(store, "path", None) or "the store"
    present = store.query(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_name IN ('futures_candles', 'futures_settlements')"
    )
    if len(present) < 2:  # a store written before dated futures existed, opened read-only (not migrated)
        raise DataError(
            f"{where} holds no dated-futures tables: import futures/ into it with `perphedge data import --sample`"
        )
    candles = store.query(sql + " ORDER BY symbol, ts", params)
    if candles.empty:
        span = f" between {req.since or 'the start'} and {req.until or 'the end'}" if req.since or req.until else ""
        raise DataError(
            f"no dated-futures candles of {req.source}{span} in {where}: import them with "
            "`perphedge data import --sample` (futures/) or `perphedge data fetch --futures`"
        )
    settle = store.query(
        "SELECT symbol, expiry, settlement_price FROM futures_settlements WHERE source = ?", [req.source]
    )
    settlements = {str(r.symbol): float(r.settlement_price) for r in settle.itertuples()}
    daily: list[dict[str, Any]] = []
    contracts: list[dict[str, Any]] = []
    carries: list[dict[str, Any]] = []
    funding_cache: dict[str, tuple[list[int], list[float], float]] = {}
    skipped_funding = 0
    for symbol, g in candles.groupby("symbol", sort=False):
        contract = str(symbol)
        expiry = _ms(g["expiry"].iloc[0])
        perp = _perp_symbol(contract, req.source, expiry)
        g = _fill_spot(store, g, contract, req.source)
        if perp not in funding_cache:
            funding_cache[perp] = _funding(store, req.source, perp)
        stamps, rates, interval_h = funding_cache[perp]
        ann_kept: list[float] = []
        rows: list[dict[str, Any]] = []
        for r in g.itertuples():
            close_ms = _ms(r.ts) + F.DAY_MS
            days = F.days_to_expiry(close_ms, expiry)
            b = F.basis(float(r.close), float(r.spot_close))
            if not abs(b) < MAX_BASIS:  # a wrong stored price, not a basis: refuse rather than average it in
                raise DataError(
                    f"stored contract {req.source}:{contract} on {r.ts.date()}: close {float(r.close):,.6g} is "
                    f"{b:+.1%} from spot {float(r.spot_close):,.6g}, more than ±{MAX_BASIS:.0%}: re-import its candles"
                )
            ann = F.annualize(b, days)
            row = {
                "date": str(r.ts.date()),
                "contract": contract,
                "expiry": _iso(expiry),
                "days_to_expiry": days,
                "future_close": float(r.close),
                "spot_close": float(r.spot_close),
                "perp_close": None if r.perp_close is None or math.isnan(r.perp_close) else float(r.perp_close),
                "basis": b,
                "basis_annualized": ann,
            }
            rows.append(row)
            if days >= req.min_days:
                ann_kept.append(ann)
                funding = _funding_between(stamps, rates, interval_h, close_ms, expiry)
                if funding is None:
                    skipped_funding += 1
                    continue
                funding_ann = F.annualize(funding, days)
                carries.append(
                    {
                        "contract": contract,
                        "entry": row["date"],
                        "days": days,
                        "basis_locked": b,
                        "carry_annualized": ann,
                        "funding": funding,
                        "funding_annualized": funding_ann,
                        "spread_annualized": ann - funding_ann,
                    }
                )
        daily.extend(rows)
        last = rows[-1]
        price = settlements.get(contract)
        if price is not None and last["days_to_expiry"] < 1.0 and not abs(price / last["spot_close"] - 1) < MAX_BASIS:
            raise DataError(
                f"stored settlement of {req.source}:{contract}: {price:,.6g} is {price / last['spot_close'] - 1:+.1%} "
                f"from the last spot close {last['spot_close']:,.6g} before delivery: a wrong delivery price "
                "(re-import the settlements file)"
            )
        contracts.append(
            {
                "contract": contract,
                "expiry": _iso(expiry),
                "first": rows[0]["date"],
                "last": last["date"],
                "bars": len(rows),
                "perpetual": perp,
                "basis_annualized": _stats(ann_kept),
                "last_bar": {
                    "date": last["date"],
                    "days_to_expiry": last["days_to_expiry"],
                    "basis": last["basis"],
                },
                "settlement_price": price,
                # only when the range reaches the contract's last bar before delivery
                "settlement_vs_last_spot": (
                    None if price is None or last["days_to_expiry"] >= 1.0 else price / last["spot_close"] - 1.0
                ),
            }
        )
    contracts.sort(key=lambda c: c["expiry"])
    by_date: dict[str, list[dict[str, Any]]] = {}
    for row in daily:
        by_date.setdefault(str(row["date"]), []).append(row)
    term = [
        {
            "date": date,
            "contracts": [
                {k: r[k] for k in ("contract", "expiry", "days_to_expiry", "basis", "basis_annualized")}
                for r in sorted(rows, key=lambda x: x["expiry"])
            ],
        }
        for date, rows in sorted(by_date.items())
    ]
    carry_doc = {
        "entries": carries,
        "skipped_without_funding": skipped_funding,
        "carry_annualized": _stats([c["carry_annualized"] for c in carries]),
        "funding_annualized": _stats([c["funding_annualized"] for c in carries]),
        "spread_annualized": _stats([c["spread_annualized"] for c in carries]),
        "by_contract": [
            {
                "contract": c["contract"],
                "carry_annualized": _stats([x["carry_annualized"] for x in carries if x["contract"] == c["contract"]]),
                "funding_annualized": _stats(
                    [x["funding_annualized"] for x in carries if x["contract"] == c["contract"]]
                ),
                "spread_annualized": _stats(
                    [x["spread_annualized"] for x in carries if x["contract"] == c["contract"]]
                ),
            }
            for c in contracts
        ],
    }
    all_ann = [r["basis_annualized"] for r in daily if r["days_to_expiry"] >= req.min_days]
    return {
        "schema": ANALYZE_FUTURES_SCHEMA,
        "source": req.source,
        "since": req.since,
        "until": req.until,
        "min_days": req.min_days,
        "conventions": {
            "basis": "F/S - 1, F the contract's daily mark close, S spot's daily close",
            "days_to_expiry": "from the bar's close (ts + 1 day, 00:00 UTC) to delivery",
            "basis_annualized": "basis * 365 / days_to_expiry (simple)",
            "carry": "a short dated future entered at a bar's close and held to delivery locks `basis` of the "
            "spot notional; annualised over the days held",
            "funding": "sum of the perpetual's rates settled in (entry close, delivery], annualised over the same "
            "days; positive = received by a short",
            "spread": "carry_annualized - funding_annualized (positive: the dated future earned more)",
            "percentiles": f"linear interpolation over bars with at least {req.min_days:g} days to expiry",
        },
        "contracts": contracts,
        "basis_annualized": _stats(all_ann),
        "daily": daily,
        "term_structure": term,
        "carry_vs_funding": carry_doc,
    }


def run_analyze_futures(req: FuturesAnalyzeRequest) -> dict[str, Any]:
    """Open the market store (read-only) and analyse its dated futures."""
    from perphedge.data.store import MarketStore

    with MarketStore(req.store_path, read_only=True) as store:
        return analyze_futures(store, req)
