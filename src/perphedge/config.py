"""Portfolio files (YAML): pydantic models, strict (unknown keys are errors, frozen).

Every problem becomes one :class:`~perphedge.errors.ConfigError` line naming the file, the field
and the rule: ``examples/x.yaml: field `holdings[2].quantity`: must be > 0, was -1``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perphedge.errors import ConfigError

__all__ = ["HedgeModel", "HoldingModel", "LegModel", "PortfolioFile", "load_portfolio_file", "parse_portfolio"]

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)


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
