"""Portfolio files (YAML): pydantic models, strict (unknown keys are errors, frozen).

Every problem becomes one :class:`~perphedge.errors.ConfigError` line naming the file, the field
and the rule: ``examples/x.yaml: field `holdings[2].quantity`: must be > 0, was -1``.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from perphedge.errors import ConfigError

__all__ = [
    "HedgeModel",
    "HoldingModel",
    "LegModel",
    "PolicyModel",
    "PortfolioFile",
    "RunFile",
    "load_portfolio_file",
    "parse_portfolio",
    "parse_run",
    "read_yaml",
]

_STRICT = ConfigDict(defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)


class HoldingModel(BaseModel):
    """One holding: ``asset`` and either ``quantity`` (units) or ``value_usd``."""

    model_config = _STRICT
    asset: str = Field(min_length=1)
    quantity: float | None = None
    value_usd: float | None = None
    group: str | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> HoldingModel:
        if (self.quantity is None) == (self.value_usd is None):
            raise ValueError("give exactly one of `quantity` or `value_usd`")
        amount = self.quantity if self.quantity is not None else self.value_usd
        name = "quantity" if self.quantity is not None else "value_usd"
        if amount is None or amount <= 0:
            raise ValueError(f"`{name}` must be > 0, was {amount!r}")
        return self


class LegModel(BaseModel):
    """A proxy leg with its weight."""

    model_config = _STRICT
    instrument: str = Field(min_length=3)
    weight: float = Field(gt=0, le=1)


class HedgeModel(BaseModel):
    """The ``hedge:`` block; any field may be overridden on the command line."""

    model_config = _STRICT
    ratio: float = Field(default=1.0, ge=0, le=2)
    scope: str = "all"
    method: Literal["notional", "beta", "min_variance"] = "notional"
    instrument: str | None = None
    legs: list[LegModel] | None = None
    proxy: str | None = None
    leverage: float = Field(default=2.0, ge=1)
    collateral: Literal["buy", "holdings", "stable"] | None = None
    funding_rate_8h: float = Field(default=0.0001, ge=-0.05, le=0.05)

    @model_validator(mode="after")
    def _legs(self) -> HedgeModel:
        if self.instrument is not None and self.legs is not None:
            raise ValueError("give `instrument` or `legs`, not both")
        if self.legs is not None and not self.legs:
            raise ValueError("`legs` must list at least one leg")
        if self.legs is not None and abs(sum(leg.weight for leg in self.legs) - 1.0) > 1e-9:
            raise ValueError(f"`legs` weights must sum to 1, sum to {sum(leg.weight for leg in self.legs):g}")
        return self


class PortfolioFile(BaseModel):
    """A portfolio file: holdings, prices, optional betas and hedge block."""

    model_config = _STRICT
    name: str = "portfolio"
    prices: dict[str, float] = Field(default_factory=dict)
    holdings: list[HoldingModel] = Field(min_length=1)
    betas: dict[str, float] = Field(default_factory=dict)
    hedge: HedgeModel = Field(default_factory=HedgeModel)

    @field_validator("prices")
    @classmethod
    def _prices_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for asset, price in value.items():
            if not math.isfinite(price) or price <= 0:
                raise ValueError(f"price of {asset} must be > 0, was {price!r}")
        return value


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the portfolio format in the README)"
    if kind == "missing":
        return "is required"
    if "input" in err and kind not in ("model_type", "value_error"):
        inp = err["input"]
        if not isinstance(inp, dict | list):
            return f"{msg.lower()}, was {inp!r}"
    return msg


def parse_portfolio(doc: Any, source: str) -> PortfolioFile:
    """Validate a parsed YAML document; ConfigError names ``source`` and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: must be a YAML mapping with `holdings:`, was {type(doc).__name__}")
    try:
        return PortfolioFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(tuple(err.get("loc", ())))
        where = f"field `{loc}`" if loc else "portfolio"
        raise ConfigError(f"{source}: {where}: {_message(err)}") from None


def load_portfolio_file(path: str | Path) -> PortfolioFile:
    """Read and validate a portfolio YAML file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: {where}malformed YAML: {problem}") from None
    return parse_portfolio(doc, str(p))


# ---------------------------------------------------------------------------------------------- run files


class ScheduleEntry(BaseModel):
    """From ``from`` on, hedge ``ratio``."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)
    start: date = Field(alias="from")
    ratio: float = Field(ge=0, le=2)


class TableEntry(BaseModel):
    """Up to index value ``max`` (inclusive), hedge ``ratio``."""

    model_config = _STRICT
    max: float
    ratio: float = Field(ge=0, le=2)


class VolBand(BaseModel):
    """Up to annualised volatility ``max_vol``, hedge ``ratio``."""

    model_config = _STRICT
    max_vol: float = Field(gt=0)
    ratio: float = Field(ge=0, le=2)


