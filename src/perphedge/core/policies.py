"""Hedge policies: each turns signals known at a day's close into that day's target hedge ratio.

Every policy is a small rule over arrays indexed by day; element ``t`` uses only data up to and
including day ``t`` (the backtest acts at that close). The result is ``(target, allowed)``:
the hedge ratio wanted at each close and whether rebalancing is allowed that day; the kernel
rebalances when the hedge is off the target by more than the policy's ``band``.

Kinds:

* ``static`` — a constant ratio; ``drift_band`` — the same, rebalancing only outside ``band``.
* ``calendar`` — a constant ratio, rebalanced every ``every_days`` days only.
* ``schedule`` — dated outlooks → ratio (``[(day, ratio), ...]``, piecewise constant).
* ``fear_greed`` — the Fear & Greed index of the day → ratio by a table of upper bounds.
* ``volatility`` — the proxy's 30-day realised volatility (annualised, 365 days) → ratio by bands.
* ``funding_aware`` — cut the ratio when the hedge's trailing funding *cost* (negative funding
  for a short) exceeds a threshold; raise it when carry is strongly positive; capped.
* ``trend`` — ``ratio_on`` while the proxy closes below its N-day average, else ``ratio_off``.
* ``events`` — a base ratio, raised inside windows around listed days.
* ``beta`` — a constant ratio of the β-weighted exposure, β re-estimated on a trailing window
  (the exposure scaling is done by the caller; here it is a static ratio).

Nothing falls back silently: :func:`policy_decisions` returns, with the targets, the reason of
every bar whose ratio did not come from the policy's rule on a full signal (no Fear & Greed value
that day, a volatility above the last band, a day before the first schedule entry, a trailing
window not yet full, …); ``""`` where the rule applied as stated.

:func:`policy_decision_at` is the decision of one bar (a live loop's tick) computed by the same rule on
a trailing slice, equal to that bar of :func:`policy_decisions` over a run starting at ``origin``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from perphedge.errors import ConfigError

__all__ = [
    "KINDS",
    "BarDecision",
    "PolicyDecisions",
    "PolicySpec",
    "lookback_bars",
    "policy_decision_at",
    "policy_decisions",
    "policy_targets",
]

Array = NDArray[np.float64]
KINDS = (
    "static",
    "drift_band",
    "calendar",
    "schedule",
    "fear_greed",
    "volatility",
    "funding_aware",
    "trend",
    "events",
    "beta",
)

DEFAULT_FEAR_GREED = ((20.0, 0.625), (39.0, 0.4), (60.0, 0.25), (79.0, 0.15), (100.0, 0.05))


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """A policy and its parameters (days are integer days since 1970-01-01, UTC)."""

    kind: str
    ratio: float = 0.5
    band: float = 0.10
    every_days: int = 30
    schedule: tuple[tuple[int, float], ...] = ()
    table: tuple[tuple[float, float], ...] = DEFAULT_FEAR_GREED
    vol_bands: tuple[tuple[float, float], ...] = ((0.4, 0.25), (0.8, 0.5), (math.inf, 0.75))
    vol_days: int = 30
    lookback_days: int = 7
    cost_threshold_8h: float = 0.0001
    rich_threshold_8h: float = 0.0005
    cut: float = 0.7
    boost: float = 1.2
    min_ratio: float = 0.0
    max_ratio: float = 1.5
    sma_days: int = 50
    ratio_on: float = 1.0
    ratio_off: float = 0.0
    events: tuple[tuple[int, float, int, int], ...] = ()  # (day, ratio, days before, days after)
    beta_window: int = 180
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"invalid `policy.kind`: must be one of {', '.join(KINDS)}, was {self.kind!r}")
        for name in ("ratio", "ratio_on", "ratio_off", "min_ratio", "max_ratio"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 2):
                raise ConfigError(f"invalid `policy.{name}`: must be in [0, 2], was {v!r}")
        if not (math.isfinite(self.band) and 0 <= self.band < 1):
            raise ConfigError(f"invalid `policy.band`: must be in [0, 1), was {self.band!r}")
        for name in ("every_days", "vol_days", "lookback_days", "sma_days", "beta_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"invalid `policy.{name}`: must be >= 1, was {getattr(self, name)!r}")
        for _, r in (*self.schedule, *self.table, *self.vol_bands):
            if not (math.isfinite(r) and 0 <= r <= 2):
                raise ConfigError(f"invalid ratio in `policy`: must be in [0, 2], was {r!r}")
        if self.kind == "fear_greed":
            _increasing("table", [b for b, _ in self.table])
            if self.table[0][0] < 0 or self.table[-1][0] < 100:
                raise ConfigError(
                    "invalid `policy.table`: must cover the index from 0 to 100 (first bound >= 0, last >= 100), "
                    f"bounds were {[b for b, _ in self.table]}"
                )
        if self.kind == "volatility":
            _increasing("bands", [b for b, _ in self.vol_bands])
        if self.kind == "funding_aware":
            if not self.cut <= 1 <= self.boost:
                raise ConfigError(
                    f"invalid `policy.cut`/`boost`: need cut <= 1 <= boost, were {self.cut}, {self.boost}"
                )
            if not self.min_ratio <= self.ratio <= self.max_ratio:
                raise ConfigError(
                    f"invalid `policy.ratio`: must lie in [min_ratio, max_ratio] = [{self.min_ratio}, "
                    f"{self.max_ratio}], was {self.ratio}"
                )
            if not 0 <= self.cost_threshold_8h <= self.rich_threshold_8h:
                raise ConfigError(
                    "invalid `policy.rich_threshold_8h`: need 0 <= cost_threshold_8h <= rich_threshold_8h, were "
                    f"{self.cost_threshold_8h}, {self.rich_threshold_8h}"
                )


def _increasing(name: str, bounds: list[float]) -> None:
    if not bounds:
        raise ConfigError(f"invalid `policy.{name}`: must list at least one entry")
    for i in range(1, len(bounds)):
        if not bounds[i] > bounds[i - 1]:
            raise ConfigError(
                f"invalid `policy.{name}[{i}]`: upper bounds must strictly increase, {bounds[i]} follows "
                f"{bounds[i - 1]}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDecisions:
    """A policy's output per bar: ``target`` ratio, rebalancing ``allowed`` (1/0), the ``band``, and the
    ``fallback`` reason of each bar (``""`` where the rule applied on a full signal)."""

    target: Array
    allowed: Array
    band: float
    fallback: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BarDecision:
    """A policy's decision at one bar: ``target`` ratio, rebalancing ``allowed`` (1/0), ``band`` and the
    ``fallback`` reason (``""`` where the rule applied on a full signal)."""

    target: float
    allowed: float
    band: float
    fallback: str


def _table(values: Array, table: Sequence[tuple[float, float]], default: float) -> tuple[Array, list[bool]]:
    """Ratio of each value by a table of upper bounds; ``default`` (and a True flag) where no bound holds it."""
    bounds = sorted(table)
    out = np.full(len(values), default)
    missed = [True] * len(values)
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        for upper, ratio in bounds:
            if v <= upper:
                out[i] = ratio
                missed[i] = False
                break
    return out, missed


def _ffill(values: Array) -> Array:
    out = values.copy()
    last = math.nan
    for i, v in enumerate(out):
        if math.isnan(v):
            out[i] = last
        else:
            last = v
    return out


def policy_targets(
    spec: PolicySpec,
    *,
    days: NDArray[np.int64],
    proxy_close: Array,
    fear_greed: Array | None = None,
    funding_daily: Array | None = None,
    periods_per_year: float = 365.0,
    bar_hours: float = 24.0,
) -> tuple[Array, Array, float]:
    """``(target ratio per bar, rebalancing allowed per bar, band)`` for ``spec`` (see :func:`policy_decisions`)."""
    d = policy_decisions(
        spec,
        days=days,
        proxy_close=proxy_close,
        fear_greed=fear_greed,
        funding_daily=funding_daily,
        periods_per_year=periods_per_year,
        bar_hours=bar_hours,
    )
    return d.target, d.allowed, d.band


def policy_decisions(
    spec: PolicySpec,
    *,
    days: NDArray[np.int64],
    proxy_close: Array,
    fear_greed: Array | None = None,
    funding_daily: Array | None = None,
    periods_per_year: float = 365.0,
    bar_hours: float = 24.0,
    offset: int = 0,
) -> PolicyDecisions:
    """Targets, rebalancing days, band and the fallback reason of every bar for ``spec``.

    Bars are days by default; for 8h bars pass ``bar_hours=8`` and ``periods_per_year=1095`` (the spec's
    windows are then in bars, and ``funding_daily`` is funding per bar).

    ``fear_greed`` (per bar, NaN where unknown) and ``funding_daily`` (fraction of notional per bar,
    positive = a short receives) are needed by the policies that use them. ``offset`` is the index of
    ``days[0]`` counted from the policy's origin (only ``calendar`` uses it: it rebalances on the bars
    ``offset + i`` that are multiples of ``every_days``).
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, was {offset}")
    return _decisions(
        spec,
        days=days,
        proxy_close=proxy_close,
        fear_greed=fear_greed,
        funding_daily=funding_daily,
        periods_per_year=periods_per_year,
        bar_hours=bar_hours,
        offset=offset,
        from_bar=0,
    )


