"""``perphedge plan`` with a dated future as the hedge leg: the basis locked for the horizon, the roll,
margin and liquidation at the future's price, scenarios with a basis change, and "perpetual vs dated".

The plan itself (sizing, collateral, spot scenarios) is the ordinary one (:mod:`perphedge.usecases.plan`),
with no funding on a dated leg; :func:`dated_section` adds the ``dated`` block to its document:

* the future's price ``F0``: ``--future-price``, else its stored daily close of ``--as-of``;
* ``now`` is the close of the ``--as-of`` day (00:00 UTC the next day), else the current time;
* ``--horizon 90d`` (default: to delivery); past delivery it needs ``--roll-days N`` (roll N days before
  delivery; the basis after the roll is assumed equal, annualised, to the one locked now — stated);
* margin and liquidation of the leg at ``F0`` by the perpetual's method and tiers (the instrument's);
* scenarios: each plan scenario with the basis unchanged, converged to 0, and moved by ``--basis-shock``;
* expected carry over the horizon: dated = basis locked (pro rata over the days held when the horizon ends
  before delivery, assuming the basis decays linearly), perpetual = the funding assumption
  (``funding_rate_8h``) over the same days.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from perphedge.core import futures as F
from perphedge.core.contracts import Side, bankruptcy_price, initial_margin, liquidation_price, pnl
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from perphedge.core.instruments import Instrument
    from perphedge.usecases.plan import PlanOutcome

__all__ = ["MAX_BASIS", "DatedOptions", "dated_section", "roll_schedule"]

#: A future further than this from spot (F/S − 1) is refused as a wrong price, not planned.
MAX_BASIS = 0.5


class DatedOptions:
    """The plan flags of a dated leg (checked on construction: one line per wrong value)."""

    __slots__ = ("basis_shock", "future_price", "horizon_days", "roll_days")

    def __init__(
        self,
        *,
        horizon_days: int | None = None,
        roll_days: int | None = None,
        future_price: float | None = None,
        basis_shock: float = -0.02,
    ) -> None:
        if future_price is not None and not (math.isfinite(future_price) and 0 < future_price < 1e12):
            raise ConfigError(f"invalid `--future-price`: must be a finite price > 0 and < 1e12, was {future_price!r}")
        if roll_days is not None and (isinstance(roll_days, bool) or roll_days < 1):
            raise ConfigError(f"invalid `--roll-days`: must be a whole number of days >= 1, was {roll_days!r}")
        if not (math.isfinite(basis_shock) and -0.5 < basis_shock < 0.5):
            raise ConfigError(
                f"invalid `--basis-shock`: a change of the basis as a fraction of spot in (-0.5, 0.5), e.g. -0.02, "
                f"was {basis_shock!r}"
            )
        self.horizon_days = horizon_days
        self.roll_days = roll_days
        self.future_price = future_price
        self.basis_shock = basis_shock

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.horizon_days, self.roll_days, self.future_price))


def roll_schedule(inst: Instrument, now_ms: int, horizon_days: float, roll_days: int) -> list[tuple[int, str, str]]:
    """Every roll of a short on ``inst`` held ``horizon_days`` from ``now_ms``: (roll time, from, into).

    Each roll goes ``roll_days`` before the held contract's delivery into the venue's next quarterly (last
    Friday of March/June/September/December) that delivers more than ``roll_days`` after the roll, so a
    horizon of a year on a quarterly rolls about four times, each paying both legs' fees.
    """
    from perphedge.specs.futures import dated_symbol, expiry_listed, series_for

    assert inst.expiry_ms is not None
    found = series_for(inst.exchange, inst.symbol)
    if found is None:
        raise ConfigError(f"{inst.id}: not a dated future of a known series: cannot plan its rolls")
    series = found[0]
    end_ms = now_ms + round(horizon_days * F.DAY_MS)
    out: list[tuple[int, str, str]] = []
    expiry = inst.expiry_ms
    near = inst.id
    while (when := F.roll_date_ms(expiry, roll_days)) < end_ms:
        day = dt.datetime.fromtimestamp(when / 1000, tz=dt.UTC).date() + dt.timedelta(days=1)
        while not (
            expiry_listed("last_friday_of_quarter", day) and series.expiry_ms(day) - when > roll_days * F.DAY_MS
        ):
            day += dt.timedelta(days=1)
        far = dated_symbol(series, day)
        out.append((when, near, far))
        near, expiry = far, series.expiry_ms(day)
    return out


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stored_future_price(inst: Instrument, as_of: str, store_path: str | None) -> float:
    from perphedge.data.store import MarketStore

    with MarketStore(store_path, read_only=True) as store:
        tables = store.query("SELECT table_name FROM information_schema.tables WHERE table_name = 'futures_candles'")
        if tables.empty:
            raise DataError(f"--as-of {as_of}: the store holds no dated futures; give --future-price")
        sql = "SELECT ts, close FROM futures_candles WHERE source = ? AND symbol = ? AND timeframe = '1d'"
        params: list[Any] = [inst.exchange, inst.symbol]
        if as_of != "latest":
            sql += " AND ts <= CAST(? AS TIMESTAMP)"
            params.append(f"{as_of} 00:00:00")
        rows = store.query(sql + " ORDER BY ts DESC LIMIT 1", params)
    if rows.empty or (as_of != "latest" and str(rows["ts"].iloc[0].date()) != as_of):
        raise DataError(
            f"--as-of {as_of}: no stored daily close of {inst.id} that day; give --future-price (or import its candles)"
        )
    return float(rows["close"].iloc[0])


def _now_ms(as_of: str | None, store_day: str | None) -> int:
    day = store_day or (as_of if as_of not in (None, "latest") else None)
    if day is not None:
        d = dt.date.fromisoformat(day)
        return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp() * 1000) + F.DAY_MS
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def dated_section(
    doc: dict[str, Any],
    outcome: PlanOutcome,
    options: DatedOptions,
    *,
    as_of: str | None,
    store_path: str | None,
) -> dict[str, Any]:
    """Add the ``dated`` block to a plan document whose leg is a dated future (returns ``doc``).

    A plan without a dated leg is returned unchanged, unless dated-only flags were given (refused).
    """
    legs = [leg for leg in outcome.plan.legs if leg.instrument.is_dated]
    if not legs:
        if options.given:
            raise ConfigError(
                "invalid `--horizon`/`--roll-days`/`--future-price`: they apply to a dated-futures leg "
                "(e.g. --instrument binance:BTCUSD_210924)"
            )
        return doc
    if len(outcome.plan.legs) != 1:
        raise ConfigError("a dated future is planned as the one hedge leg (`instrument:`), not inside `legs:`")
    leg = legs[0]
    inst = leg.instrument
    assert inst.expiry_ms is not None
    spot = leg.entry_price  # the plan prices the leg at its coin's spot
    now = _now_ms(as_of, None)
    try:
        left = F.days_to_expiry(now, inst.expiry_ms)
    except ConfigError:
        raise ConfigError(
            f"{inst.id}: contract expired: it delivered on {_iso(inst.expiry_ms)}, before "
            f"{'the close of ' + as_of if as_of and as_of != 'latest' else 'now'}; name a later expiry"
        ) from None
    future = options.future_price
    price_source = "--future-price"
    if future is None:
        if as_of is None:
            raise ConfigError(
                f"{inst.id}: a dated leg needs its price: give --future-price, or --as-of DAY with the contract's "
                "candles in the store"
            )
        future = _stored_future_price(inst, as_of, store_path)
        price_source = f"store close {as_of}"
    horizon = float(options.horizon_days) if options.horizon_days is not None else left
    roll = options.roll_days is not None
    covered = F.check_horizon(now, horizon, inst.expiry_ms, roll=roll)
    if roll:
        assert options.roll_days is not None
        F.check_roll_days(options.roll_days, left, "--roll-days")
    b0 = F.basis(future, spot)
    if not -MAX_BASIS < b0 < MAX_BASIS:  # 1e-300 or a mistyped digit: refuse, never a table of infinities
        raise ConfigError(
            f"invalid `--future-price` of {inst.id}: {future:,.6g} is {b0:+.1%} from spot {spot:,.2f}; a dated future "
            f"trades within ±{MAX_BASIS:.0%} of spot (check the price, or the contract)"
            if price_source == "--future-price"
            else f"{inst.id}: its stored close {future:,.6g} ({price_source}) is {b0:+.1%} from spot {spot:,.2f}, "
            f"more than ±{MAX_BASIS:.0%}: the stored candles are wrong (re-import them) or give --future-price"
        )
    b_ann = F.annualize(b0, left)
    size = leg.size
    notional = leg.notional_usd
    lev = leg.leverage
    # margin and liquidation at the future's price, by the perpetual's method and tiers
    im = initial_margin(inst.kind, size, future, lev)
    liq = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side=Side.SHORT,
        size=size,
        entry=future,
        margin=im,
        schedule=inst.liquidation_schedule,  # OKX/BitMEX reserve the fee to close, as the perpetual's plan does
    )
    bp = bankruptcy_price(inst.kind, Side.SHORT, size, future, im)
    # expected carry over the horizon
    if horizon <= left:
        dated_fraction = b0 * covered / left  # linear decay of the basis to delivery (assumption)
        rolls: list[dict[str, Any]] = []
    else:
        assert options.roll_days is not None
        held = left - options.roll_days
        dated_fraction = b0 * held / left + b_ann * (horizon - held) / 365.0
        rolls = [
            {
                "date": _iso(when)[:10],
                "from": near,
                "into": far,
                "days_before_expiry": options.roll_days,
                "assumed_basis_annualized": b_ann,
                "fees_usd": 2 * inst.taker_fee * notional,
            }
            for when, near, far in roll_schedule(inst, now, horizon, options.roll_days)
        ]
    from perphedge.core.hedge import CollateralSource

    bought_coins = leg.collateral_amount if inst.is_inverse and leg.collateral_source is CollateralSource.BUY else 0.0
    funding_8h = float(doc["hedge"].get("funding_rate_8h") or 0.0)
    perp_fraction = funding_8h * 3.0 * horizon
    scenarios = []
    for s in outcome.scenarios:
        r = s.proxy_return
        if r is None or not math.isfinite(r) or r <= -1:
            continue
        s1 = spot * (1 + r)
        for label, b1 in (("unchanged", b0), ("converged", 0.0), ("shock", b0 + options.basis_shock)):
            f1 = s1 * (1 + b1)
            if f1 <= 0:
                continue
            hedge = pnl(inst.kind, Side.SHORT, size, future, f1)
            hedge_usd = hedge * s1 if inst.is_inverse else hedge
            hedge_usd += bought_coins * (s1 - spot)  # coin bought as margin is a long too
            scenarios.append(
                {
                    "name": s.name,
                    "proxy_return": r,
                    "basis": label,
                    "basis_after": b1,
                    "basis_change": b1 - b0,
                    "spot_pnl_usd": s.spot_pnl_usd,
                    "hedge_pnl_usd": hedge_usd,
                    "net_pnl_usd": s.spot_pnl_usd + hedge_usd,
                }
            )
    doc["dated"] = {
        "instrument": inst.id,
        "expiry": _iso(inst.expiry_ms),
        "days_to_expiry": left,
        "future_price": future,
        "future_price_source": price_source,
        "spot_price": spot,
        "basis": b0,
        "basis_annualized": b_ann,
        "horizon_days": horizon,
        "days_covered_by_locked_basis": covered,
        "roll_needed": bool(rolls),
        "rolls": rolls,
        "margin": {
            "method": inst.liquidation_method.value,
            "method_of": "the venue's perpetual (same tiers and formula)",
            "initial_margin": im,
            "margin_asset": inst.settle,
            "liquidation_price": liq.price,
            "maintenance_margin_rate": liq.mmr,
            "bankruptcy_price": bp,
        },
        "scenarios": scenarios,
        "comparison": [
            {
                "hedge": f"dated {inst.symbol}",
                "carry_annualized": b_ann,
                "carry_usd": dated_fraction * notional,
                "assumption": "basis locked at entry, earned as it converges (linearly to delivery)"
                + ("; after the roll the same annualised basis" if rolls else ""),
            },
            {
                "hedge": "perpetual",
                "carry_annualized": funding_8h * 3 * 365,
                "carry_usd": perp_fraction * notional,
                "assumption": f"funding {funding_8h:.4%} per 8h for a short (positive: received) over "
                f"{horizon:g} days, the plan's `funding_rate_8h`",
            },
        ],
        "dated_minus_perpetual_usd": (dated_fraction - perp_fraction) * notional,
    }
    if inst.is_inverse:
        # an inverse short of Q USD at F0 offsets Q/F0 coin, not Q/S0: the plan sized it at spot
        doc["dated"]["coin_delta_offset_at_future_price"] = size / future
        doc["dated"]["contracts_at_future_price"] = leg.contracts * future / spot
        doc["warnings"].append(
            {
                "code": "RoundingWarning",
                "message": f"{inst.id}: the plan sizes the inverse short at spot; at the future's price "
                f"{future:,.2f} its {size:,.0f} USD offset {size / future:.6g} {inst.base}, "
                f"{1 - spot / future:+.2%} less than at spot: for the same coin delta trade about "
                f"{leg.contracts * future / spot:,.0f} contracts",
            }
        )
    doc.setdefault("warnings", []).append(
        {
            "code": "AssumptionWarning",
            "message": f"{inst.id} is a dated future: no funding; its carry is the basis "
            f"{b0:+.2%} ({b_ann:+.1%}/yr) locked at {future:,.2f} vs spot {spot:,.2f}, "
            f"delivery {_iso(inst.expiry_ms)}",
        }
    )
    return doc