class EventEntry(BaseModel):
    """Around ``date`` (``before_days`` … ``after_days``), hedge ``ratio``."""

    model_config = _STRICT
    date: date
    ratio: float = Field(ge=0, le=2)
    before_days: int = Field(default=3, ge=0, le=3650)
    after_days: int = Field(default=7, ge=0, le=3650)


_POLICY_FIELDS: dict[str, set[str]] = {
    "static": {"ratio", "band"},
    "drift_band": {"ratio", "band"},
    "calendar": {"ratio", "every_days"},
    "schedule": {"ratio", "band", "schedule"},
    "fear_greed": {"ratio", "band", "table"},
    "volatility": {"ratio", "band", "bands", "vol_days"},
    "funding_aware": {
        "ratio",
        "band",
        "lookback_days",
        "cost_threshold_8h",
        "rich_threshold_8h",
        "cut",
        "boost",
        "min_ratio",
        "max_ratio",
    },
    "trend": {"band", "sma_days", "ratio_on", "ratio_off"},
    "events": {"ratio", "band", "events"},
    "beta": {"ratio", "band", "window_days"},
}


class PolicyModel(BaseModel):
    """A hedge policy; which fields apply depends on ``kind`` (others are errors)."""

    model_config = _STRICT
    kind: Literal[
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
    ] = "static"
    ratio: float = Field(default=0.5, ge=0, le=2)
    band: float = Field(default=0.10, ge=0, lt=1)
    every_days: int = Field(default=30, ge=1, le=3650)
    schedule: list[ScheduleEntry] | None = None
    table: list[TableEntry] | None = None
    bands: list[VolBand] | None = None
    vol_days: int = Field(default=30, ge=5, le=3650)
    lookback_days: int = Field(default=7, ge=1, le=3650)
    cost_threshold_8h: float = Field(default=0.0001, ge=0, le=0.05)
    rich_threshold_8h: float = Field(default=0.0005, ge=0, le=0.05)
    cut: float = Field(default=0.7, ge=0, le=2)
    boost: float = Field(default=1.2, ge=0, le=2)
    min_ratio: float = Field(default=0.0, ge=0, le=2)
    max_ratio: float = Field(default=1.5, ge=0, le=2)
    sma_days: int = Field(default=50, ge=2, le=3650)
    ratio_on: float = Field(default=1.0, ge=0, le=2)
    ratio_off: float = Field(default=0.0, ge=0, le=2)
    events: list[EventEntry] | None = None
    window_days: int = Field(default=180, ge=30, le=3650)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> PolicyModel:
        allowed = _POLICY_FIELDS[self.kind] | {"kind"}
        extra = sorted(set(self.model_fields_set) - allowed)
        if extra:
            raise ValueError(
                f"`{extra[0]}` does not apply to policy kind {self.kind} (it takes "
                f"{', '.join(sorted(allowed - {'kind'}))})"
            )
        needs = {"schedule": "schedule", "events": "events"}
        if self.kind in needs and not getattr(self, needs[self.kind]):
            raise ValueError(f"policy kind {self.kind} needs `{needs[self.kind]}`")
        if self.kind == "fear_greed" and self.table is not None:
            _check_fear_greed_table(self.table)
        if self.kind == "volatility" and self.bands is not None:
            _check_vol_bands(self.bands)
        if self.kind == "schedule" and self.schedule:
            seen: dict[date, int] = {}
            for i, e in enumerate(self.schedule):
                if e.start in seen:
                    raise ValueError(
                        f"`schedule[{i}].from` ({e.start}) repeats `schedule[{seen[e.start]}].from`: "
                        "two entries cannot start the same day"
                    )
                seen[e.start] = i
        if self.kind == "funding_aware":
            _check_funding_aware(self)
        return self


def _check_fear_greed_table(table: list[TableEntry]) -> None:
    """A Fear & Greed table covers 0–100: upper bounds strictly increasing, the first >= 0, the last >= 100."""
    if not table:
        raise ValueError("`table` must list at least one entry (upper bounds covering 0–100)")
    if table[0].max < 0:
        raise ValueError(f"`table[0].max` must be >= 0 (the first entry applies from 0), was {table[0].max:g}")
    for i in range(1, len(table)):
        if table[i].max <= table[i - 1].max:
            raise ValueError(
                f"`table[{i}].max` must be above `table[{i - 1}].max` ({table[i - 1].max:g}): upper bounds "
                f"strictly increase, was {table[i].max:g}"
            )
    last = len(table) - 1
    if table[last].max < 100:
        raise ValueError(
            f"`table[{last}].max` must be >= 100 so the table covers the index up to 100, was {table[last].max:g}"
        )