def lookback_bars(spec: PolicySpec) -> int:
    """Bars before ``t`` that the rule of ``spec`` reads to decide bar ``t`` (its trailing window).

    0 for static, drift_band, beta, calendar, schedule and events; ``vol_days`` for volatility (returns
    need one more close); ``lookback_days − 1`` for funding_aware; ``sma_days − 1`` for trend. Fear &
    Greed reads back to the last known value (forward fill), which :func:`policy_decision_at` finds.
    """
    if spec.kind == "volatility":
        return spec.vol_days
    if spec.kind == "funding_aware":
        return spec.lookback_days - 1
    if spec.kind == "trend":
        return spec.sma_days - 1
    return 0


def policy_decision_at(
    spec: PolicySpec,
    *,
    t: int,
    origin: int = 0,
    days: NDArray[np.int64],
    proxy_close: Array,
    fear_greed: Array | None = None,
    funding_daily: Array | None = None,
    periods_per_year: float = 365.0,
    bar_hours: float = 24.0,
) -> BarDecision:
    """The decision at bar ``t`` of a policy that started at bar ``origin`` (arrays indexed by bar, as for
    :func:`policy_decisions`); equal to ``policy_decisions(...)[t − origin]`` over the arrays from ``origin``.

    The rule runs on the trailing slice ``[max(origin, t − lookback_bars(spec)), t]`` with the offset of
    its first bar, so the "window not yet full" rules and the calendar count from ``origin``. Fear &
    Greed starts the slice at the last known value at or before ``t`` (or at ``origin``), so the forward
    fill and the fallback texts are the same. funding_aware and trend average their window as a
    difference of running sums from the origin (as the backtest does); their slice starts at ``origin``
    so the sums are the same to the last bit, and only bar ``t`` is evaluated.
    """
    n = len(days)
    if not 0 <= origin <= t < n:
        raise ValueError(f"need 0 <= origin <= t < {n} bars, were origin={origin}, t={t}")
    lo = max(origin, t - lookback_bars(spec))
    if spec.kind in ("funding_aware", "trend"):
        lo = origin
    elif spec.kind == "fear_greed" and fear_greed is not None:
        known = np.nonzero(~np.isnan(np.asarray(fear_greed[origin : t + 1], dtype=np.float64)))[0]
        lo = origin + int(known[-1]) if len(known) else origin
    d = _decisions(
        spec,
        days=days[lo : t + 1],
        proxy_close=proxy_close[lo : t + 1],
        fear_greed=None if fear_greed is None else fear_greed[lo : t + 1],
        funding_daily=None if funding_daily is None else funding_daily[lo : t + 1],
        periods_per_year=periods_per_year,
        bar_hours=bar_hours,
        offset=lo - origin,
        from_bar=t - lo,
    )
    return BarDecision(target=float(d.target[-1]), allowed=float(d.allowed[-1]), band=d.band, fallback=d.fallback[-1])