def _check_vol_bands(bands: list[VolBand]) -> None:
    """Volatility bands: upper bounds strictly increasing (a volatility above the last is reported as a fallback)."""
    if not bands:
        raise ValueError("`bands` must list at least one band")
    for i in range(1, len(bands)):
        if bands[i].max_vol <= bands[i - 1].max_vol:
            raise ValueError(
                f"`bands[{i}].max_vol` must be above `bands[{i - 1}].max_vol` ({bands[i - 1].max_vol:g}): upper "
                f"bounds strictly increase, was {bands[i].max_vol:g}"
            )


def _check_funding_aware(p: PolicyModel) -> None:
    """``cut`` <= 1 <= ``boost``, ``min_ratio`` <= ``ratio`` <= ``max_ratio``, rich threshold >= cost threshold."""
    if p.cut > 1:
        raise ValueError(f"`cut` must be <= 1 (it lowers the ratio when the short pays funding), was {p.cut:g}")
    if p.boost < 1:
        raise ValueError(f"`boost` must be >= 1 (it raises the ratio when the short is paid), was {p.boost:g}")
    if not p.min_ratio <= p.ratio <= p.max_ratio:
        raise ValueError(
            f"`ratio` must lie in [`min_ratio`, `max_ratio`] = [{p.min_ratio:g}, {p.max_ratio:g}], was {p.ratio:g}"
        )
    if p.rich_threshold_8h < p.cost_threshold_8h:
        raise ValueError(
            f"`rich_threshold_8h` must be >= `cost_threshold_8h` ({p.cost_threshold_8h:g}), was {p.rich_threshold_8h:g}"
        )


class CostsModel(BaseModel):
    """Trading costs: fees default to the instrument's; ``fills`` says which rate every fill pays."""

    model_config = _STRICT
    fills: Literal["taker", "maker"] = "taker"
    maker_fee: float | None = Field(default=None, ge=-0.001, le=0.01)
    taker_fee: float | None = Field(default=None, ge=-0.001, le=0.01)
    slippage_bps: float = Field(default=2.0, ge=0, le=500)


class MarginRunModel(BaseModel):
    """Margin handling: top-ups from a reserve, and what happens after a liquidation."""

    model_config = _STRICT
    top_up: bool = False
    top_up_level: float = Field(default=0.5, gt=0, lt=1)
    reopen_after_days: int | None = Field(default=None, ge=1)


class FundingRunModel(BaseModel):
    """Funding: history of the hedge contract from the store, else the assumed constant rate."""

    model_config = _STRICT
    history: bool = True
    assumed_rate_8h: float = Field(default=0.0001, ge=-0.05, le=0.05)
    series: str | None = None  # `source:symbol` to use another contract's history, e.g. binance:BTC/USDT:USDT


class RunFile(BaseModel):
    """A backtest run: portfolio (path or inline), period, step, hedge overrides, policy, costs, margin, funding."""

    model_config = _STRICT
    name: str | None = None
    portfolio: str | dict[str, Any]
    start: date
    end: date
    step: Literal["1d", "8h"] = "1d"
    hedge: dict[str, Any] = Field(default_factory=dict)
    policy: PolicyModel = Field(default_factory=PolicyModel)
    costs: CostsModel = Field(default_factory=CostsModel)
    margin: MarginRunModel = Field(default_factory=MarginRunModel)
    funding: FundingRunModel = Field(default_factory=FundingRunModel)

    @model_validator(mode="after")
    def _period(self) -> RunFile:
        if self.end <= self.start:
            raise ValueError(f"`end` ({self.end}) must be after `start` ({self.start})")
        return self

    @field_validator("policy")
    @classmethod
    def _schedule_in_force(cls, p: PolicyModel, info: ValidationInfo) -> PolicyModel:
        """A schedule without a base ``ratio`` must have an entry in force at the run's start."""
        start = info.data.get("start")
        if p.kind == "schedule" and p.schedule and "ratio" not in p.model_fields_set and start is not None:
            first = min(range(len(p.schedule)), key=lambda i: p.schedule[i].start)  # type: ignore[index]
            if p.schedule[first].start > start:
                raise ValueError(
                    f"`schedule[{first}].from` ({p.schedule[first].start}) is after `start` ({start}): "
                    "no schedule entry is in force at the start; add an entry from the start, or set "
                    "`policy.ratio` for the days before the first entry"
                )
        return p


def parse_run(doc: Any, source: str) -> RunFile:
    """Validate a parsed run document; ConfigError names ``source`` and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: must be a YAML mapping with `portfolio:`, `start:` and `end:`")
    try:
        return RunFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc(tuple(err.get("loc", ())))
        where = f"field `{loc}`" if loc else "run"
        raise ConfigError(f"{source}: {where}: {_message(err)}") from None


def read_yaml(path: str | Path) -> tuple[Any, bytes]:
    """Parse a YAML file; returns the document and the raw bytes (for hashing)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    raw = p.read_bytes()
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: {where}malformed YAML: {problem}") from None
    return doc, raw