def _decisions(
    spec: PolicySpec,
    *,
    days: NDArray[np.int64],
    proxy_close: Array,
    fear_greed: Array | None,
    funding_daily: Array | None,
    periods_per_year: float,
    bar_hours: float,
    offset: int,
    from_bar: int,
) -> PolicyDecisions:
    """:func:`policy_decisions`; the per-bar loops of funding_aware and trend start at bar ``from_bar`` (the bars
    before it keep the base ratio: :func:`policy_decision_at` reads only the last one)."""
    n = len(days)
    allowed = np.ones(n)
    band = spec.band
    k = spec.kind
    why = [""] * n
    if k in ("static", "drift_band", "beta"):
        target = np.full(n, spec.ratio)
    elif k == "calendar":
        target = np.full(n, spec.ratio)
        allowed = np.where(((offset + np.arange(n)) % spec.every_days) == 0, 1.0, 0.0)
        band = 0.0
    elif k == "schedule":
        target = np.full(n, spec.ratio)
        for day, ratio in sorted(spec.schedule):
            target[days >= day] = ratio
        first = min(day for day, _ in spec.schedule) if spec.schedule else None
        for t in range(n):
            if first is None or days[t] < first:
                why[t] = "before the first schedule entry: the policy's base ratio applies"
    elif k == "fear_greed":
        if fear_greed is None:
            raise ConfigError("policy fear_greed needs the Fear & Greed index in the store (`perphedge data import`)")
        raw = np.asarray(fear_greed, dtype=np.float64)
        filled = _ffill(raw)
        target, missed = _table(filled, spec.table, spec.ratio)
        for t in range(n):
            if math.isnan(filled[t]):
                why[t] = "no Fear & Greed value yet: the policy's base ratio applies"
            elif math.isnan(raw[t]):
                why[t] = "no Fear & Greed value that day: the last known value applies"
            elif missed[t]:
                why[t] = f"Fear & Greed value {raw[t]:g} above the table: the policy's base ratio applies"
    elif k == "volatility":
        r = np.full(n, np.nan)
        r[1:] = np.diff(np.log(proxy_close))
        vol = np.full(n, np.nan)
        for t in range(spec.vol_days, n):
            vol[t] = float(np.std(r[t - spec.vol_days + 1 : t + 1], ddof=1)) * math.sqrt(periods_per_year)
        bands = tuple((b if math.isfinite(b) else 1e9, ratio) for b, ratio in spec.vol_bands)
        target, missed = _table(vol, bands, spec.ratio)
        last = max(b for b, _ in spec.vol_bands)
        for t in range(n):
            if math.isnan(vol[t]):
                why[t] = f"volatility window of {spec.vol_days} bars not yet full: the policy's base ratio applies"
            elif missed[t]:
                why[t] = f"volatility above the last band ({last:.0%}): the policy's base ratio applies"
    elif k == "funding_aware":
        if funding_daily is None:
            raise ConfigError("policy funding_aware needs the hedge contract's funding (history or assumed rate)")
        f = np.asarray(funding_daily, dtype=np.float64)
        target = np.full(n, spec.ratio)
        csum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(f))])
        for t in range(from_bar, n):
            lo = max(0, t - spec.lookback_days + 1)
            per_8h = (csum[t + 1] - csum[lo]) / (t + 1 - lo) * 8.0 / bar_hours  # per bar → per 8h
            if per_8h < -spec.cost_threshold_8h:  # the short pays: hedge less
                target[t] = spec.ratio * spec.cut
            elif per_8h > spec.rich_threshold_8h:  # the short is paid well: hedge more
                target[t] = spec.ratio * spec.boost
            if np.isnan(f[lo : t + 1]).any():
                why[t] = "no funding rate in the trailing window: missing rates count as 0"
            elif t + 1 - lo < spec.lookback_days:
                why[t] = f"funding window of {spec.lookback_days} bars not yet full: the bars so far are averaged"
        target = np.clip(target, spec.min_ratio, spec.max_ratio)
    elif k == "trend":
        csum = np.concatenate([[0.0], np.cumsum(proxy_close)])
        target = np.full(n, spec.ratio_off)
        for t in range(from_bar, n):
            lo = max(0, t - spec.sma_days + 1)
            sma = (csum[t + 1] - csum[lo]) / (t + 1 - lo)
            target[t] = spec.ratio_on if proxy_close[t] < sma else spec.ratio_off
            if t + 1 - lo < spec.sma_days:
                why[t] = f"average window of {spec.sma_days} bars not yet full: the bars so far are averaged"
    elif k == "events":
        target = np.full(n, spec.ratio)
        for day, ratio, before, after in spec.events:
            target[(days >= day - before) & (days <= day + after)] = ratio
    else:  # pragma: no cover - guarded in __post_init__
        raise ConfigError(f"unknown policy {k!r}")
    return PolicyDecisions(target=np.asarray(target, dtype=np.float64), allowed=allowed, band=band, fallback=tuple(why))
